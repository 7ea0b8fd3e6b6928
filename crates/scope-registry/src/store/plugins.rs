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

impl TryFrom<plugin::Model> for PluginRecord {
    type Error = Error;
    fn try_from(r: plugin::Model) -> Result<Self> {
        Ok(PluginRecord {
            tenant: r.tenant_id,
            manifest: serde_json::from_str(&r.manifest).map_err(Error::internal)?,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
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

/// The stored plugin `id` of `tenant` (`None`: the global one).
pub(crate) async fn find(
    conn: &impl ConnectionTrait,
    tenant: Option<TenantId>,
    id: &str,
) -> Result<Option<PluginRecord>> {
    plugin::Entity::find_by_id(uid(tenant, id))
        .one(conn)
        .await?
        .map(PluginRecord::try_from)
        .transpose()
}

/// Takes the registry write lock in the caller's transaction, then reads what a change of
/// the plugin `id` of `tenant` is decided on: its stored record (if any) and every stored
/// plugin, in registration order. Writing first (the version bump) takes the write lock
/// (SQLite) or the version row lock (PostgreSQL) before anything is read, which
/// serializes registry writers: concurrent changes cannot both decide on a stale state.
pub(crate) async fn lock(
    conn: &impl ConnectionTrait,
    tenant: Option<TenantId>,
    id: &str,
) -> Result<(Option<PluginRecord>, Vec<RegisteredPlugin>)> {
    bump_version(conn).await?;
    let previous = find(conn, tenant, id).await?;
    let stored = plugin::Entity::find()
        .order_by_asc(plugin::Column::CreatedAt)
        .all(conn)
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
    Ok((previous, stored))
}

/// Stores `manifest` as the plugin of `tenant`: replaces the stored one when `exists`,
/// else inserts it. Run under [`lock`], which bumped the version.
pub(crate) async fn put(
    conn: &impl ConnectionTrait,
    tenant: Option<TenantId>,
    manifest: &PluginManifest,
    exists: bool,
) -> Result<()> {
    let key = uid(tenant, &manifest.id);
    let json = serde_json::to_string(manifest).map_err(Error::internal)?;
    let now = sigil_core::now();
    if exists {
        plugin::Entity::update_many()
            .col_expr(plugin::Column::Name, Expr::value(manifest.name.clone()))
            .col_expr(
                plugin::Column::Version,
                Expr::value(manifest.version.clone()),
            )
            .col_expr(plugin::Column::Manifest, Expr::value(json))
            .col_expr(plugin::Column::UpdatedAt, Expr::value(now))
            .filter(plugin::Column::Uid.eq(key))
            .exec(conn)
            .await?;
    } else {
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
        .exec_without_returning(conn)
        .await?;
    }
    Ok(())
}

/// Deletes the plugin `id` of `tenant`; whether it was stored. Run under [`lock`], which
/// bumped the version.
pub(crate) async fn delete(
    conn: &impl ConnectionTrait,
    tenant: Option<TenantId>,
    id: &str,
) -> Result<bool> {
    let res = plugin::Entity::delete_by_id(uid(tenant, id))
        .exec(conn)
        .await?;
    Ok(res.rows_affected > 0)
}

/// Reads of the stored plugins; the use cases change them in their own transactions
/// (`lock`, `put`, `delete`).
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
        find(&self.db, tenant, id).await
    }
}
