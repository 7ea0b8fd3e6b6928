//! Opening the database: SQLite (file, WAL) by default, PostgreSQL when the URL says so.

use std::time::Duration;

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection};

use crate::{Error, Result};

pub type Db = DatabaseConnection;

pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Connects with pool settings fitting the backend. SQLite gets WAL, a busy timeout and
/// foreign keys; the file is created when missing.
pub async fn connect(url: &str, max_connections: u32) -> Result<Db> {
    // SQLite allows one writer at a time, and a transaction that reads before it writes
    // fails at once (not after the busy timeout) when another writer got in first. One
    // connection serializes every statement instead, so concurrent requests queue rather
    // than fail; PostgreSQL is the backend for concurrency.
    let max_connections = if is_postgres(url) { max_connections } else { 1 };
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.max_connections(max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10))
        // No round trip (a ping) before every statement: a dead connection fails its
        // statement instead (503), and the pool replaces it.
        .test_before_acquire(false)
        .sqlx_logging(false);
    let db = Database::connect(opts)
        .await
        .map_err(|e| Error::Unavailable(format!("cannot connect to the database: {e}")))?;
    if db.get_database_backend() == DatabaseBackend::Sqlite {
        for pragma in [
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=NORMAL",
            "PRAGMA foreign_keys=ON",
            "PRAGMA busy_timeout=5000",
        ] {
            db.execute_unprepared(pragma).await?;
        }
    }
    Ok(db)
}

/// Builds the SQLite URL for a file, asking sqlx to create it when missing.
pub fn sqlite_url(path: &std::path::Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

/// Whether the database answers a trivial query.
pub async fn ping(db: &Db) -> bool {
    db.ping().await.is_ok()
}

/// Connections of the pool behind the database handle, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Open connections (idle or in use).
    pub size: u32,
    pub idle: u32,
    pub max: u32,
}

impl PoolStats {
    pub fn in_use(&self) -> u32 {
        self.size.saturating_sub(self.idle)
    }
}

/// The pool's current size and idle connections; `None` when the handle has no pool.
pub fn pool_stats(db: &Db) -> Option<PoolStats> {
    match db {
        DatabaseConnection::SqlxPostgresPoolConnection(_) => {
            let pool = db.get_postgres_connection_pool();
            Some(PoolStats {
                size: pool.size(),
                idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
                max: pool.options().get_max_connections(),
            })
        }
        DatabaseConnection::SqlxSqlitePoolConnection(_) => {
            let pool = db.get_sqlite_connection_pool();
            Some(PoolStats {
                size: pool.size(),
                idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
                max: pool.options().get_max_connections(),
            })
        }
        _ => None,
    }
}
