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
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.max_connections(max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
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
