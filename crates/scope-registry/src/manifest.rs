//! Plugin manifests: the JSON document a plugin is registered with, and its validation.

use std::collections::{BTreeSet, HashSet};

use serde::{Deserialize, Deserializer, Serialize};

use crate::access::Access;
use crate::pattern::EntryPattern;
use crate::routes::{normalize_http_method, parse_template};

/// Longest allowed plugin id and scope set id.
pub const MAX_PLUGIN_ID_LEN: usize = 64;
/// Longest allowed method id: the plugin id and a dot (its namespace), then up to 128
/// characters.
pub const MAX_METHOD_ID_LEN: usize = MAX_PLUGIN_ID_LEN + 1 + 128;

/// A named, versioned set of methods.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginManifest {
    pub id: String,
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub docs_url: Option<String>,
    pub methods: Vec<ManifestMethod>,
    #[serde(default)]
    pub scope_sets: Vec<ManifestScopeSet>,
}

/// One API method of a plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestMethod {
    /// Dotted method id. An external plugin's ids start with its own id
    /// (`platform.environment.control.stopenv`); see [`PluginManifest::namespace_errors`].
    pub id: String,
    pub http: HttpRoute,
    pub access: Access,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub docs_url: Option<String>,
    /// Credits one call spends from a token that has credits (default 1).
    #[serde(default = "default_cost", skip_serializing_if = "is_default_cost")]
    pub cost: u32,
}

/// Most credits one call of a method may cost.
pub const MAX_METHOD_COST: u32 = 1000;

fn default_cost() -> u32 {
    1
}

fn is_default_cost(cost: &u32) -> bool {
    *cost == 1
}

/// HTTP verb and path template of a method, e.g. `GET /api/v1/tokens/{token_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRoute {
    /// Uppercase HTTP verb (deserialization uppercases it).
    #[serde(deserialize_with = "uppercase")]
    pub method: String,
    pub path: String,
}

/// A predefined scope set shipped with a plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestScopeSet {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Exact method ids or globs over this plugin's methods.
    pub methods: Vec<String>,
    /// `Some(Read)` keeps only read methods.
    #[serde(default)]
    pub access: Option<Access>,
}

fn uppercase<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    Ok(s.trim().to_ascii_uppercase())
}

/// Whether `id` is a valid plugin or scope set id: `^[a-z0-9][a-z0-9_-]*$`, at most 64 bytes.
pub fn is_valid_plugin_id(id: &str) -> bool {
    let mut bytes = id.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_lowercase() || b.is_ascii_digit() => {}
        _ => return false,
    }
    id.len() <= MAX_PLUGIN_ID_LEN && bytes.all(is_id_byte)
}

/// Whether `id` is a valid method id: lowercase dotted segments of `[a-z0-9_-]`, at most 128
/// bytes.
pub fn is_valid_method_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_METHOD_ID_LEN
        && id
            .split('.')
            .all(|seg| !seg.is_empty() && seg.bytes().all(is_id_byte))
}

/// The namespace of a method id or scope entry: its first dotted segment
/// (`users` for `users.list`, `*` for `*.plugin.getenvs`).
pub fn namespace_of(id: &str) -> &str {
    id.split('.').next().unwrap_or(id)
}

fn is_id_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
}

impl HttpRoute {
    pub fn new(method: &str, path: &str) -> HttpRoute {
        HttpRoute {
            method: method.trim().to_ascii_uppercase(),
            path: path.to_string(),
        }
    }
}

impl PluginManifest {
    /// Parses a manifest from JSON and validates it. Parse failures and validation problems
    /// are both reported as human-readable messages.
    pub fn from_json_str(json: &str) -> Result<PluginManifest, Vec<String>> {
        let mut manifest: PluginManifest =
            serde_json::from_str(json).map_err(|e| vec![format!("invalid manifest JSON: {e}")])?;
        manifest.normalize();
        manifest.validate()?;
        Ok(manifest)
    }

    /// Canonicalizes spelling without changing meaning: uppercase HTTP verbs, trimmed ids.
    pub fn normalize(&mut self) {
        self.id = self.id.trim().to_string();
        self.version = self.version.trim().to_string();
        for m in &mut self.methods {
            m.id = m.id.trim().to_string();
            m.http.method = m.http.method.trim().to_ascii_uppercase();
        }
        for s in &mut self.scope_sets {
            s.id = s.id.trim().to_string();
        }
    }

    /// The namespaces its methods use: the first segments of their ids.
    pub fn namespaces(&self) -> BTreeSet<&str> {
        self.methods.iter().map(|m| namespace_of(&m.id)).collect()
    }

    /// The namespace rule for every plugin but the built-in one: a plugin owns the
    /// namespace of its id, so each method id must start with `<plugin id>.`. Then ids of
    /// different plugins never overlap, and a scope entry whose first segment is literal
    /// (`platform.environment.*`) stays inside one plugin. Returns one problem per method
    /// outside the namespace.
    pub fn namespace_errors(&self) -> Vec<String> {
        let prefix = format!("{}.", self.id);
        self.methods
            .iter()
            .filter(|m| !m.id.starts_with(&prefix))
            .map(|m| {
                format!(
                    "method '{}': id must start with '{prefix}' (the namespace of plugin '{}'), e.g. '{prefix}{}'",
                    m.id, self.id, m.id
                )
            })
            .collect()
    }

    /// Checks the manifest; returns every problem found.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();

        if !is_valid_plugin_id(&self.id) {
            errors.push(format!(
                "plugin id '{}' must match ^[a-z0-9][a-z0-9_-]*$ and be at most {MAX_PLUGIN_ID_LEN} characters",
                self.id
            ));
        }
        if self.name.trim().is_empty() {
            errors.push("plugin name must not be empty".to_string());
        }
        if self.version.trim().is_empty() {
            errors.push("plugin version must not be empty".to_string());
        }

        let mut method_ids = HashSet::new();
        for (i, m) in self.methods.iter().enumerate() {
            let label = if m.id.is_empty() {
                format!("method #{}", i + 1)
            } else {
                format!("method '{}'", m.id)
            };
            if !is_valid_method_id(&m.id) {
                errors.push(format!(
                    "{label}: id must be lowercase dotted segments of [a-z0-9_-] and at most {MAX_METHOD_ID_LEN} characters"
                ));
            }
            if !method_ids.insert(m.id.as_str()) {
                errors.push(format!("{label}: duplicate method id"));
            }
            if normalize_http_method(&m.http.method).is_none() {
                errors.push(format!(
                    "{label}: HTTP method '{}' must be one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS",
                    m.http.method
                ));
            }
            if let Err(e) = parse_template(&m.http.path) {
                errors.push(format!("{label}: {e}"));
            }
            if !(1..=MAX_METHOD_COST).contains(&m.cost) {
                errors.push(format!(
                    "{label}: cost must be between 1 and {MAX_METHOD_COST} credits"
                ));
            }
        }

        let mut set_ids = HashSet::new();
        for (i, s) in self.scope_sets.iter().enumerate() {
            let label = if s.id.is_empty() {
                format!("scope set #{}", i + 1)
            } else {
                format!("scope set '{}'", s.id)
            };
            if !is_valid_plugin_id(&s.id) {
                errors.push(format!(
                    "{label}: id must match ^[a-z0-9][a-z0-9_-]*$ and be at most {MAX_PLUGIN_ID_LEN} characters"
                ));
            }
            if !set_ids.insert(s.id.as_str()) {
                errors.push(format!("{label}: duplicate scope set id"));
            }
            if s.name.trim().is_empty() {
                errors.push(format!("{label}: name must not be empty"));
            }
            if s.methods.is_empty() {
                errors.push(format!("{label}: must list at least one method"));
            }
            for entry in &s.methods {
                match EntryPattern::parse(entry) {
                    Ok(p) => {
                        if !self.methods.iter().any(|m| p.matches(&m.id)) {
                            errors.push(format!(
                                "{label}: entry '{entry}' matches no method of this plugin"
                            ));
                        }
                    }
                    Err(e) => errors.push(format!("{label}: {e}")),
                }
            }
        }

        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLATFORM: &str = include_str!("../../../examples/plugins/platform.json");

    fn method(id: &str, verb: &str, path: &str, access: Access) -> ManifestMethod {
        ManifestMethod {
            id: id.to_string(),
            http: HttpRoute::new(verb, path),
            access,
            description: String::new(),
            docs_url: None,
            cost: 1,
        }
    }

    fn sample() -> PluginManifest {
        PluginManifest {
            id: "tokens".into(),
            name: "Tokens".into(),
            version: "1.0.0".into(),
            description: None,
            docs_url: None,
            methods: vec![
                method("tokens.create", "POST", "/api/v1/tokens", Access::Change),
                method(
                    "tokens.get",
                    "GET",
                    "/api/v1/tokens/{token_id}",
                    Access::Read,
                ),
            ],
            scope_sets: vec![ManifestScopeSet {
                id: "all".into(),
                name: "All".into(),
                description: String::new(),
                methods: vec!["tokens.*".into()],
                access: None,
            }],
        }
    }

    #[test]
    fn valid_sample() {
        assert_eq!(sample().validate(), Ok(()));
    }

    #[test]
    fn id_rules() {
        assert!(is_valid_plugin_id("platform"));
        assert!(is_valid_plugin_id("0-x_y"));
        assert!(!is_valid_plugin_id("-x"));
        assert!(!is_valid_plugin_id("Platform"));
        assert!(!is_valid_plugin_id(""));
        assert!(!is_valid_plugin_id("a.b"));
        assert!(!is_valid_plugin_id(&"a".repeat(65)));
        assert!(is_valid_plugin_id(&"a".repeat(64)));

        assert!(is_valid_method_id("tokens.create"));
        assert!(is_valid_method_id("platform.environment.control.stopenv"));
        assert!(is_valid_method_id("a"));
        assert!(is_valid_method_id("a-b.c_d.9"));
        assert!(!is_valid_method_id("tokens..create"));
        assert!(!is_valid_method_id(".tokens"));
        assert!(!is_valid_method_id("tokens."));
        assert!(!is_valid_method_id("Tokens.create"));
        assert!(!is_valid_method_id("tokens.*"));
        assert!(is_valid_method_id(&"a".repeat(193)));
        assert!(!is_valid_method_id(&"a".repeat(194)));
    }

    #[test]
    fn reports_every_problem() {
        let mut m = sample();
        m.id = "Bad Id".into();
        m.version = " ".into();
        m.methods
            .push(method("tokens.create", "GET", "/x", Access::Read));
        m.methods
            .push(method("Bad", "TRACE", "no-slash", Access::Read));
        m.scope_sets.push(ManifestScopeSet {
            id: "all".into(),
            name: "Again".into(),
            description: String::new(),
            methods: vec!["nothing.*".into(), "tokens.missing".into()],
            access: Some(Access::Read),
        });
        let errors = m.validate().unwrap_err();
        let has = |needle: &str| errors.iter().any(|e| e.contains(needle));
        assert!(has("plugin id 'Bad Id'"), "{errors:?}");
        assert!(has("version must not be empty"), "{errors:?}");
        assert!(
            has("method 'tokens.create': duplicate method id"),
            "{errors:?}"
        );
        assert!(has("method 'Bad': id must be"), "{errors:?}");
        assert!(has("HTTP method 'TRACE'"), "{errors:?}");
        assert!(has("path 'no-slash' must start with '/'"), "{errors:?}");
        assert!(has("scope set 'all': duplicate scope set id"), "{errors:?}");
        assert!(has("entry 'nothing.*' matches no method"), "{errors:?}");
        assert!(
            has("entry 'tokens.missing' matches no method"),
            "{errors:?}"
        );
        assert_eq!(errors.len(), 9, "{errors:?}");
    }

    #[test]
    fn empty_scope_set_and_bad_template() {
        let mut m = sample();
        m.methods[0].http.path = "/a/{".into();
        m.scope_sets[0].methods.clear();
        let errors = m.validate().unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
    }

    #[test]
    fn verbs_are_case_insensitive_and_stored_uppercase() {
        let json = r#"{
            "id": "p", "name": "P", "version": "1",
            "methods": [
                {"id": "p.get", "http": {"method": "get", "path": "/x"}, "access": "read"}
            ]
        }"#;
        let m = PluginManifest::from_json_str(json).unwrap();
        assert_eq!(m.methods[0].http.method, "GET");
        assert_eq!(m.methods[0].description, "");
        assert!(m.scope_sets.is_empty());

        let mut lower = sample();
        lower.methods[0].http.method = "post".into();
        assert_eq!(lower.validate(), Ok(()));
        lower.normalize();
        assert_eq!(lower.methods[0].http.method, "POST");
    }

    #[test]
    fn from_json_reports_parse_errors() {
        let errors = PluginManifest::from_json_str("{\"id\": 1}").unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("invalid manifest JSON"));
    }

    #[test]
    fn serde_round_trip() {
        let m = sample();
        let json = serde_json::to_string(&m).unwrap();
        let back: PluginManifest = serde_json::from_str(&json).unwrap();
        assert_eq!(m, back);
    }

    #[test]
    fn platform_example_is_valid() {
        let m = PluginManifest::from_json_str(PLATFORM).unwrap();
        assert_eq!(m.id, "platform");
        assert_eq!(m.name, "Platform API");
        assert!(m.methods.len() >= 18, "{}", m.methods.len());
        let sets: Vec<&str> = m.scope_sets.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            sets,
            vec![
                "extended-access",
                "ide-plugins",
                "marketplace",
                "maven-plugin"
            ]
        );
        let names: Vec<&str> = m.scope_sets.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "Extended Access",
                "IDE Plugins",
                "Marketplace",
                "Maven Plugin"
            ]
        );
        let stop = m
            .methods
            .iter()
            .find(|m| m.id == "platform.environment.control.stopenv")
            .unwrap();
        assert_eq!(stop.http.method, "GET");
        assert_eq!(stop.http.path, "/1.0/environment/control/rest/stopenv");
        assert!(m
            .methods
            .iter()
            .all(|m| !m.description.is_empty() && m.docs_url.is_some()));
        assert_eq!(m.namespace_errors(), Vec::<String>::new());
        assert_eq!(m.namespaces(), BTreeSet::from(["platform"]));
    }

    #[test]
    fn namespace_rule() {
        assert_eq!(namespace_of("users.account.getbalance"), "users");
        assert_eq!(namespace_of("*.plugin.getenvs"), "*");
        assert_eq!(namespace_of("a"), "a");

        // sample() is plugin 'tokens' with ids 'tokens.*': inside its namespace.
        assert!(sample().namespace_errors().is_empty());
        let mut m = sample();
        m.methods.push(method(
            "users.account.getbalance",
            "GET",
            "/b",
            Access::Read,
        ));
        m.methods
            .push(method("tokensx.list", "GET", "/c", Access::Read));
        m.methods.push(method("tokens", "GET", "/d", Access::Read));
        let errors = m.namespace_errors();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(
            errors[0].contains("method 'users.account.getbalance': id must start with 'tokens.'")
        );
        assert!(errors[0].contains("'tokens.users.account.getbalance'"));
        assert!(errors[1].contains("method 'tokensx.list'"));
        assert!(errors[2].contains("method 'tokens'"));
        assert_eq!(
            m.namespaces(),
            BTreeSet::from(["tokens", "tokensx", "users"])
        );
    }
}
