//! Turning a token's scope into a compiled method set.

use sigil_core::{Error, FieldError, Result, TenantId};
use sigil_scope_registry::store::ScopeSetStore;
use sigil_scope_registry::{MethodSet, Snapshot};

use crate::types::Scope;

/// Resolves a scope for a new or changed token: an unknown set or a method entry that
/// matches nothing is refused with the offending entries listed.
pub async fn resolve_strict(
    snapshot: &Snapshot,
    sets: &ScopeSetStore,
    tenant: TenantId,
    scope: &Scope,
) -> Result<MethodSet> {
    match scope {
        Scope::All => Ok(snapshot.visible(Some(tenant.0)).clone()),
        Scope::Methods(entries) => {
            if entries.is_empty() {
                return Err(Error::invalid_field(
                    "invalid_scope",
                    "methods",
                    "a custom scope needs at least one method",
                ));
            }
            snapshot
                .resolve(Some(tenant.0), entries, None)
                .map_err(|unknown| {
                    Error::invalid_with(
                        "unknown_methods",
                        "some methods or patterns match no method of the registry",
                        unknown_entries("methods", entries, unknown),
                    )
                })
        }
        Scope::Set(id) => match resolve_set(snapshot, sets, tenant, id).await? {
            Some(set) => Ok(set),
            None => Err(Error::invalid_field(
                "unknown_scope_set",
                "scope_set",
                format!("there is no scope set {id:?}; listScopeSets shows the ones there are"),
            )),
        },
    }
}

/// Resolves an existing token's scope; methods removed since are simply dropped and a
/// deleted set grants nothing.
pub async fn resolve_lenient(
    snapshot: &Snapshot,
    sets: &ScopeSetStore,
    tenant: TenantId,
    scope: &Scope,
) -> Result<MethodSet> {
    Ok(match scope {
        Scope::All => snapshot.visible(Some(tenant.0)).clone(),
        Scope::Methods(entries) => snapshot.resolve_lenient(Some(tenant.0), entries, None),
        Scope::Set(id) => resolve_set(snapshot, sets, tenant, id)
            .await?
            .unwrap_or_default(),
    })
}

async fn resolve_set(
    snapshot: &Snapshot,
    sets: &ScopeSetStore,
    tenant: TenantId,
    id: &str,
) -> Result<Option<MethodSet>> {
    if let Some(predefined) = snapshot.predefined_set(Some(tenant.0), id) {
        return Ok(Some(predefined.methods.clone()));
    }
    Ok(sets
        .find(tenant, id)
        .await?
        .map(|custom| snapshot.resolve_lenient(Some(tenant.0), &custom.entries, custom.access)))
}

/// The entries of the list `field` that match no method, each named by its place in the
/// list (`methods[2]`).
pub fn unknown_entries(field: &str, entries: &[String], unknown: Vec<String>) -> Vec<FieldError> {
    unknown
        .into_iter()
        .map(|entry| {
            let at = entries.iter().position(|e| *e == entry).unwrap_or_default();
            FieldError::new(
                format!("{field}[{at}]"),
                format!("{entry:?} matches no method of the registry; listMethods shows them"),
            )
        })
        .collect()
}
