//! Namespaces: each plugin owns the namespace of its id, and no external plugin may take
//! one of the built-in plugin's.

use std::collections::BTreeSet;

use sigil_core::{Error, FieldError};

use crate::manifest::PluginManifest;

/// Id of Sigil's own plugin, derived from its API.
pub const BUILTIN_PLUGIN: &str = "sigil";

/// Namespaces no external plugin may take: the built-in plugin's id and the first
/// segments of its method ids (`tokens`, `users`, `sigil`, ...).
pub fn reserved_namespaces(builtin: Option<&PluginManifest>) -> BTreeSet<String> {
    let mut reserved: BTreeSet<String> = builtin
        .map(|b| b.namespaces().into_iter().map(str::to_owned).collect())
        .unwrap_or_default();
    reserved.insert(BUILTIN_PLUGIN.to_owned());
    reserved
}

/// The namespace rule for an external plugin: its id is not a built-in namespace and its
/// method ids start with `<id>.`.
pub fn check_namespace(
    manifest: &PluginManifest,
    reserved: &BTreeSet<String>,
) -> Result<(), Error> {
    if manifest.id == BUILTIN_PLUGIN {
        return Err(Error::conflict(
            "reserved_plugin",
            "the plugin id 'sigil' is reserved",
        ));
    }
    if reserved.contains(&manifest.id) {
        // The id is taken (by the built-in plugin): a conflict, like 'sigil' itself.
        return Err(Error::conflict(
            "reserved_plugin_id",
            format!(
                "the plugin id '{0}' is a namespace of the built-in plugin (its methods '{0}.*'); choose another id",
                manifest.id
            ),
        ));
    }
    let errors = manifest.namespace_errors();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::invalid_with(
            "method_outside_namespace",
            format!(
                "every method id of plugin '{0}' must start with '{0}.'",
                manifest.id
            ),
            in_field("manifest", errors),
        ))
    }
}

/// Each of `errors` as a problem of `field`.
pub(crate) fn in_field(field: &str, errors: Vec<String>) -> Vec<FieldError> {
    errors
        .into_iter()
        .map(|message| FieldError::new(field, message))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test_support::manifest;

    fn reserved() -> BTreeSet<String> {
        reserved_namespaces(Some(&manifest(
            BUILTIN_PLUGIN,
            "1",
            &["tokens.list", "users.get", "sigil.health"],
        )))
    }

    #[test]
    fn the_builtin_plugin_reserves_its_id_and_namespaces() {
        let names: Vec<String> = reserved().into_iter().collect();
        assert_eq!(names, ["sigil", "tokens", "users"]);
        assert_eq!(
            reserved_namespaces(None).into_iter().collect::<Vec<_>>(),
            ["sigil"]
        );
    }

    #[test]
    fn the_builtin_id_is_a_conflict() {
        let err = check_namespace(&manifest("sigil", "1", &["sigil.x"]), &reserved()).unwrap_err();
        assert!(matches!(
            err,
            Error::Conflict {
                code: "reserved_plugin",
                ..
            }
        ));
    }

    #[test]
    fn a_builtin_namespace_as_id_is_a_conflict() {
        let err =
            check_namespace(&manifest("tokens", "1", &["tokens.steal"]), &reserved()).unwrap_err();
        assert!(matches!(
            err,
            Error::Conflict {
                code: "reserved_plugin_id",
                ..
            }
        ));
        assert!(err.to_string().contains("'tokens.*'"), "{err}");
    }

    #[test]
    fn methods_outside_the_namespace_are_invalid_one_by_one() {
        let err = check_namespace(
            &manifest("crm", "1", &["crm.ok", "billing.pay", "tokens.list"]),
            &reserved(),
        )
        .unwrap_err();
        let Error::Invalid { code, errors, .. } = err else {
            panic!("not invalid: {err:?}");
        };
        assert_eq!(code, "method_outside_namespace");
        assert_eq!(errors.len(), 2);
        assert!(errors.iter().all(|e| e.field == "manifest"));
        assert!(
            errors[0].message.contains("'billing.pay'"),
            "{:?}",
            errors[0]
        );
    }

    #[test]
    fn a_plugin_in_its_own_namespace_passes() {
        assert!(check_namespace(&manifest("crm", "1", &["crm.a", "crm.b.c"]), &reserved()).is_ok());
    }
}
