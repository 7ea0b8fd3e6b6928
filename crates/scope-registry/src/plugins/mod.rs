//! Plugin use cases: register or upgrade a plugin, remove one, store one read from a
//! file, and the plugins a caller sees. Each stores its change and writes its audit
//! events in one transaction, then rebuilds the registry and publishes the change.

pub mod compile;
pub mod namespace;
pub mod source;
pub mod version;
pub mod widened;

#[cfg(test)]
pub(crate) mod test_support;

use chrono::{DateTime, Utc};
use sea_orm::TransactionTrait;
use sigil_audit::{Actor, NewEvent};
use sigil_core::{Error, Result, TenantId};

use crate::manifest::PluginManifest;
use crate::service::RegistryService;
use crate::snapshot::{MethodInfo, RegisteredPlugin, Snapshot};
use crate::store::{self, PluginRecord};
use compile::{compile_change, compile_registry, removed_methods};
use namespace::{check_namespace, reserved_namespaces, BUILTIN_PLUGIN};
use source::Registration;
use version::check_newer;
use widened::Widening;

/// A plugin as a caller sees it: its manifest and its methods as compiled.
#[derive(Clone, Debug)]
pub struct PluginView {
    pub plugin: RegisteredPlugin,
    /// The manifest's methods the registry knows, in manifest order.
    pub methods: Vec<MethodInfo>,
    /// When it was stored and last changed (known for stored plugins only).
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl PluginView {
    fn of(snapshot: &Snapshot, plugin: RegisteredPlugin, record: Option<&PluginRecord>) -> Self {
        let methods = plugin
            .manifest
            .methods
            .iter()
            .filter_map(|m| snapshot.lookup(plugin.tenant, &m.id))
            .map(|idx| snapshot.method(idx).clone())
            .collect();
        PluginView {
            plugin,
            methods,
            created_at: record.map(|r| r.created_at),
            updated_at: record.map(|r| r.updated_at),
        }
    }

    pub fn manifest(&self) -> &PluginManifest {
        &self.plugin.manifest
    }

    /// Registered for every tenant (not private to one).
    pub fn is_global(&self) -> bool {
        self.plugin.tenant.is_none()
    }

    /// Sigil's own plugin.
    pub fn is_built_in(&self) -> bool {
        self.plugin.manifest.id == BUILTIN_PLUGIN && self.is_global()
    }

    /// Ids of its predefined scope sets (`{plugin}.{set}`).
    pub fn scope_set_ids(&self) -> impl Iterator<Item = String> + '_ {
        let m = &self.plugin.manifest;
        m.scope_sets.iter().map(|s| format!("{}.{}", m.id, s.id))
    }
}

/// The outcome of a registration.
#[derive(Debug)]
pub struct Registered {
    /// A new plugin (not a new version of a stored one).
    pub created: bool,
    pub plugin: PluginView,
    /// Method ids the new version no longer has; tokens simply lose them.
    pub removed_methods: Vec<String>,
    /// Tokens and scope sets that grant methods they did not grant before.
    pub widened: Widening,
}

/// The outcome of a removal.
#[derive(Debug)]
pub struct RemovedPlugin {
    pub id: String,
    /// Its method ids; tokens whose scope named them no longer grant them.
    pub removed_methods: Vec<String>,
}

impl RegistryService {
    /// Plugins `tenant` sees (global ones and its own; the operator: global ones), in
    /// registration order.
    pub fn visible_plugins(&self, tenant: Option<TenantId>) -> Vec<PluginView> {
        let snapshot = self.current();
        snapshot
            .plugins()
            .iter()
            .filter(|p| p.tenant.is_none() || p.tenant == tenant.map(|t| t.0))
            .map(|p| PluginView::of(&snapshot, p.clone(), None))
            .collect()
    }

    /// A plugin `tenant` sees: its own of that id, else the global one.
    pub async fn plugin(&self, tenant: Option<TenantId>, id: &str) -> Result<PluginView> {
        let snapshot = self.current();
        let own = tenant.and_then(|t| {
            snapshot
                .plugin(Some(t.0), id)
                .filter(|p| p.tenant == Some(t.0))
        });
        let plugin = own
            .or_else(|| snapshot.plugin(None, id).filter(|p| p.tenant.is_none()))
            .ok_or(Error::not_found("plugin"))?;
        let record = self
            .plugins
            .get(plugin.tenant.map(TenantId), &plugin.manifest.id)
            .await?;
        Ok(PluginView::of(&snapshot, plugin.clone(), record.as_ref()))
    }

    /// Registers a plugin, or upgrades it to a newer version: the operator's are global,
    /// a tenant admin's private to the tenant. The plugin must keep to its namespace and
    /// the whole registry must still compile with it; what it widens is reported, and
    /// audited (`plugin.register` or `plugin.update`, by `by`; for a global plugin also
    /// one event filed under each tenant it widened). Registering the stored manifest
    /// again changes nothing.
    pub async fn register_plugin(
        &self,
        by: &Actor,
        registration: Registration,
    ) -> Result<Registered> {
        let target = registration.target(by)?;
        let manifest = registration.into_manifest()?;
        let builtin = self.builtin();
        check_namespace(&manifest, &reserved_namespaces(builtin))?;
        let change = RegisteredPlugin {
            tenant: target.map(|t| t.0),
            manifest,
        };
        if let Some(old) = self.plugins.get(target, &change.manifest.id).await? {
            if old.manifest == change.manifest {
                let plugin = PluginView::of(&self.current(), change, Some(&old));
                return Ok(Registered {
                    created: false,
                    plugin,
                    removed_methods: Vec::new(),
                    widened: Widening::default(),
                });
            }
            check_newer(&old.manifest, &change.manifest)?;
        }
        // Decided again on the stored state under the registry write lock, so that
        // concurrent registrations cannot downgrade a plugin or store conflicting ones.
        // The registry before and after the change, compiled from that same state, tell
        // what the change widens; the tokens and sets it widens are read in the same
        // transaction, which writes the events with the change.
        let txn = self.db.begin().await?;
        let (previous, stored) = store::plugins::lock(&txn, target, &change.manifest.id).await?;
        if let Some(old) = previous
            .as_ref()
            .filter(|old| old.manifest != change.manifest)
        {
            check_newer(&old.manifest, &change.manifest)?;
        }
        let (before, after) = compile_change(builtin, &stored, &change)?;
        store::plugins::put(&txn, target, &change.manifest, previous.is_some()).await?;
        let widened = match &before {
            Some(before) => self.widening(&txn, before, &after, target).await?,
            None => Widening::default(),
        };
        let events = registration_events(
            by,
            &PluginView::of(&after, change.clone(), None),
            previous.as_ref().map(|o| o.manifest.version.as_str()),
            &widened,
        );
        for event in events {
            sigil_audit::write(&txn, event).await?;
        }
        txn.commit().await?;
        self.changed(target).await?;
        if !widened.is_empty() {
            tracing::warn!(
                plugin = %change.manifest.id,
                version = %change.manifest.version,
                "plugin registration widens existing tokens or scope sets: {}",
                widened.summary()
            );
        }
        let removed = previous
            .as_ref()
            .map(|old| removed_methods(&old.manifest, &change.manifest))
            .unwrap_or_default();
        let record = self.plugins.get(target, &change.manifest.id).await?;
        let plugin = PluginView::of(&self.current(), change, record.as_ref());
        Ok(Registered {
            created: previous.is_none(),
            plugin,
            removed_methods: removed,
            widened,
        })
    }

    /// Removes a plugin (`plugin.delete`, by `by`); tokens whose scope named its methods
    /// simply lose them. A tenant admin removes the tenant's own plugins; global ones are
    /// the operator's.
    pub async fn remove_plugin(&self, by: &Actor, id: &str) -> Result<RemovedPlugin> {
        let tenant = by.tenant;
        if id == BUILTIN_PLUGIN {
            return Err(Error::conflict(
                "reserved_plugin",
                "the built-in plugin cannot be removed",
            ));
        }
        let txn = self.db.begin().await?;
        // The version is bumped first: the registry write lock, as for a registration.
        store::plugins::bump_version(&txn).await?;
        let stored = match store::plugins::find(&txn, tenant, id).await? {
            Some(stored) => stored,
            // A tenant sees global plugins but may not remove them.
            None if tenant.is_some() && store::plugins::find(&txn, None, id).await?.is_some() => {
                return Err(Error::forbidden(
                    "operator_only",
                    "only the operator removes global plugins",
                ))
            }
            None => return Err(Error::not_found("plugin")),
        };
        store::plugins::delete(&txn, tenant, id).await?;
        let event = by
            .event("plugin.delete", "plugin")
            .target(id)
            .before(serde_json::json!({"version": stored.manifest.version}));
        sigil_audit::write(&txn, event).await?;
        txn.commit().await?;
        self.changed(tenant).await?;
        Ok(RemovedPlugin {
            id: id.to_owned(),
            removed_methods: stored
                .manifest
                .methods
                .iter()
                .map(|m| m.id.clone())
                .collect(),
        })
    }

    /// The namespace rule for a plugin given as a file (see [`check_namespace`]).
    pub fn check_file_namespace(&self, manifest: &PluginManifest) -> Result<()> {
        check_namespace(manifest, &reserved_namespaces(self.builtin()))
    }

    /// Stores a global plugin read from a `--plugin` file at start, unless it is stored
    /// as it is (then `false`). What it widens is logged and audited, by `by` (the
    /// operator), as for a registration through the API; the registry is rebuilt by the
    /// start that follows.
    pub async fn store_plugin_file(&self, by: &Actor, manifest: &PluginManifest) -> Result<bool> {
        let unchanged = self
            .plugins
            .get(None, &manifest.id)
            .await?
            .is_some_and(|stored| {
                serde_json::to_value(&stored.manifest).ok() == serde_json::to_value(manifest).ok()
            });
        if unchanged {
            return Ok(false);
        }
        let builtin = self.builtin();
        let change = RegisteredPlugin::global(manifest.clone());
        let txn = self.db.begin().await?;
        let (previous, stored) = store::plugins::lock(&txn, None, &manifest.id).await?;
        let before = compile_registry(builtin, &stored, None).ok();
        let after = compile_registry(builtin, &stored, Some(&change)).ok();
        store::plugins::put(&txn, None, manifest, previous.is_some()).await?;
        let widened = match (before, after) {
            (Some(before), Some(after)) => self.widening(&txn, &before, &after, None).await?,
            _ => Widening::default(),
        };
        for event in file_events(by, manifest, previous.is_none(), &widened) {
            sigil_audit::write(&txn, event).await?;
        }
        txn.commit().await?;
        if !widened.is_empty() {
            tracing::warn!(
                plugin = %manifest.id,
                version = %manifest.version,
                "plugin file widens existing tokens or scope sets: {}",
                widened.summary()
            );
        }
        Ok(true)
    }
}

fn register_action(created: bool) -> &'static str {
    if created {
        "plugin.register"
    } else {
        "plugin.update"
    }
}

/// The registration's event, by `by`; for a global plugin (the operator's) also one
/// event filed under each tenant it widened, so the tenant finds it in its own log.
fn registration_events(
    by: &Actor,
    plugin: &PluginView,
    previous_version: Option<&str>,
    widened: &Widening,
) -> Vec<NewEvent> {
    let m = plugin.manifest();
    let action = register_action(previous_version.is_none());
    let mut after = serde_json::json!({"version": m.version, "methods": plugin.methods.len()});
    merge(&mut after, widened.audit_json(None));
    let mut events = vec![by
        .event(action, "plugin")
        .target(&m.id)
        .before_opt(previous_version.map(|v| serde_json::json!({"version": v})))
        .after(after)];
    if plugin.is_global() {
        for t in widened.tenants() {
            let mut after = serde_json::json!({"version": m.version});
            merge(&mut after, widened.audit_json(Some(t)));
            events.push(
                by.event(action, "plugin")
                    .in_tenant(t)
                    .target(&m.id)
                    .after(after),
            );
        }
    }
    events
}

/// The events of a plugin stored from a file: by `by` (the operator), and one filed
/// under each tenant it widened.
fn file_events(
    by: &Actor,
    manifest: &PluginManifest,
    created: bool,
    widened: &Widening,
) -> Vec<NewEvent> {
    let event = |after: serde_json::Value| {
        by.event(register_action(created), "plugin")
            .target(&manifest.id)
            .after(after)
    };
    let mut after = serde_json::json!({"version": manifest.version, "methods": manifest.methods.len(), "source": "file"});
    merge(&mut after, widened.audit_json(None));
    let mut events = vec![event(after)];
    for t in widened.tenants() {
        let mut after = serde_json::json!({"version": manifest.version, "source": "file"});
        merge(&mut after, widened.audit_json(Some(t)));
        events.push(event(after).in_tenant(t));
    }
    events
}

/// Adds the fields of `from` to the object `into`.
fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
    if let (Some(a), serde_json::Value::Object(b)) = (into.as_object_mut(), from) {
        a.extend(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_support::{manifest, TENANT};

    fn view(tenant: Option<uuid::Uuid>) -> PluginView {
        let plugin = RegisteredPlugin {
            tenant,
            manifest: manifest("crm", "2", &["crm.a", "crm.b"]),
        };
        let snapshot = Snapshot::build(vec![plugin.clone()]).unwrap();
        PluginView::of(&snapshot, plugin, None)
    }

    #[test]
    fn a_view_lists_the_compiled_methods_in_manifest_order() {
        let v = view(None);
        let ids: Vec<&str> = v.methods.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["crm.a", "crm.b"]);
        assert!(v.is_global() && !v.is_built_in());
        assert!(!view(Some(TENANT)).is_global());
    }

    #[test]
    fn the_first_registration_is_audited_by_the_caller_without_before() {
        let credential = sigil_core::TokenId(uuid::Uuid::from_u128(3));
        let admin = Actor::user(
            TenantId(TENANT),
            sigil_core::UserId(uuid::Uuid::from_u128(2)),
            "alice",
            Some(credential),
        )
        .from_client(Some("192.0.2.7".into()), Some("sdk/1".into()));
        let events = registration_events(&admin, &view(Some(TENANT)), None, &Widening::default());
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.action, "plugin.register");
        assert_eq!(e.actor_label, "alice");
        assert_eq!(e.tenant, Some(TenantId(TENANT)));
        assert_eq!(e.credential, Some(credential));
        assert_eq!(e.client_ip.as_deref(), Some("192.0.2.7"));
        assert_eq!(e.target_id.as_deref(), Some("crm"));
        assert_eq!(e.before, None);
        assert_eq!(
            e.after,
            Some(serde_json::json!({
                "version": "2", "methods": 2, "widened": [], "widened_total": 0,
                "widened_tenants": [],
            }))
        );
    }

    #[test]
    fn an_upgrade_by_the_operator_keeps_the_old_version() {
        let events = registration_events(
            &Actor::operator(),
            &view(None),
            Some("1"),
            &Widening::default(),
        );
        let e = &events[0];
        assert_eq!(e.action, "plugin.update");
        assert_eq!(e.actor_label, "operator");
        assert_eq!(e.tenant, None);
        assert_eq!(e.before, Some(serde_json::json!({"version": "1"})));
    }

    #[test]
    fn a_plugin_file_is_audited_as_the_operators() {
        let m = manifest("crm", "2", &["crm.a"]);
        let by = Actor::operator();
        let events = file_events(&by, &m, true, &Widening::default());
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].action, "plugin.register");
        assert_eq!(events[0].actor_label, "operator");
        assert_eq!(events[0].tenant, None);
        assert_eq!(events[0].client_ip, None);
        assert_eq!(events[0].after.as_ref().unwrap()["source"], "file");
        assert_eq!(
            file_events(&by, &m, false, &Widening::default())[0].action,
            "plugin.update"
        );
    }
}

/// The use cases on a database: each writes exactly its events, by its actor, with its
/// change; a refused one writes none.
#[cfg(test)]
mod use_case_tests {
    use std::collections::BTreeSet;

    use serde_json::json;
    use sigil_core::TokenId;

    use super::*;
    use crate::manifest::HttpRoute;
    use crate::test_db::{alice, assert_by, events, json, operator, service};
    use crate::token_scopes::CustomScopeToken;
    use test_support::manifest;

    fn registration(manifest: PluginManifest) -> Registration {
        Registration {
            manifest: Some(manifest),
            ..Registration::default()
        }
    }

    /// A token of `tenant` granting every `crm` method.
    fn crm_token(tenant: TenantId) -> CustomScopeToken {
        CustomScopeToken {
            id: TokenId::new(),
            tenant,
            name: "crm".into(),
            methods: vec!["crm.*".into()],
            ceiling: None,
        }
    }

    #[tokio::test]
    async fn a_tenants_plugin_is_audited_by_its_admin() {
        let (s, _) = service().await;
        let acme = TenantId::new();
        let admin = alice(acme);
        let v1 = manifest("crm", "1", &["crm.a"]);
        let v2 = manifest("crm", "2", &["crm.a", "crm.b"]);
        assert!(
            s.register_plugin(&admin, registration(v1))
                .await
                .unwrap()
                .created
        );
        s.register_plugin(&admin, registration(v2.clone()))
            .await
            .unwrap();
        // The stored manifest again changes nothing, and audits nothing.
        let again = s.register_plugin(&admin, registration(v2)).await.unwrap();
        assert!(!again.created);
        s.remove_plugin(&admin, "crm").await.unwrap();

        let events = events(&s).await;
        let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            ["plugin.register", "plugin.update", "plugin.delete"]
        );
        for e in &events {
            assert_by(e, &admin);
            assert_eq!(e.tenant_id, Some(acme));
            assert_eq!(e.target_type, "plugin");
            assert_eq!(e.target_id.as_deref(), Some("crm"));
        }
        assert_eq!(events[0].before, None);
        let after = json(&events[0].after);
        assert_eq!(
            (&after["version"], &after["methods"]),
            (&json!("1"), &json!(1))
        );
        // The built-in sets of the tenant grant the new method: reported, but no tenant's
        // tokens or custom sets widened.
        let widened: Vec<&serde_json::Value> = after["widened"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| &w["id"])
            .collect();
        assert_eq!(widened, [&json!("read-only"), &json!("read-change")]);
        assert_eq!(after["widened_tenants"], json!([]));
        assert_eq!(json(&events[1].before), json!({"version": "1"}));
        assert_eq!(json(&events[1].after)["version"], "2");
        assert_eq!(json(&events[1].after)["methods"], 2);
        assert_eq!(json(&events[2].before), json!({"version": "2"}));
        assert_eq!(events[2].after, None);
    }

    #[tokio::test]
    async fn a_global_plugin_files_one_event_under_each_tenant_it_widens() {
        let (s, tokens) = service().await;
        let op = operator();
        s.register_plugin(&op, registration(manifest("crm", "1", &["crm.a"])))
            .await
            .unwrap();
        let (acme, globex) = (TenantId::new(), TenantId::new());
        *tokens.custom.lock().unwrap() = vec![crm_token(acme), crm_token(globex)];
        let r = s
            .register_plugin(&op, registration(manifest("crm", "2", &["crm.a", "crm.b"])))
            .await
            .unwrap();
        assert_eq!(r.widened.tenants().count(), 2);

        let events = events(&s).await;
        assert_eq!(events.len(), 4, "{events:#?}");
        for e in &events {
            assert_by(e, &op);
            assert_eq!(e.target_id.as_deref(), Some("crm"));
        }
        assert_eq!(events[0].action, "plugin.register");
        assert_eq!(events[0].tenant_id, None);
        let main = &events[1];
        assert_eq!(main.action, "plugin.update");
        assert_eq!(main.tenant_id, None);
        assert_eq!(json(&main.before), json!({"version": "1"}));
        let after = json(&main.after);
        assert_eq!(after["widened_tenants"].as_array().unwrap().len(), 2);
        assert_eq!(after["widened_total"], r.widened.total());
        let filed: BTreeSet<TenantId> = events[2..].iter().filter_map(|e| e.tenant_id).collect();
        assert_eq!(filed, BTreeSet::from([acme, globex]));
        for e in &events[2..] {
            assert_eq!(e.action, "plugin.update");
            assert_eq!(e.before, None);
            let after = json(&e.after);
            assert_eq!(after["version"], "2");
            assert_eq!(after["widened_total"], 1);
            assert_eq!(
                after["widened"][0]["tenant_id"],
                e.tenant_id.unwrap().to_string()
            );
            assert!(after.get("widened_tenants").is_none());
        }
    }

    #[tokio::test]
    async fn a_refused_plugin_change_writes_nothing() {
        let (s, _) = service().await;
        let op = operator();
        let acme = TenantId::new();
        let admin = alice(acme);
        let global = Registration {
            global: Some(true),
            ..registration(manifest("crm", "1", &["crm.a"]))
        };
        assert!(s.register_plugin(&admin, global).await.is_err());
        s.register_plugin(&op, registration(manifest("crm", "2", &["crm.a"])))
            .await
            .unwrap();
        let written = events(&s).await.len();
        let version = s.plugins.version().await.unwrap();

        // An older version.
        assert!(s
            .register_plugin(&op, registration(manifest("crm", "1", &["crm.a"])))
            .await
            .is_err());
        // A route another plugin has: refused under the registry write lock.
        let mut hr = manifest("hr", "1", &["hr.a"]);
        hr.methods[0].http = HttpRoute::new("GET", "/crm/a");
        let err = s.register_plugin(&op, registration(hr)).await.unwrap_err();
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
        // A tenant's admin removes no global plugin; nobody removes a missing one or
        // the built-in one.
        let err = s.remove_plugin(&admin, "crm").await.unwrap_err();
        assert!(matches!(err, Error::Forbidden { .. }), "{err:?}");
        let err = s.remove_plugin(&op, "hr").await.unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
        assert!(s.remove_plugin(&op, BUILTIN_PLUGIN).await.is_err());

        assert_eq!(events(&s).await.len(), written);
        assert_eq!(s.plugins.version().await.unwrap(), version);
        assert!(s.plugins.get(None, "hr").await.unwrap().is_none());
        assert!(s.plugins.get(None, "crm").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_plugin_file_is_stored_and_audited_once_by_the_operator() {
        let (s, tokens) = service().await;
        let by = Actor::operator();
        let v1 = manifest("crm", "1", &["crm.a"]);
        assert!(s.store_plugin_file(&by, &v1).await.unwrap());
        assert!(!s.store_plugin_file(&by, &v1).await.unwrap());
        let acme = TenantId::new();
        *tokens.custom.lock().unwrap() = vec![crm_token(acme)];
        let v2 = manifest("crm", "2", &["crm.a", "crm.b"]);
        assert!(s.store_plugin_file(&by, &v2).await.unwrap());

        let events = events(&s).await;
        let filed: Vec<(&str, Option<TenantId>)> = events
            .iter()
            .map(|e| (e.action.as_str(), e.tenant_id))
            .collect();
        assert_eq!(
            filed,
            [
                ("plugin.register", None),
                ("plugin.update", None),
                ("plugin.update", Some(acme)),
            ]
        );
        for e in &events {
            assert_by(e, &by);
            assert_eq!(json(&e.after)["source"], "file");
        }
        assert_eq!(json(&events[0].after)["methods"], 1);
        assert_eq!(json(&events[2].after)["widened_total"], 1);
    }
}
