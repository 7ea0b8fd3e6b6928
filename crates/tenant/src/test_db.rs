//! A fresh, migrated in-memory database and change feed for the unit tests.

use std::sync::Arc;

use sigil_core::db::Db;
use sigil_core::ChangeFeed;

pub async fn migrated() -> Db {
    let db = sigil_core::db::connect("sqlite::memory:", 1).await.unwrap();
    sigil_migrations::migrate(&db).await.unwrap();
    db
}

pub fn feed(db: &Db) -> Arc<ChangeFeed> {
    Arc::new(ChangeFeed::new(db.clone()))
}
