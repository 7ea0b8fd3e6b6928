//! What a registration names: a manifest, or an OpenAPI document to import, and for whom
//! the plugin is registered.

use sigil_audit::Actor;
use sigil_core::{Error, TenantId};

use super::namespace::in_field;
use crate::manifest::PluginManifest;

/// A registration request: exactly one of `manifest` and `openapi`.
#[derive(Clone, Debug, Default)]
pub struct Registration {
    pub manifest: Option<PluginManifest>,
    /// An OpenAPI 3.x document to import (with `id`, and optionally `name`, `version`).
    pub openapi: Option<serde_json::Value>,
    pub id: Option<String>,
    pub name: Option<String>,
    pub version: Option<String>,
    /// Register for every tenant: the operator's default; a tenant admin's plugins are
    /// private to the tenant.
    pub global: Option<bool>,
}

impl Registration {
    /// The tenant the plugin is private to; `None` for a global plugin.
    pub(crate) fn target(&self, by: &Actor) -> Result<Option<TenantId>, Error> {
        match (by.tenant, self.global) {
            (None, Some(false)) => Err(Error::forbidden(
                "tenant_required",
                "the operator registers global plugins; a tenant's own plugins are registered by its admins",
            )),
            (None, _) => Ok(None),
            (Some(_), Some(true)) => Err(Error::forbidden(
                "operator_only",
                "only the operator registers global plugins",
            )),
            (Some(t), _) => Ok(Some(t)),
        }
    }

    /// The manifest given, or imported from the OpenAPI document, normalized and valid.
    pub(crate) fn into_manifest(self) -> Result<PluginManifest, Error> {
        let mut manifest = match (self.manifest, self.openapi) {
            (Some(m), None) => m,
            (None, Some(doc)) => {
                let id = self.id.ok_or_else(|| {
                    Error::invalid_field(
                        "id_required",
                        "id",
                        "give the plugin id for an OpenAPI document",
                    )
                })?;
                PluginManifest::from_openapi(
                    &doc,
                    &id,
                    self.name.as_deref(),
                    self.version.as_deref(),
                )
                .map_err(|errors| {
                    Error::invalid_with(
                        "invalid_openapi",
                        "the OpenAPI document cannot be imported",
                        in_field("openapi", errors),
                    )
                })?
            }
            _ => {
                return Err(Error::invalid_field(
                    "manifest_required",
                    "manifest",
                    "give exactly one of manifest or openapi",
                ))
            }
        };
        manifest.normalize();
        manifest.validate().map_err(|errors| {
            Error::invalid_with(
                "invalid_manifest",
                "the manifest is invalid",
                in_field("manifest", errors),
            )
        })?;
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test_support::{manifest, TENANT};

    fn admin() -> Actor {
        Actor::user(
            TenantId(TENANT),
            sigil_core::UserId(uuid::Uuid::nil()),
            "admin",
            Some(sigil_core::TokenId(uuid::Uuid::nil())),
        )
    }

    fn code(err: Error) -> &'static str {
        match err {
            Error::Forbidden { code, .. }
            | Error::Invalid { code, .. }
            | Error::Conflict { code, .. } => code,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn the_operator_registers_global_plugins_and_admins_private_ones() {
        let r = |global| Registration {
            global,
            ..Registration::default()
        };
        assert_eq!(r(None).target(&Actor::operator()).unwrap(), None);
        assert_eq!(r(Some(true)).target(&Actor::operator()).unwrap(), None);
        assert_eq!(
            code(r(Some(false)).target(&Actor::operator()).unwrap_err()),
            "tenant_required"
        );
        assert_eq!(r(None).target(&admin()).unwrap(), Some(TenantId(TENANT)));
        assert_eq!(
            r(Some(false)).target(&admin()).unwrap(),
            Some(TenantId(TENANT))
        );
        assert_eq!(
            code(r(Some(true)).target(&admin()).unwrap_err()),
            "operator_only"
        );
    }

    #[test]
    fn exactly_one_source_is_given() {
        assert_eq!(
            code(Registration::default().into_manifest().unwrap_err()),
            "manifest_required"
        );
        let both = Registration {
            manifest: Some(manifest("crm", "1", &["crm.a"])),
            openapi: Some(serde_json::json!({})),
            ..Registration::default()
        };
        assert_eq!(code(both.into_manifest().unwrap_err()), "manifest_required");
        let no_id = Registration {
            openapi: Some(serde_json::json!({"openapi": "3.0.0"})),
            ..Registration::default()
        };
        assert_eq!(code(no_id.into_manifest().unwrap_err()), "id_required");
    }

    #[test]
    fn a_manifest_is_normalized_then_validated() {
        let mut m = manifest(" crm ", "1", &["crm.a"]);
        m.methods[0].http.method = "get".into();
        let ok = Registration {
            manifest: Some(m),
            ..Registration::default()
        }
        .into_manifest()
        .unwrap();
        assert_eq!(ok.id, "crm");
        assert_eq!(ok.methods[0].http.method, "GET");
        let bad = Registration {
            manifest: Some(manifest("Not Valid", "1", &["x.a"])),
            ..Registration::default()
        };
        let err = bad.into_manifest().unwrap_err();
        let Error::Invalid { code, errors, .. } = err else {
            panic!("not invalid: {err:?}");
        };
        assert_eq!(code, "invalid_manifest");
        assert!(errors.iter().all(|e| e.field == "manifest"));
    }

    #[test]
    fn an_unreadable_openapi_document_is_invalid_openapi() {
        let r = Registration {
            openapi: Some(serde_json::json!({"openapi": "2.0"})),
            id: Some("crm".into()),
            ..Registration::default()
        };
        let err = r.into_manifest().unwrap_err();
        let Error::Invalid { code, errors, .. } = err else {
            panic!("not invalid: {err:?}");
        };
        assert_eq!(code, "invalid_openapi");
        assert!(errors.iter().all(|e| e.field == "openapi"));
    }
}
