use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set, TransactionTrait,
};
use sigil_core::db::Db;
use sigil_core::{Error, Result, TenantId};

use super::entity::{plugin, registry_version};
use crate::manifest::PluginManifest;
use crate::snapshot::RegisteredPlugin;

#[derive(Clone, Debug)]
pub struct PluginRecord {
    pub tenant: Option<TenantId>,
    pub manifest: PluginManifest,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn uid(tenant: Option<TenantId>, id: &str) -> String {
    match tenant {
        Some(t) => format!("{t}/{id}"),
        None => format!("global/{id}"),
    }
}

/// Bumps the registry version inside the caller's transaction; replicas compare it with
/// their snapshot's version.
pub(crate) async fn bump_version(conn: &impl ConnectionTrait) -> Result<()> {
    registry_version::Entity::update_many()
        .col_expr(
            registry_version::Column::Version,
            Expr::col(registry_version::Column::Version).add(1),
        )
        .filter(registry_version::Column::Id.eq(1))
        .exec(conn)
        .await?;
    Ok(())
}

#[derive(Clone)]
pub struct PluginStore {
    db: Db,
}

impl PluginStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub async fn version(&self) -> Result<u64> {
        let row = registry_version::Entity::find_by_id(1)
            .one(&self.db)
            .await?;
        Ok(row.map(|r| r.version.max(0) as u64).unwrap_or(0))
    }

    /// Every stored plugin, in registration order, with the registry version they form.
    pub async fn load_all(&self) -> Result<(u64, Vec<RegisteredPlugin>)> {
        let txn = self.db.begin().await?;
        let version = registry_version::Entity::find_by_id(1)
            .one(&txn)
            .await?
            .map(|r| r.version.max(0) as u64)
            .unwrap_or(0);
        let rows = plugin::Entity::find()
            .order_by_asc(plugin::Column::CreatedAt)
            .all(&txn)
            .await?;
        txn.commit().await?;
        let mut plugins = Vec::with_capacity(rows.len());
        for row in rows {
            match serde_json::from_str::<PluginManifest>(&row.manifest) {
                Ok(manifest) => plugins.push(RegisteredPlugin {
                    tenant: row.tenant_id.map(|t| t.0),
                    manifest,
                }),
                Err(e) => {
                    tracing::error!(plugin = %row.uid, error = %e, "stored plugin unreadable")
                }
            }
        }
        Ok((version, plugins))
    }

    pub async fn get(&self, tenant: Option<TenantId>, id: &str) -> Result<Option<PluginRecord>> {
        let row = plugin::Entity::find_by_id(uid(tenant, id))
            .one(&self.db)
            .await?;
        row.map(|r| {
            Ok(PluginRecord {
                tenant: r.tenant_id,
                manifest: serde_json::from_str(&r.manifest).map_err(Error::internal)?,
                created_at: r.created_at,
                updated_at: r.updated_at,
            })
        })
        .transpose()
    }

    /// Inserts or replaces a plugin and bumps the registry version, atomically.
    pub async fn upsert(
        &self,
        tenant: Option<TenantId>,
        manifest: &PluginManifest,
    ) -> Result<bool> {
        self.upsert_checked(tenant, manifest, |_, _| Ok(()))
            .await
            .map(|previous| previous.is_none())
    }

    /// Like [`PluginStore::upsert`], but first lets `check` approve the change against the
    /// stored state, read under the registry write lock so that concurrent registrations
    /// cannot both decide on a stale state: the plugin's previous record (if any) and every
    /// stored plugin. Nothing is written when `check` fails. Returns the previous record.
    pub async fn upsert_checked<F>(
        &self,
        tenant: Option<TenantId>,
        manifest: &PluginManifest,
        check: F,
    ) -> Result<Option<PluginRecord>>
    where
        F: FnOnce(Option<&PluginRecord>, &[RegisteredPlugin]) -> Result<()>,
    {
        let key = uid(tenant, &manifest.id);
        let json = serde_json::to_string(manifest).map_err(Error::internal)?;
        let now = sigil_core::now();
        let txn = self.db.begin().await?;
        // Writing first takes the write lock (SQLite) or the version row lock (PostgreSQL)
        // before anything is read, which serializes registry writers.
        bump_version(&txn).await?;
        let existing = plugin::Entity::find_by_id(key.clone()).one(&txn).await?;
        let previous = existing
            .as_ref()
            .map(|r| {
                Ok::<_, Error>(PluginRecord {
                    tenant: r.tenant_id,
                    manifest: serde_json::from_str(&r.manifest).map_err(Error::internal)?,
                    created_at: r.created_at,
                    updated_at: r.updated_at,
                })
            })
            .transpose()?;
        let stored: Vec<RegisteredPlugin> = plugin::Entity::find()
            .order_by_asc(plugin::Column::CreatedAt)
            .all(&txn)
            .await?
            .into_iter()
            .filter_map(|r| {
                serde_json::from_str(&r.manifest)
                    .ok()
                    .map(|manifest| RegisteredPlugin {
                        tenant: r.tenant_id.map(|t| t.0),
                        manifest,
                    })
            })
            .collect();
        if let Err(e) = check(previous.as_ref(), &stored) {
            txn.rollback().await?;
            return Err(e);
        }
        match existing {
            Some(row) => {
                plugin::Entity::update_many()
                    .col_expr(plugin::Column::Name, Expr::value(manifest.name.clone()))
                    .col_expr(
                        plugin::Column::Version,
                        Expr::value(manifest.version.clone()),
                    )
                    .col_expr(plugin::Column::Manifest, Expr::value(json))
                    .col_expr(plugin::Column::UpdatedAt, Expr::value(now))
                    .filter(plugin::Column::Uid.eq(row.uid))
                    .exec(&txn)
                    .await?;
            }
            None => {
                plugin::Entity::insert(plugin::ActiveModel {
                    uid: Set(key),
                    plugin_id: Set(manifest.id.clone()),
                    tenant_id: Set(tenant),
                    name: Set(manifest.name.clone()),
                    version: Set(manifest.version.clone()),
                    manifest: Set(json),
                    created_at: Set(now),
                    updated_at: Set(now),
                })
                .exec_without_returning(&txn)
                .await?;
            }
        }
        txn.commit().await?;
        Ok(previous)
    }

    pub async fn delete(&self, tenant: Option<TenantId>, id: &str) -> Result<bool> {
        let txn = self.db.begin().await?;
        let res = plugin::Entity::delete_by_id(uid(tenant, id))
            .exec(&txn)
            .await?;
        if res.rows_affected > 0 {
            bump_version(&txn).await?;
        }
        txn.commit().await?;
        Ok(res.rows_affected > 0)
    }
}
