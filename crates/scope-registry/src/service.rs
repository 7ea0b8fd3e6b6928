//! The registry's use cases share one service: the stores, the live registry, the
//! built-in plugin, the change feed and the tokens' side. Its use cases live beside the
//! subjects they change ([`crate::plugins`], [`crate::scope_sets`], [`crate::methods`]).

use std::sync::{Arc, OnceLock};

use sigil_core::db::Db;
use sigil_core::{Change, ChangeFeed, Error, FieldError, Result, TenantId};

use crate::manifest::PluginManifest;
use crate::plugins::compile::plugins_with;
use crate::registry::Registry;
use crate::snapshot::Snapshot;
use crate::store::{PluginStore, ScopeSetStore};
use crate::token_scopes::TokenScopes;

#[derive(Clone)]
pub struct RegistryService {
    /// Where the use cases open their transactions.
    pub(crate) db: Db,
    pub(crate) plugins: PluginStore,
    pub(crate) sets: ScopeSetStore,
    pub(crate) registry: Arc<Registry>,
    /// Sigil's own plugin, derived from its spec at start.
    pub(crate) builtin: Arc<OnceLock<PluginManifest>>,
    pub(crate) changes: Arc<ChangeFeed>,
    pub(crate) tokens: Arc<dyn TokenScopes>,
}

impl RegistryService {
    pub fn new(
        db: Db,
        registry: Arc<Registry>,
        changes: Arc<ChangeFeed>,
        tokens: Arc<dyn TokenScopes>,
    ) -> Self {
        Self {
            plugins: PluginStore::new(db.clone()),
            sets: ScopeSetStore::new(db.clone()),
            db,
            registry,
            builtin: Arc::default(),
            changes,
            tokens,
        }
    }

    /// Installs the built-in plugin (once; later calls keep the first).
    pub fn set_builtin(&self, builtin: PluginManifest) {
        let _ = self.builtin.set(builtin);
    }

    pub fn builtin(&self) -> Option<&PluginManifest> {
        self.builtin.get()
    }

    /// Rebuilds the live snapshot from the built-in plugin and the stored ones.
    pub async fn reload(&self) -> Result<()> {
        let (version, stored) = self.plugins.load_all().await?;
        let snapshot =
            Snapshot::build_with_version(plugins_with(self.builtin(), &stored, None), version)
                .map_err(|errors| {
                    Error::invalid_with(
                        "invalid_registry",
                        "the stored plugins do not compile",
                        errors
                            .into_iter()
                            .map(|message| FieldError::new("plugins", message))
                            .collect(),
                    )
                })?;
        self.registry.publish(snapshot);
        Ok(())
    }

    /// After a committed change: this replica's snapshot is rebuilt before the answer, then
    /// caches and other replicas learn of it.
    pub(crate) async fn changed(&self, tenant: Option<TenantId>) -> Result<()> {
        self.reload().await?;
        self.changes.publish(Change::Registry { tenant }).await;
        Ok(())
    }

    /// The current snapshot.
    pub fn current(&self) -> Arc<Snapshot> {
        self.registry.current()
    }
}
