//! Plugin use cases: register or upgrade a plugin, remove one, store one read from a
//! file, and the plugins a caller sees. Each stores its change in one transaction,
//! rebuilds the registry, publishes the change and returns the audit events to record.

pub mod compile;
pub mod namespace;
pub mod source;
pub mod version;
pub mod widened;

#[cfg(test)]
pub(crate) mod test_support;

use chrono::{DateTime, Utc};
use sigil_audit::NewEvent;
use sigil_core::{Error, Result, TenantId};

use crate::actor::Actor;
use crate::manifest::PluginManifest;
use crate::service::RegistryService;
use crate::snapshot::{MethodInfo, RegisteredPlugin, Snapshot};
use crate::store::PluginRecord;
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
    pub audit: Vec<NewEvent>,
}

/// The outcome of a removal.
#[derive(Debug)]
pub struct RemovedPlugin {
    pub id: String,
    /// Its method ids; tokens whose scope named them no longer grant them.
    pub removed_methods: Vec<String>,
    pub audit: Vec<NewEvent>,
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
    /// the whole registry must still compile with it; what it widens is reported.
    /// Registering the stored manifest again changes nothing.
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
                    audit: Vec::new(),
                });
            }
            check_newer(&old.manifest, &change.manifest)?;
        }
        // Decided again on the stored state under the registry write lock, so that
        // concurrent registrations cannot downgrade a plugin or store conflicting ones.
        // The registry before and after the change, compiled from that same state, tell
        // what the change widens.
        let mut compiled = None;
        let previous = self
            .plugins
            .upsert_checked(target, &change.manifest, |previous, stored| {
                if let Some(old) = previous.filter(|old| old.manifest != change.manifest) {
                    check_newer(&old.manifest, &change.manifest)?;
                }
                let (before, after) = compile_change(builtin, stored, &change)?;
                compiled = before.map(|before| (before, after));
                Ok(())
            })
            .await?;
        let removed = previous
            .as_ref()
            .map(|old| removed_methods(&old.manifest, &change.manifest))
            .unwrap_or_default();
        self.changed(target).await?;
        let widened = match &compiled {
            Some((before, after)) => self.widening(before, after, target).await?,
            None => Widening::default(),
        };
        if !widened.is_empty() {
            tracing::warn!(
                plugin = %change.manifest.id,
                version = %change.manifest.version,
                "plugin registration widens existing tokens or scope sets: {}",
                widened.summary()
            );
        }
        let record = self.plugins.get(target, &change.manifest.id).await?;
        let plugin = PluginView::of(&self.current(), change, record.as_ref());
        let audit = registration_events(
            by,
            &plugin,
            previous.as_ref().map(|o| o.manifest.version.as_str()),
            &widened,
        );
        Ok(Registered {
            created: previous.is_none(),
            plugin,
            removed_methods: removed,
            widened,
            audit,
        })
    }

    /// Removes a plugin; tokens whose scope named its methods simply lose them. A tenant
    /// admin removes the tenant's own plugins; global ones are the operator's.
    pub async fn remove_plugin(&self, by: &Actor, id: &str) -> Result<RemovedPlugin> {
        let tenant = by.tenant();
        if id == BUILTIN_PLUGIN {
            return Err(Error::conflict(
                "reserved_plugin",
                "the built-in plugin cannot be removed",
            ));
        }
        let stored = match self.plugins.get(tenant, id).await? {
            Some(stored) => stored,
            // A tenant sees global plugins but may not remove them.
            None if tenant.is_some() && self.plugins.get(None, id).await?.is_some() => {
                return Err(Error::forbidden(
                    "operator_only",
                    "only the operator removes global plugins",
                ))
            }
            None => return Err(Error::not_found("plugin")),
        };
        self.plugins.delete(tenant, id).await?;
        self.changed(tenant).await?;
        let event = by.sign(
            NewEvent::of("plugin.delete", "plugin")
                .target(id)
                .before(serde_json::json!({"version": stored.manifest.version})),
        );
        Ok(RemovedPlugin {
            id: id.to_owned(),
            removed_methods: stored
                .manifest
                .methods
                .iter()
                .map(|m| m.id.clone())
                .collect(),
            audit: vec![event],
        })
    }

    /// The namespace rule for a plugin given as a file (see [`check_namespace`]).
    pub fn check_file_namespace(&self, manifest: &PluginManifest) -> Result<()> {
        check_namespace(manifest, &reserved_namespaces(self.builtin()))
    }

    /// Stores a global plugin read from a `--plugin` file at start, unless it is stored
    /// as it is (then `None`). What it widens is logged and returned in the audit events,
    /// as for a registration through the API; the registry is rebuilt by the start that
    /// follows.
    pub async fn store_plugin_file(
        &self,
        manifest: &PluginManifest,
    ) -> Result<Option<Vec<NewEvent>>> {
        let unchanged = self
            .plugins
            .get(None, &manifest.id)
            .await?
            .is_some_and(|stored| {
                serde_json::to_value(&stored.manifest).ok() == serde_json::to_value(manifest).ok()
            });
        if unchanged {
            return Ok(None);
        }
        let (_, stored) = self.plugins.load_all().await?;
        let builtin = self.builtin();
        let change = RegisteredPlugin::global(manifest.clone());
        let before = compile_registry(builtin, &stored, None).ok();
        let after = compile_registry(builtin, &stored, Some(&change)).ok();
        let created = self.plugins.upsert(None, manifest).await?;
        let widened = match (before, after) {
            (Some(before), Some(after)) => self.widening(&before, &after, None).await?,
            _ => Widening::default(),
        };
        if !widened.is_empty() {
            tracing::warn!(
                plugin = %manifest.id,
                version = %manifest.version,
                "plugin file widens existing tokens or scope sets: {}",
                widened.summary()
            );
        }
        Ok(Some(file_events(manifest, created, &widened)))
    }
}

fn register_action(created: bool) -> &'static str {
    if created {
        "plugin.register"
    } else {
        "plugin.update"
    }
}

/// The registration's event, by `by`; for a global plugin also one event filed under
/// each tenant it widened, so the tenant finds it in its own log.
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
    let mut events = vec![by.sign(
        NewEvent::of(action, "plugin")
            .target(&m.id)
            .before_opt(previous_version.map(|v| serde_json::json!({"version": v})))
            .after(after),
    )];
    if plugin.is_global() {
        for t in widened.tenants() {
            let mut after = serde_json::json!({"version": m.version});
            merge(&mut after, widened.audit_json(Some(t)));
            events.push(
                NewEvent::of(action, "plugin")
                    .by_operator(Some(t))
                    .target(&m.id)
                    .after(after),
            );
        }
    }
    events
}

/// The events of a plugin stored from a file: by the operator, and one filed under each
/// tenant it widened.
fn file_events(manifest: &PluginManifest, created: bool, widened: &Widening) -> Vec<NewEvent> {
    let event = |tenant: Option<TenantId>, after: serde_json::Value| {
        NewEvent::of(register_action(created), "plugin")
            .by_operator(tenant)
            .target(&manifest.id)
            .after(after)
    };
    let mut after = serde_json::json!({"version": manifest.version, "methods": manifest.methods.len(), "source": "file"});
    merge(&mut after, widened.audit_json(None));
    let mut events = vec![event(None, after)];
    for t in widened.tenants() {
        let mut after = serde_json::json!({"version": manifest.version, "source": "file"});
        merge(&mut after, widened.audit_json(Some(t)));
        events.push(event(Some(t), after));
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
    use crate::actor::TenantUser;
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
        let admin = TenantUser {
            tenant: TenantId(TENANT),
            user: sigil_core::UserId(uuid::Uuid::from_u128(2)),
            username: "alice".into(),
            credential: sigil_core::TokenId(uuid::Uuid::from_u128(3)),
        };
        let events = registration_events(
            &Actor::User(admin.clone()),
            &view(Some(TENANT)),
            None,
            &Widening::default(),
        );
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.action, "plugin.register");
        assert_eq!(e.actor_label, "alice");
        assert_eq!(e.tenant, Some(admin.tenant));
        assert_eq!(e.credential, Some(admin.credential));
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
            &Actor::Operator,
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
        let events = file_events(&m, true, &Widening::default());
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].action, "plugin.register");
        assert_eq!(events[0].actor_label, "operator");
        assert_eq!(events[0].after.as_ref().unwrap()["source"], "file");
        assert_eq!(
            file_events(&m, false, &Widening::default())[0].action,
            "plugin.update"
        );
    }
}
