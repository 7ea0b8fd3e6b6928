//! What a registry change adds to existing scopes: the methods that scope entries (of
//! tokens and custom sets) and predefined sets grant after a plugin is registered or
//! updated and did not grant before. Registration reports them instead of widening
//! scopes silently.

use std::collections::{BTreeSet, HashMap};

use uuid::Uuid;

use crate::access::Access;
use crate::pattern::EntryPattern;
use crate::snapshot::Snapshot;

/// A method that a scope may newly grant.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Candidate {
    id: String,
    access: Access,
    /// The id was visible before too; it is a candidate because it became a read method,
    /// which only read-restricted scopes gain.
    became_read: bool,
}

/// A predefined set that grants more after the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetGain {
    /// `{plugin}.{set}`, `read-only` or `read-change`.
    pub id: String,
    pub name: String,
    /// Defining plugin; `None` for the built-in sets.
    pub plugin: Option<String>,
    /// Method ids it grants now and did not before, sorted.
    pub added: Vec<String>,
    /// The set did not exist before (tokens may still name it, from an earlier version
    /// of the plugin).
    pub is_new: bool,
}

/// The difference between two snapshots as seen from one view (a tenant's, or the global
/// one for a change of a global plugin, which every tenant sees alike).
#[derive(Debug, Clone, Default)]
pub struct RegistryDiff {
    candidates: Vec<Candidate>,
    sets: Vec<SetGain>,
}

impl RegistryDiff {
    /// Compares the view of `tenant` (`None`: the global view) before and after a change.
    pub fn between(before: &Snapshot, after: &Snapshot, tenant: Option<Uuid>) -> RegistryDiff {
        let old: HashMap<&str, Access> = before
            .methods_visible(tenant)
            .map(|(_, m)| (m.id.as_str(), m.access))
            .collect();
        let mut candidates: Vec<Candidate> = after
            .methods_visible(tenant)
            .filter_map(|(_, m)| match old.get(m.id.as_str()) {
                None => Some(Candidate {
                    id: m.id.clone(),
                    access: m.access,
                    became_read: false,
                }),
                Some(Access::Change) if m.access == Access::Read => Some(Candidate {
                    id: m.id.clone(),
                    access: m.access,
                    became_read: true,
                }),
                Some(_) => None,
            })
            .collect();
        candidates.sort_by(|a, b| a.id.cmp(&b.id));

        let sets = after
            .predefined_sets(tenant)
            .filter_map(|set| {
                let now: BTreeSet<&str> = after.method_ids(&set.methods).collect();
                let was: BTreeSet<&str> = before
                    .predefined_set(tenant, &set.id)
                    .map(|s| before.method_ids(&s.methods).collect())
                    .unwrap_or_default();
                let is_new = before.predefined_set(tenant, &set.id).is_none();
                let added: Vec<String> = now.difference(&was).map(|s| (*s).to_owned()).collect();
                (!added.is_empty()).then(|| SetGain {
                    id: set.id.clone(),
                    name: set.name.clone(),
                    plugin: set.plugin.clone(),
                    added,
                    is_new,
                })
            })
            .collect();
        RegistryDiff { candidates, sets }
    }

    /// Whether no scope entry can grant anything new.
    pub fn is_empty(&self) -> bool {
        self.candidates.is_empty() && self.sets.is_empty()
    }

    /// Ids of the methods that did not exist before (candidates for exact entries).
    pub fn new_method_ids(&self) -> impl Iterator<Item = &str> + '_ {
        self.candidates
            .iter()
            .filter(|c| !c.became_read)
            .map(|c| c.id.as_str())
    }

    /// Predefined sets that grant more than before, in the view's order.
    pub fn predefined(&self) -> &[SetGain] {
        &self.sets
    }

    /// The methods scope `entries` (with a set's `access` restriction) grant after the
    /// change and did not before, sorted. Entries that are not valid patterns grant
    /// nothing, as when resolving.
    pub fn added(&self, entries: &[String], access: Option<Access>) -> Vec<String> {
        if self.candidates.is_empty() {
            return Vec::new();
        }
        let patterns: Vec<EntryPattern> = entries
            .iter()
            .filter_map(|e| EntryPattern::parse(e).ok())
            .collect();
        let read_only = access == Some(Access::Read);
        self.candidates
            .iter()
            .filter(|c| {
                if read_only {
                    c.access == Access::Read
                } else {
                    !c.became_read
                }
            })
            .filter(|c| patterns.iter().any(|p| p.matches(&c.id)))
            .map(|c| c.id.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{HttpRoute, ManifestMethod, ManifestScopeSet, PluginManifest};
    use crate::snapshot::RegisteredPlugin;

    const TENANT: Uuid = Uuid::from_u128(0xa);

    fn plugin(id: &str, version: &str, methods: &[(&str, Access)]) -> PluginManifest {
        PluginManifest {
            id: id.into(),
            name: id.to_uppercase(),
            version: version.into(),
            description: None,
            docs_url: None,
            methods: methods
                .iter()
                .map(|(m, access)| ManifestMethod {
                    id: format!("{id}.{m}"),
                    http: HttpRoute::new("GET", &format!("/{id}/{}", m.replace('.', "/"))),
                    access: *access,
                    description: String::new(),
                    docs_url: None,
                    cost: 1,
                })
                .collect(),
            scope_sets: vec![ManifestScopeSet {
                id: "env".into(),
                name: "Environments".into(),
                description: String::new(),
                methods: vec![format!("{id}.env.*")],
                access: None,
            }],
        }
    }

    fn builtin() -> PluginManifest {
        PluginManifest {
            id: "sigil".into(),
            name: "Sigil".into(),
            version: "1".into(),
            description: None,
            docs_url: None,
            methods: vec![ManifestMethod {
                id: "users.list".into(),
                http: HttpRoute::new("GET", "/api/v1/users"),
                access: Access::Read,
                description: String::new(),
                docs_url: None,
                cost: 1,
            }],
            scope_sets: vec![],
        }
    }

    fn build(plugins: Vec<RegisteredPlugin>) -> Snapshot {
        Snapshot::build(plugins).unwrap()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_new_global_plugin_widens_matching_globs_only() {
        let before = build(vec![RegisteredPlugin::global(builtin())]);
        let after = build(vec![
            RegisteredPlugin::global(builtin()),
            RegisteredPlugin::global(plugin(
                "platform",
                "1",
                &[
                    ("env.stop", Access::Change),
                    ("users.account.getbalance", Access::Read),
                ],
            )),
        ]);
        let diff = RegistryDiff::between(&before, &after, None);
        assert!(!diff.is_empty());
        assert_eq!(
            diff.new_method_ids().collect::<Vec<_>>(),
            vec!["platform.env.stop", "platform.users.account.getbalance"]
        );
        // The token: 'users.*' means Sigil's users methods and gains nothing.
        assert!(diff
            .added(&strings(&["tokens.list", "users.*"]), None)
            .is_empty());
        assert_eq!(
            diff.added(&strings(&["*"]), None),
            strings(&["platform.env.stop", "platform.users.account.getbalance"])
        );
        assert_eq!(
            diff.added(&strings(&["*"]), Some(Access::Read)),
            strings(&["platform.users.account.getbalance"])
        );
        assert_eq!(
            diff.added(&strings(&["*.getbalance", "bad.[glob"]), None),
            strings(&["platform.users.account.getbalance"])
        );
        // Built-in sets gain, and the plugin's own set is new.
        let sets: Vec<(&str, bool, usize)> = diff
            .predefined()
            .iter()
            .map(|s| (s.id.as_str(), s.is_new, s.added.len()))
            .collect();
        assert_eq!(
            sets,
            vec![
                ("read-only", false, 1),
                ("read-change", false, 2),
                ("platform.env", true, 1)
            ]
        );
        // Seen from a tenant, the same.
        let t = RegistryDiff::between(&before, &after, Some(TENANT));
        assert_eq!(
            t.new_method_ids().collect::<Vec<_>>(),
            diff.new_method_ids().collect::<Vec<_>>()
        );
    }

    #[test]
    fn an_update_reports_new_methods_and_methods_that_became_read() {
        let v1 = plugin(
            "crm",
            "1",
            &[("env.list", Access::Read), ("env.purge", Access::Change)],
        );
        let v2 = plugin(
            "crm",
            "2",
            &[
                ("env.list", Access::Read),
                ("env.purge", Access::Read),
                ("env.merge", Access::Change),
            ],
        );
        let before = build(vec![RegisteredPlugin::private(TENANT, v1.clone())]);
        let after = build(vec![RegisteredPlugin::private(TENANT, v2)]);
        let diff = RegistryDiff::between(&before, &after, Some(TENANT));
        assert_eq!(
            diff.new_method_ids().collect::<Vec<_>>(),
            vec!["crm.env.merge"]
        );
        assert_eq!(
            diff.added(&strings(&["crm.env.*"]), None),
            strings(&["crm.env.merge"])
        );
        assert_eq!(
            diff.added(&strings(&["crm.env.*"]), Some(Access::Read)),
            strings(&["crm.env.purge"])
        );
        assert_eq!(
            diff.added(&strings(&["crm.env.merge"]), None),
            strings(&["crm.env.merge"])
        );
        assert!(diff.added(&strings(&["crm.env.list"]), None).is_empty());
        let gains: Vec<(&str, Vec<String>)> = diff
            .predefined()
            .iter()
            .map(|s| (s.id.as_str(), s.added.clone()))
            .collect();
        assert_eq!(
            gains,
            vec![
                ("read-only", strings(&["crm.env.purge"])),
                ("read-change", strings(&["crm.env.merge"])),
                ("crm.env", strings(&["crm.env.merge"])),
            ]
        );
        // Another tenant's view and the global one do not change.
        assert!(RegistryDiff::between(&before, &after, None).is_empty());
        assert!(RegistryDiff::between(&before, &after, Some(Uuid::from_u128(0xb))).is_empty());
        // Nothing changes: nothing to report.
        let same = build(vec![RegisteredPlugin::private(TENANT, v1)]);
        assert!(RegistryDiff::between(&before, &same, Some(TENANT)).is_empty());
    }
}
