//! A plugin change checked against the whole registry: the registry must still compile
//! with it, and the methods the new version drops are reported.

use sigil_core::Error;

use crate::manifest::PluginManifest;
use crate::snapshot::{RegisteredPlugin, Snapshot};

/// The built-in plugin and the stored plugins, with `change` replacing the stored plugin
/// of its id and visibility (or added last).
pub(crate) fn plugins_with(
    builtin: Option<&PluginManifest>,
    stored: &[RegisteredPlugin],
    change: Option<&RegisteredPlugin>,
) -> Vec<RegisteredPlugin> {
    let replaced = |p: &RegisteredPlugin| {
        change.is_some_and(|c| p.manifest.id == c.manifest.id && p.tenant == c.tenant)
    };
    builtin
        .cloned()
        .map(RegisteredPlugin::global)
        .into_iter()
        .chain(stored.iter().filter(|p| !replaced(p)).cloned())
        .chain(change.cloned())
        .collect()
}

/// Compiles the registry from the built-in plugin and the stored plugins, with `change`
/// replacing the stored plugin of its id and visibility (or added).
pub fn compile_registry(
    builtin: Option<&PluginManifest>,
    stored: &[RegisteredPlugin],
    change: Option<&RegisteredPlugin>,
) -> Result<Snapshot, Vec<String>> {
    Snapshot::build(plugins_with(builtin, stored, change))
}

/// The registry before and after `change`, refused when the change breaks it (ids,
/// routes or namespaces that clash with registered plugins). `before` is `None` when
/// the stored registry does not compile as it is.
pub fn compile_change(
    builtin: Option<&PluginManifest>,
    stored: &[RegisteredPlugin],
    change: &RegisteredPlugin,
) -> Result<(Option<Snapshot>, Snapshot), Error> {
    let after = compile_registry(builtin, stored, Some(change)).map_err(|errors| {
        Error::conflict(
            "registry_conflict",
            format!(
                "the plugin conflicts with registered plugins or methods: {}",
                errors.join("; ")
            ),
        )
    })?;
    Ok((compile_registry(builtin, stored, None).ok(), after))
}

/// Method ids `old` has and `new` no longer has, in `old`'s order: tokens simply lose
/// them.
pub fn removed_methods(old: &PluginManifest, new: &PluginManifest) -> Vec<String> {
    old.methods
        .iter()
        .filter(|m| !new.methods.iter().any(|n| n.id == m.id))
        .map(|m| m.id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test_support::{manifest, TENANT};

    #[test]
    fn removed_methods_are_those_the_new_version_drops() {
        let old = manifest("crm", "1", &["crm.a", "crm.b", "crm.c"]);
        let new = manifest("crm", "2", &["crm.c", "crm.d", "crm.a"]);
        assert_eq!(removed_methods(&old, &new), ["crm.b"]);
        assert!(removed_methods(&new, &new).is_empty());
        assert_eq!(
            removed_methods(&old, &manifest("crm", "2", &[])),
            ["crm.a", "crm.b", "crm.c"]
        );
    }

    #[test]
    fn a_change_replaces_the_plugin_of_its_id_and_visibility_only() {
        let global = RegisteredPlugin::global(manifest("crm", "1", &["crm.a"]));
        let private = RegisteredPlugin::private(TENANT, manifest("crm", "1", &["crm.a"]));
        let other = RegisteredPlugin::global(manifest("hr", "1", &["hr.a"]));
        let change = RegisteredPlugin::global(manifest("crm", "2", &["crm.a", "crm.b"]));
        let builtin = manifest("sigil", "1", &["tokens.list"]);
        let all = plugins_with(
            Some(&builtin),
            &[global, private.clone(), other.clone()],
            Some(&change),
        );
        let ids: Vec<(&str, &str)> = all
            .iter()
            .map(|p| (p.manifest.id.as_str(), p.manifest.version.as_str()))
            .collect();
        assert_eq!(
            ids,
            [("sigil", "1"), ("crm", "1"), ("hr", "1"), ("crm", "2")]
        );
        assert_eq!(all[1], private);
        assert_eq!(all[2], other);
    }

    #[test]
    fn a_plugin_taking_anothers_method_ids_is_a_registry_conflict() {
        let stored = [RegisteredPlugin::global(manifest("crm", "1", &["crm.a"]))];
        // A second global plugin with the same id in another row cannot happen; a
        // tenant's plugin may not redefine a global method or namespace.
        let change = RegisteredPlugin::private(TENANT, manifest("crm", "1", &["crm.a"]));
        let err = compile_change(None, &stored, &change).unwrap_err();
        let Error::Conflict { code, detail } = err else {
            panic!("not a conflict: {err:?}");
        };
        assert_eq!(code, "registry_conflict");
        assert!(
            detail.starts_with("the plugin conflicts with registered plugins or methods: "),
            "{detail}"
        );
    }

    #[test]
    fn a_route_taken_by_another_plugin_is_a_registry_conflict() {
        let stored = [RegisteredPlugin::global(manifest("crm", "1", &["crm.a"]))];
        let mut hr = manifest("hr", "1", &["hr.a"]);
        hr.methods[0].http = stored[0].manifest.methods[0].http.clone();
        let err = compile_change(None, &stored, &RegisteredPlugin::global(hr)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Conflict {
                    code: "registry_conflict",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn a_compatible_change_compiles_before_and_after() {
        let stored = [RegisteredPlugin::global(manifest("crm", "1", &["crm.a"]))];
        let change = RegisteredPlugin::global(manifest("crm", "2", &["crm.a", "crm.b"]));
        let (before, after) = compile_change(None, &stored, &change).unwrap();
        let before = before.unwrap();
        assert!(before.lookup(None, "crm.b").is_none());
        assert!(after.lookup(None, "crm.b").is_some());
        assert!(after.lookup(Some(TENANT), "crm.a").is_some());
    }
}
