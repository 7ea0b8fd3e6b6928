//! Scope set use cases: the predefined and custom sets a tenant sees, and a tenant
//! admin's changes to its custom sets. Each change is stored with its audit event in one
//! transaction, then rebuilds the registry and publishes the change.

use std::sync::Arc;

use sea_orm::TransactionTrait;
use sigil_audit::Actor;
use sigil_core::{Error, FieldError, Result, TenantId};

use crate::access::Access;
use crate::bitset::MethodSet;
use crate::service::RegistryService;
use crate::snapshot::{PredefinedSet, Snapshot};
use crate::store::sets::{self, SetUpdate};
use crate::store::{CustomSet, CustomSetInput};

/// Most entries of a custom set.
pub const MAX_SET_ENTRIES: usize = 500;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScopeSetKind {
    /// Built in, or shipped with a plugin.
    Predefined,
    /// A tenant admin's own.
    Custom,
}

/// A scope set as a tenant sees it, with the methods it grants now.
#[derive(Clone, Debug)]
pub struct ScopeSetView {
    /// Id to use as a token's `scope_set`.
    pub id: String,
    pub name: String,
    pub description: String,
    pub kind: ScopeSetKind,
    /// Defining plugin of a predefined set.
    pub plugin: Option<String>,
    pub entries: Vec<String>,
    pub access: Option<Access>,
    methods: MethodSet,
    snapshot: Arc<Snapshot>,
}

impl ScopeSetView {
    fn predefined(snapshot: &Arc<Snapshot>, s: &PredefinedSet) -> Self {
        ScopeSetView {
            id: s.id.clone(),
            name: s.name.clone(),
            description: s.description.clone(),
            kind: ScopeSetKind::Predefined,
            plugin: s.plugin.clone(),
            entries: s.entries.clone(),
            access: s.access,
            methods: s.methods.clone(),
            snapshot: Arc::clone(snapshot),
        }
    }

    /// Entries that match nothing now (methods removed since) simply grant nothing.
    fn custom(snapshot: &Arc<Snapshot>, set: &CustomSet) -> Self {
        ScopeSetView {
            id: set.slug.clone(),
            name: set.name.clone(),
            description: set.description.clone(),
            kind: ScopeSetKind::Custom,
            plugin: None,
            entries: set.entries.clone(),
            access: set.access,
            methods: snapshot.resolve_lenient(Some(set.tenant.0), &set.entries, set.access),
            snapshot: Arc::clone(snapshot),
        }
    }

    /// How many methods it grants.
    pub fn method_count(&self) -> usize {
        self.methods.len()
    }

    /// The ids of the methods it grants, in index order.
    pub fn method_ids(&self) -> Vec<String> {
        self.snapshot
            .method_ids(&self.methods)
            .map(str::to_owned)
            .collect()
    }
}

/// A change of a custom set; what is `None` stays.
#[derive(Clone, Debug, Default)]
pub struct ScopeSetChanges {
    pub name: Option<String>,
    pub description: Option<String>,
    pub entries: Option<Vec<String>>,
    pub access: Option<Access>,
}

impl RegistryService {
    /// The predefined sets (matching `q` in id or name) and then the custom sets of
    /// `tenant` (matching `q`), or those of one `kind`.
    pub async fn scope_sets(
        &self,
        tenant: TenantId,
        q: Option<&str>,
        kind: Option<ScopeSetKind>,
    ) -> Result<Vec<ScopeSetView>> {
        let snapshot = self.current();
        let needle = q.unwrap_or_default().to_lowercase();
        let mut out = Vec::new();
        if kind != Some(ScopeSetKind::Custom) {
            out.extend(
                snapshot
                    .predefined_sets(Some(tenant.0))
                    .filter(|s| {
                        needle.is_empty()
                            || s.id.contains(&needle)
                            || s.name.to_lowercase().contains(&needle)
                    })
                    .map(|s| ScopeSetView::predefined(&snapshot, s)),
            );
        }
        if kind != Some(ScopeSetKind::Predefined) {
            let custom = self.sets.list(tenant, q).await?;
            out.extend(custom.iter().map(|c| ScopeSetView::custom(&snapshot, c)));
        }
        Ok(out)
    }

    /// A predefined set `tenant` sees, else one of its custom sets.
    pub async fn scope_set(&self, tenant: TenantId, id: &str) -> Result<ScopeSetView> {
        let snapshot = self.current();
        if let Some(s) = snapshot.predefined_set(Some(tenant.0), id) {
            return Ok(ScopeSetView::predefined(&snapshot, s));
        }
        let set = self
            .sets
            .find(tenant, id)
            .await?
            .ok_or(Error::not_found("scope set"))?;
        Ok(ScopeSetView::custom(&snapshot, &set))
    }

    /// Defines a custom set of `tenant` (`scope_set.create`, by `by`); its id may not be a
    /// predefined set's and every entry must match a method.
    pub async fn create_scope_set(
        &self,
        by: &Actor,
        tenant: TenantId,
        input: CustomSetInput,
    ) -> Result<ScopeSetView> {
        let snapshot = self.current();
        if snapshot
            .predefined_set(Some(tenant.0), &input.slug)
            .is_some()
        {
            return Err(Error::conflict(
                "scope_set_exists",
                "a predefined set has this id",
            ));
        }
        check_entries(&snapshot, tenant, &input.entries, input.access)?;
        let txn = self.db.begin().await?;
        let set = sets::create(&txn, tenant, input).await?;
        let event = by
            .event("scope_set.create", "scope_set")
            .in_tenant(tenant)
            .target(&set.slug)
            .after(set_json(&set));
        sigil_audit::write(&txn, event).await?;
        txn.commit().await?;
        self.changed(Some(tenant)).await?;
        Ok(ScopeSetView::custom(&snapshot, &set))
    }

    /// Changes a custom set of `tenant` (`scope_set.update`, by `by`, with the set before
    /// and after); tokens using it change with it. Only new entries are checked: kept ones
    /// may name methods removed since, which simply grant nothing (as for the tokens using
    /// the set).
    pub async fn update_scope_set(
        &self,
        by: &Actor,
        tenant: TenantId,
        id: &str,
        changes: ScopeSetChanges,
    ) -> Result<ScopeSetView> {
        let snapshot = self.current();
        let txn = self.db.begin().await?;
        let before = sets::find(&txn, tenant, id)
            .await?
            .ok_or(Error::not_found("scope set"))?;
        if let Some(entries) = &changes.entries {
            check_entries(&snapshot, tenant, entries, changes.access.or(before.access))?;
        }
        let update = SetUpdate {
            name: changes.name,
            description: changes.description,
            entries: changes.entries,
            access: changes.access.map(Some),
        };
        let set = sets::update(&txn, &before, update).await?;
        let event = by
            .event("scope_set.update", "scope_set")
            .in_tenant(tenant)
            .target(&set.slug)
            .before(set_json(&before))
            .after(set_json(&set));
        sigil_audit::write(&txn, event).await?;
        txn.commit().await?;
        self.changed(Some(tenant)).await?;
        Ok(ScopeSetView::custom(&snapshot, &set))
    }

    /// Deletes a custom set of `tenant` (`scope_set.delete`, by `by`); refused while tokens
    /// use it unless `force` (they are left with no rights from it).
    pub async fn delete_scope_set(
        &self,
        by: &Actor,
        tenant: TenantId,
        id: &str,
        force: bool,
    ) -> Result<()> {
        self.sets
            .find(tenant, id)
            .await?
            .ok_or(Error::not_found("scope set"))?;
        // Counted before the transaction: the tokens are read through the token store,
        // and on SQLite the transaction holds the only connection.
        let in_use = self.tokens.count_using_set(tenant, id).await?;
        if in_use > 0 && !force {
            return Err(Error::conflict(
                "scope_set_in_use",
                format!("{in_use} tokens use this set; delete with ?force=true to leave them with no rights from it"),
            ));
        }
        let txn = self.db.begin().await?;
        let set = sets::delete(&txn, tenant, id).await?;
        let event = by
            .event("scope_set.delete", "scope_set")
            .in_tenant(tenant)
            .target(&set.slug)
            .before(set_json(&set));
        sigil_audit::write(&txn, event).await?;
        txn.commit().await?;
        self.changed(Some(tenant)).await?;
        Ok(())
    }
}

/// A custom set as its audit events show it.
fn set_json(set: &CustomSet) -> serde_json::Value {
    serde_json::json!({"name": set.name, "entries": set.entries})
}

/// Refuses more than [`MAX_SET_ENTRIES`] entries, and entries that match no method
/// `tenant` sees (each named by its place in `methods`).
fn check_entries(
    snapshot: &Snapshot,
    tenant: TenantId,
    entries: &[String],
    access: Option<Access>,
) -> Result<()> {
    if entries.len() > MAX_SET_ENTRIES {
        return Err(Error::invalid_field(
            "too_many_methods",
            "methods",
            format!("a custom set has at most {MAX_SET_ENTRIES} entries"),
        ));
    }
    snapshot
        .resolve(Some(tenant.0), entries, access)
        .map(|_| ())
        .map_err(|unknown| {
            Error::invalid_with(
                "unknown_methods",
                "some entries match no method",
                unknown_entries("methods", entries, unknown),
            )
        })
}

/// Each unknown entry as a problem of its place in `field`.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test_support::{manifest, TENANT};
    use crate::snapshot::RegisteredPlugin;

    fn snapshot() -> Snapshot {
        Snapshot::build(vec![RegisteredPlugin::global(manifest(
            "crm",
            "1",
            &["crm.a", "crm.b"],
        ))])
        .unwrap()
    }

    fn entries(e: &[&str]) -> Vec<String> {
        e.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn entries_must_match_methods() {
        let t = TenantId(TENANT);
        assert!(check_entries(&snapshot(), t, &entries(&["crm.a", "crm.*"]), None).is_ok());
        let err =
            check_entries(&snapshot(), t, &entries(&["crm.a", "crm.x", "hr.*"]), None).unwrap_err();
        let Error::Invalid { code, errors, .. } = err else {
            panic!("not invalid: {err:?}");
        };
        assert_eq!(code, "unknown_methods");
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["methods[1]", "methods[2]"]);
        assert_eq!(
            errors[0].message,
            "\"crm.x\" matches no method of the registry; listMethods shows them"
        );
    }

    #[test]
    fn a_set_has_at_most_500_entries() {
        let many = vec!["crm.a".to_owned(); MAX_SET_ENTRIES + 1];
        let err = check_entries(&snapshot(), TenantId(TENANT), &many, None).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Invalid {
                    code: "too_many_methods",
                    ..
                }
            ),
            "{err:?}"
        );
        let most = vec!["crm.a".to_owned(); MAX_SET_ENTRIES];
        assert!(check_entries(&snapshot(), TenantId(TENANT), &most, None).is_ok());
    }

    #[test]
    fn a_custom_view_grants_what_its_entries_match_now() {
        let snapshot = Arc::new(snapshot());
        let now = sigil_core::now();
        let set = CustomSet {
            id: sigil_core::ScopeSetId::new(),
            tenant: TenantId(TENANT),
            slug: "mine".into(),
            name: "Mine".into(),
            description: String::new(),
            entries: entries(&["crm.b", "crm.removed"]),
            access: None,
            created_at: now,
            updated_at: now,
        };
        let view = ScopeSetView::custom(&snapshot, &set);
        assert_eq!(view.kind, ScopeSetKind::Custom);
        assert_eq!(view.method_count(), 1);
        assert_eq!(view.method_ids(), ["crm.b"]);
        let read_change = snapshot.read_change(Some(TENANT));
        let view = ScopeSetView::predefined(&snapshot, read_change);
        assert_eq!(view.kind, ScopeSetKind::Predefined);
        assert_eq!(view.method_ids(), ["crm.a", "crm.b"]);
    }
}

/// The set use cases on a database: each writes exactly its event, by the admin, with its
/// change; a refused one writes none.
#[cfg(test)]
mod use_case_tests {
    use serde_json::json;

    use super::*;
    use crate::plugins::source::Registration;
    use crate::plugins::test_support::manifest;
    use crate::test_db::{alice, assert_by, events, json, operator, service};

    fn input(slug: &str, entries: &[&str]) -> CustomSetInput {
        CustomSetInput {
            slug: slug.into(),
            name: slug.to_uppercase(),
            description: String::new(),
            entries: entries.iter().map(|e| (*e).to_owned()).collect(),
            access: None,
        }
    }

    /// A registry service with a global `crm` plugin (its event is written first).
    async fn with_crm() -> (RegistryService, std::sync::Arc<crate::test_db::Tokens>) {
        let (s, tokens) = service().await;
        let crm = Registration {
            manifest: Some(manifest("crm", "1", &["crm.a", "crm.b"])),
            ..Registration::default()
        };
        s.register_plugin(&operator(), crm).await.unwrap();
        (s, tokens)
    }

    #[tokio::test]
    async fn set_changes_are_audited_by_the_admin() {
        let (s, tokens) = with_crm().await;
        let acme = TenantId::new();
        let admin = alice(acme);
        let set = s
            .create_scope_set(&admin, acme, input("mine", &["crm.a"]))
            .await
            .unwrap();
        assert_eq!(set.method_ids(), ["crm.a"]);
        let changes = ScopeSetChanges {
            name: Some("Ours".into()),
            entries: Some(vec!["crm.*".into()]),
            ..ScopeSetChanges::default()
        };
        let set = s
            .update_scope_set(&admin, acme, "mine", changes)
            .await
            .unwrap();
        assert_eq!(set.method_ids(), ["crm.a", "crm.b"]);
        *tokens.using_set.lock().unwrap() = 2;
        s.delete_scope_set(&admin, acme, "mine", true)
            .await
            .unwrap();

        let events = events(&s).await;
        let events = &events[1..];
        let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            ["scope_set.create", "scope_set.update", "scope_set.delete"]
        );
        for e in events {
            assert_by(e, &admin);
            assert_eq!(e.tenant_id, Some(acme));
            assert_eq!(e.target_type, "scope_set");
            assert_eq!(e.target_id.as_deref(), Some("mine"));
        }
        let created = json!({"name": "MINE", "entries": ["crm.a"]});
        let updated = json!({"name": "Ours", "entries": ["crm.*"]});
        assert_eq!(events[0].before, None);
        assert_eq!(json(&events[0].after), created);
        assert_eq!(json(&events[1].before), created);
        assert_eq!(json(&events[1].after), updated);
        assert_eq!(json(&events[2].before), updated);
        assert_eq!(events[2].after, None);
        assert!(s.sets.find(acme, "mine").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_refused_set_change_writes_nothing() {
        let (s, tokens) = with_crm().await;
        let (acme, globex) = (TenantId::new(), TenantId::new());
        let admin = alice(acme);
        s.create_scope_set(&admin, acme, input("mine", &["crm.a"]))
            .await
            .unwrap();
        let written = events(&s).await.len();
        let version = s.plugins.version().await.unwrap();

        let refused = [
            // Taken, by a custom or a predefined set.
            s.create_scope_set(&admin, acme, input("mine", &["crm.a"]))
                .await
                .map(drop),
            s.create_scope_set(&admin, acme, input(crate::READ_ONLY_SET, &["crm.a"]))
                .await
                .map(drop),
            // Not a slug; entries that match nothing.
            s.create_scope_set(&admin, acme, input("Not A Slug", &["crm.a"]))
                .await
                .map(drop),
            s.create_scope_set(&admin, acme, input("other", &["hr.*"]))
                .await
                .map(drop),
            s.update_scope_set(
                &admin,
                acme,
                "mine",
                ScopeSetChanges {
                    entries: Some(vec!["hr.a".into()]),
                    ..ScopeSetChanges::default()
                },
            )
            .await
            .map(drop),
            // Another tenant's set is not found.
            s.update_scope_set(&alice(globex), globex, "mine", ScopeSetChanges::default())
                .await
                .map(drop),
            s.delete_scope_set(&alice(globex), globex, "mine", true)
                .await,
        ];
        for r in refused {
            assert!(r.is_err());
        }
        // In use: refused without force.
        *tokens.using_set.lock().unwrap() = 1;
        let err = s
            .delete_scope_set(&admin, acme, "mine", false)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Conflict {
                    code: "scope_set_in_use",
                    ..
                }
            ),
            "{err:?}"
        );

        assert_eq!(events(&s).await.len(), written);
        assert_eq!(s.plugins.version().await.unwrap(), version);
        let mine = s.sets.find(acme, "mine").await.unwrap().unwrap();
        assert_eq!(mine.entries, ["crm.a"]);
    }
}
