//! Builds a [`PluginManifest`] from an OpenAPI 3.x JSON document.

use serde_json::Value;

use crate::access::Access;
use crate::manifest::{HttpRoute, ManifestMethod, ManifestScopeSet, PluginManifest};

/// Path item keys that are operations, in the order they are imported.
const OPERATION_KEYS: [&str; 8] = [
    "get", "head", "post", "put", "patch", "delete", "options", "trace",
];

/// Extension an operation may carry to override the access derived from its verb.
pub const ACCESS_EXTENSION: &str = "x-sigil-access";

impl PluginManifest {
    /// Imports an OpenAPI 3.x document as a plugin with id `id`.
    ///
    /// Every operation becomes a method `"{id}.{operationId in snake_case}"`; GET and HEAD
    /// read, other verbs change, unless the operation sets `x-sigil-access`. Paths are
    /// prefixed with the path of the first server URL. Every tag becomes a predefined scope
    /// set. `name` and `version` default to `info.title` and `info.version`.
    pub fn from_openapi(
        doc: &Value,
        id: &str,
        name: Option<&str>,
        version: Option<&str>,
    ) -> Result<PluginManifest, Vec<String>> {
        let mut errors = Vec::new();

        match doc.get("openapi").and_then(Value::as_str) {
            Some(v) if v.starts_with("3.") => {}
            Some(v) => {
                return Err(vec![format!(
                    "unsupported OpenAPI version '{v}': only 3.x documents can be imported"
                )])
            }
            None => {
                return Err(vec![
                    "not an OpenAPI 3.x document: missing 'openapi' version field".to_string(),
                ])
            }
        }

        let info = doc.get("info");
        let info_str = |key: &str| {
            info.and_then(|i| i.get(key))
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        let name = match name.or_else(|| info_str("title")) {
            Some(n) => n.to_string(),
            None => {
                errors.push("no plugin name given and the document has no info.title".into());
                String::new()
            }
        };
        let version = match version.or_else(|| info_str("version")) {
            Some(v) => v.to_string(),
            None => {
                errors.push("no plugin version given and the document has no info.version".into());
                String::new()
            }
        };

        let prefix = server_prefix(doc);
        let mut methods = Vec::new();
        let mut scope_sets: Vec<ManifestScopeSet> = Vec::new();

        let paths = doc.get("paths").and_then(Value::as_object);
        if paths.is_none() {
            errors.push("the document has no 'paths' object".into());
        }
        for (path, item) in paths.into_iter().flatten() {
            for verb in OPERATION_KEYS {
                let Some(op) = item.get(verb) else { continue };
                let verb_upper = verb.to_ascii_uppercase();
                let label = format!("{verb_upper} {path}");
                if verb == "trace" {
                    tracing::warn!(operation = %label, "skipping TRACE operation");
                    continue;
                }
                let Some(op_id) = op
                    .get("operationId")
                    .and_then(Value::as_str)
                    .filter(|s| !s.trim().is_empty())
                else {
                    errors.push(format!("{label}: operation has no operationId"));
                    continue;
                };
                let suffix = to_snake_case(op_id);
                if suffix.is_empty() {
                    errors.push(format!(
                        "{label}: operationId '{op_id}' yields an empty method id"
                    ));
                    continue;
                }
                let method_id = format!("{id}.{suffix}");

                let access = match op.get(ACCESS_EXTENSION) {
                    None => Access::for_http_method(verb),
                    Some(v) => match v.as_str().map(str::parse::<Access>) {
                        Some(Ok(a)) => a,
                        _ => {
                            errors.push(format!(
                                "{label}: {ACCESS_EXTENSION} must be \"read\" or \"change\", got {v}"
                            ));
                            continue;
                        }
                    },
                };

                let description = ["summary", "description"]
                    .iter()
                    .filter_map(|k| op.get(*k).and_then(Value::as_str))
                    .map(str::trim)
                    .find(|s| !s.is_empty())
                    .unwrap_or_default()
                    .to_string();
                let docs_url = op
                    .get("externalDocs")
                    .and_then(|d| d.get("url"))
                    .and_then(Value::as_str)
                    .map(str::to_string);

                for tag in op
                    .get("tags")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    add_to_tag_set(&mut scope_sets, doc, tag, &method_id);
                }

                methods.push(ManifestMethod {
                    id: method_id,
                    http: HttpRoute::new(verb, &join_path(&prefix, path)),
                    access,
                    description,
                    docs_url,
                    cost: 1,
                });
            }
        }

        let manifest = PluginManifest {
            id: id.to_string(),
            name,
            version,
            description: info_str("description").map(str::to_string),
            docs_url: doc
                .get("externalDocs")
                .and_then(|d| d.get("url"))
                .and_then(Value::as_str)
                .map(str::to_string),
            methods,
            scope_sets,
        };
        if errors.is_empty() {
            manifest.validate()?;
            Ok(manifest)
        } else {
            Err(errors)
        }
    }
}

fn add_to_tag_set(sets: &mut Vec<ManifestScopeSet>, doc: &Value, tag: &str, method_id: &str) {
    let set_id = slug(tag);
    if set_id.is_empty() {
        return;
    }
    if let Some(set) = sets.iter_mut().find(|s| s.id == set_id) {
        if !set.methods.iter().any(|m| m == method_id) {
            set.methods.push(method_id.to_string());
        }
        return;
    }
    let description = doc
        .get("tags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|t| t.get("name").and_then(Value::as_str) == Some(tag))
        .and_then(|t| t.get("description"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    sets.push(ManifestScopeSet {
        id: set_id,
        name: tag.to_string(),
        description,
        methods: vec![method_id.to_string()],
        access: None,
    });
}

/// The path component of the first server URL, without a trailing slash ("" if none).
/// Server variables are replaced by their defaults.
fn server_prefix(doc: &Value) -> String {
    let Some(server) = doc
        .get("servers")
        .and_then(Value::as_array)
        .and_then(|s| s.first())
    else {
        return String::new();
    };
    let Some(url) = server.get("url").and_then(Value::as_str) else {
        return String::new();
    };
    let mut url = url.trim().to_string();
    if let Some(vars) = server.get("variables").and_then(Value::as_object) {
        for (name, var) in vars {
            if let Some(default) = var.get("default").and_then(Value::as_str) {
                url = url.replace(&format!("{{{name}}}"), default);
            }
        }
    }
    let url = match url.find(['?', '#']) {
        Some(end) => url.get(..end).unwrap_or_default(),
        None => url.as_str(),
    };
    let path = match url.find("://") {
        Some(scheme_end) => {
            let after = url.get(scheme_end + 3..).unwrap_or_default();
            match after.find('/') {
                Some(slash) => after.get(slash..).unwrap_or_default(),
                None => "",
            }
        }
        None => url.strip_prefix("./").unwrap_or(url),
    };
    let path = path.trim_matches('/');
    if path.is_empty() {
        String::new()
    } else {
        format!("/{path}")
    }
}

fn join_path(prefix: &str, path: &str) -> String {
    if prefix.is_empty() {
        return path.to_string();
    }
    if path.trim_matches('/').is_empty() {
        return prefix.to_string();
    }
    if path.starts_with('/') {
        format!("{prefix}{path}")
    } else {
        format!("{prefix}/{path}")
    }
}

/// Converts an operationId to a method id suffix: camelCase words become snake_case, dots
/// separate segments, anything outside `[a-z0-9_.]` becomes `_`.
/// `stopEnv` → `stop_env`, `getHTTPResponse` → `get_http_response`,
/// `Env.Control.StopEnv` → `env.control.stop_env`.
pub fn to_snake_case(operation_id: &str) -> String {
    operation_id
        .split('.')
        .map(snake_segment)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(".")
}

fn snake_segment(seg: &str) -> String {
    let chars: Vec<char> = seg.chars().collect();
    let mut out = String::with_capacity(seg.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev = i.checked_sub(1).and_then(|p| chars.get(p)).copied();
            let next = chars.get(i + 1).copied();
            let boundary = match prev {
                Some(p) if p.is_ascii_lowercase() || p.is_ascii_digit() => true,
                Some(p) if p.is_ascii_uppercase() => next.is_some_and(|n| n.is_ascii_lowercase()),
                _ => false,
            };
            if boundary {
                push_sep(&mut out);
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else {
            push_sep(&mut out);
        }
    }
    out.trim_end_matches('_').to_string()
}

fn push_sep(out: &mut String) {
    if !out.is_empty() && !out.ends_with('_') {
        out.push('_');
    }
}

/// Lowercase slug of a tag: runs of characters outside `[a-z0-9]` become one `-`.
pub fn slug(tag: &str) -> String {
    let mut out = String::with_capacity(tag.len());
    for c in tag.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed = out.trim_end_matches('-');
    trimmed
        .get(..trimmed.len().min(crate::manifest::MAX_PLUGIN_ID_LEN))
        .unwrap_or(trimmed)
        .trim_end_matches('-')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "openapi": "3.0.3",
            "info": {"title": "Environments", "version": "2.1.0", "description": "Env API"},
            "servers": [{"url": "https://x.example/api/v2/"}, {"url": "/other"}],
            "tags": [{"name": "Environment Control", "description": "Start and stop"}],
            "paths": {
                "/environments/{envName}/stop": {
                    "parameters": [],
                    "post": {
                        "operationId": "stopEnv",
                        "summary": "Stop an environment",
                        "tags": ["Environment Control"],
                        "externalDocs": {"url": "https://docs.example.com/stop"}
                    }
                },
                "/environments/{envName}": {
                    "get": {
                        "operationId": "getEnvInfo",
                        "description": "Environment details",
                        "tags": ["Environment Control", "Read Only"]
                    },
                    "head": {"operationId": "headEnv"},
                    "delete": {"operationId": "deleteEnv", "tags": ["Danger"]}
                },
                "/environments/search": {
                    "post": {
                        "operationId": "searchEnvs",
                        "x-sigil-access": "read",
                        "tags": ["Read Only"]
                    },
                    "get": {"operationId": "listAll", "x-sigil-access": "change"}
                }
            }
        })
    }

    fn find<'a>(m: &'a PluginManifest, id: &str) -> &'a ManifestMethod {
        m.methods.iter().find(|x| x.id == id).unwrap()
    }

    #[test]
    fn imports_operations() {
        let m = PluginManifest::from_openapi(&doc(), "envs", None, None).unwrap();
        assert_eq!(m.id, "envs");
        assert_eq!(m.name, "Environments");
        assert_eq!(m.version, "2.1.0");
        assert_eq!(m.description.as_deref(), Some("Env API"));
        assert_eq!(m.methods.len(), 6);

        let stop = find(&m, "envs.stop_env");
        assert_eq!(stop.http.method, "POST");
        assert_eq!(stop.http.path, "/api/v2/environments/{envName}/stop");
        assert_eq!(stop.access, Access::Change);
        assert_eq!(stop.description, "Stop an environment");
        assert_eq!(
            stop.docs_url.as_deref(),
            Some("https://docs.example.com/stop")
        );

        let info = find(&m, "envs.get_env_info");
        assert_eq!(info.http.method, "GET");
        assert_eq!(info.access, Access::Read);
        assert_eq!(info.description, "Environment details");
        assert_eq!(info.docs_url, None);

        assert_eq!(find(&m, "envs.head_env").access, Access::Read);
        assert_eq!(find(&m, "envs.delete_env").access, Access::Change);
    }

    #[test]
    fn access_extension_overrides_verb() {
        let m = PluginManifest::from_openapi(&doc(), "envs", None, None).unwrap();
        assert_eq!(find(&m, "envs.search_envs").access, Access::Read);
        assert_eq!(find(&m, "envs.list_all").access, Access::Change);

        let mut bad = doc();
        bad["paths"]["/environments/search"]["get"]["x-sigil-access"] = json!("write");
        let errors = PluginManifest::from_openapi(&bad, "envs", None, None).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("GET /environments/search"), "{errors:?}");
    }

    #[test]
    fn tags_become_scope_sets() {
        let m = PluginManifest::from_openapi(&doc(), "envs", None, None).unwrap();
        let mut ids: Vec<&str> = m.scope_sets.iter().map(|s| s.id.as_str()).collect();
        ids.sort_unstable();
        assert_eq!(ids, vec!["danger", "environment-control", "read-only"]);

        let control = m
            .scope_sets
            .iter()
            .find(|s| s.id == "environment-control")
            .unwrap();
        assert_eq!(control.name, "Environment Control");
        assert_eq!(control.description, "Start and stop");
        let mut methods = control.methods.clone();
        methods.sort();
        assert_eq!(methods, vec!["envs.get_env_info", "envs.stop_env"]);
        assert_eq!(control.access, None);

        let ro = m.scope_sets.iter().find(|s| s.id == "read-only").unwrap();
        let mut methods = ro.methods.clone();
        methods.sort();
        assert_eq!(methods, vec!["envs.get_env_info", "envs.search_envs"]);
    }

    #[test]
    fn explicit_name_and_version_win() {
        let m = PluginManifest::from_openapi(&doc(), "envs", Some("Envs"), Some("9")).unwrap();
        assert_eq!(m.name, "Envs");
        assert_eq!(m.version, "9");
    }

    #[test]
    fn missing_operation_ids_are_listed() {
        let mut d = doc();
        d["paths"]["/environments/{envName}"]["delete"] = json!({"summary": "no id"});
        d["paths"]["/x"] = json!({"put": {}});
        let errors = PluginManifest::from_openapi(&d, "envs", None, None).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors
            .iter()
            .any(|e| e == "DELETE /environments/{envName}: operation has no operationId"));
        assert!(errors
            .iter()
            .any(|e| e == "PUT /x: operation has no operationId"));
    }

    #[test]
    fn rejects_other_versions() {
        let errors =
            PluginManifest::from_openapi(&json!({"swagger": "2.0"}), "x", None, None).unwrap_err();
        assert!(errors[0].contains("missing 'openapi'"));
        let errors =
            PluginManifest::from_openapi(&json!({"openapi": "2.0"}), "x", None, None).unwrap_err();
        assert!(errors[0].contains("unsupported OpenAPI version"));
    }

    #[test]
    fn missing_version_is_an_error_unless_given() {
        let mut d = doc();
        d["info"] = json!({"title": "T"});
        let errors = PluginManifest::from_openapi(&d, "envs", None, None).unwrap_err();
        assert!(errors[0].contains("info.version"), "{errors:?}");
        assert!(PluginManifest::from_openapi(&d, "envs", None, Some("1")).is_ok());
    }

    #[test]
    fn invalid_plugin_id_is_reported() {
        let errors = PluginManifest::from_openapi(&doc(), "Bad Id", None, None).unwrap_err();
        assert!(errors.iter().any(|e| e.contains("plugin id")), "{errors:?}");
    }

    #[test]
    fn duplicate_ids_after_conversion_are_reported() {
        let mut d = doc();
        d["paths"]["/environments/search"]["get"]["operationId"] = json!("get_env_info");
        let errors = PluginManifest::from_openapi(&d, "envs", None, None).unwrap_err();
        assert!(errors.iter().any(|e| e.contains("duplicate")), "{errors:?}");
    }

    #[test]
    fn server_prefixes() {
        let with = |url: Value| {
            let mut d = doc();
            d["servers"] = url;
            let m = PluginManifest::from_openapi(&d, "envs", None, None).unwrap();
            find(&m, "envs.stop_env").http.path.clone()
        };
        assert_eq!(
            with(json!([{"url": "https://x.example"}])),
            "/environments/{envName}/stop"
        );
        assert_eq!(
            with(json!([{"url": "https://x.example/"}])),
            "/environments/{envName}/stop"
        );
        assert_eq!(
            with(json!([{"url": "/api/v1"}])),
            "/api/v1/environments/{envName}/stop"
        );
        assert_eq!(
            with(json!([{"url": "api"}])),
            "/api/environments/{envName}/stop"
        );
        assert_eq!(with(json!([{"url": "/"}])), "/environments/{envName}/stop");
        assert_eq!(with(json!([])), "/environments/{envName}/stop");
        assert_eq!(
            with(json!([{
                "url": "{scheme}://x.example/{base}",
                "variables": {"scheme": {"default": "https"}, "base": {"default": "v3"}}
            }])),
            "/v3/environments/{envName}/stop"
        );
    }

    #[test]
    fn snake_case_conversion() {
        assert_eq!(to_snake_case("stopEnv"), "stop_env");
        assert_eq!(to_snake_case("StopEnv"), "stop_env");
        assert_eq!(to_snake_case("getHTTPResponse"), "get_http_response");
        assert_eq!(to_snake_case("getV2Users"), "get_v2_users");
        assert_eq!(to_snake_case("already_snake"), "already_snake");
        assert_eq!(to_snake_case("get-users"), "get_users");
        assert_eq!(to_snake_case("Env.Control.StopEnv"), "env.control.stop_env");
        assert_eq!(
            to_snake_case("environment.control.stopenv"),
            "environment.control.stopenv"
        );
        assert_eq!(to_snake_case("a..b"), "a.b");
        assert_eq!(to_snake_case("__x__"), "x");
        assert_eq!(to_snake_case("list users/all"), "list_users_all");
        assert_eq!(to_snake_case("ABC"), "abc");
        assert_eq!(to_snake_case("!!"), "");
    }

    #[test]
    fn tag_slugs() {
        assert_eq!(slug("Environment Control"), "environment-control");
        assert_eq!(slug("  IDE / Plugins  "), "ide-plugins");
        assert_eq!(slug("Read-Only"), "read-only");
        assert_eq!(slug("***"), "");
    }
}
