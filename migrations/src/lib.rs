//! Schema migrations. Each step freezes the schema it creates with its own identifiers
//! instead of importing live entities, so later entity changes never rewrite history.

pub use sea_orm_migration::prelude::*;

mod m0001_create_tenants;
mod m0002_create_users;
mod m0003_create_registry;
mod m0004_create_tokens;
mod m0005_create_audit;
mod m0006_token_ceiling;
mod m0007_plugin_namespaces;
mod m0008_token_leaks;
mod m0009_token_rotation;
mod m0010_two_factor;
mod m0011_webhooks;
mod m0012_token_owner_fk;
mod m0013_usage_limits;
mod m0014_token_owner_kind_index;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_create_tenants::Migration),
            Box::new(m0002_create_users::Migration),
            Box::new(m0003_create_registry::Migration),
            Box::new(m0004_create_tokens::Migration),
            Box::new(m0005_create_audit::Migration),
            Box::new(m0006_token_ceiling::Migration),
            Box::new(m0007_plugin_namespaces::Migration),
            Box::new(m0008_token_leaks::Migration),
            Box::new(m0009_token_rotation::Migration),
            Box::new(m0010_two_factor::Migration),
            Box::new(m0011_webhooks::Migration),
            Box::new(m0012_token_owner_fk::Migration),
            Box::new(m0013_usage_limits::Migration),
            Box::new(m0014_token_owner_kind_index::Migration),
        ]
    }
}

/// Arbitrary constant identifying Sigil's migration lock among PostgreSQL advisory locks.
pub const ADVISORY_LOCK_KEY: i64 = 0x0051_6711_0001;

/// Applies pending migrations. On PostgreSQL they run in one transaction holding a
/// transaction-scoped advisory lock, so replicas starting together migrate one after the
/// other and the lock is released with the transaction whatever happens. Engines without
/// advisory locks (CockroachDB) migrate without it: run `sigil migrate` once before
/// starting replicas there.
pub async fn migrate(db: &sea_orm_migration::sea_orm::DatabaseConnection) -> Result<(), DbErr> {
    use sea_orm_migration::sea_orm::{
        ConnectionTrait, DatabaseBackend, Statement, TransactionTrait,
    };
    if db.get_database_backend() != DatabaseBackend::Postgres {
        return Migrator::up(db, None).await;
    }
    let txn = db.begin().await?;
    let lock = format!("SELECT pg_advisory_xact_lock({ADVISORY_LOCK_KEY})");
    if txn
        .execute(Statement::from_string(DatabaseBackend::Postgres, lock))
        .await
        .is_err()
    {
        txn.rollback().await?;
        return Migrator::up(db, None).await;
    }
    Migrator::up(&txn, None).await?;
    txn.commit().await
}

/// True when every known migration has been applied.
pub async fn is_up_to_date(
    db: &sea_orm_migration::sea_orm::DatabaseConnection,
) -> Result<bool, DbErr> {
    Ok(Migrator::get_pending_migrations(db).await?.is_empty())
}
