//! A fresh, migrated in-memory database and change feed for the unit tests, and the audit
//! events the use cases wrote.

use std::sync::Arc;

use sea_orm::{EntityTrait, QueryOrder};
use sigil_audit::entity as audit;
use sigil_audit::Actor;
use sigil_core::db::Db;
use sigil_core::{ChangeFeed, TenantId, TokenId, UserId};

pub async fn migrated() -> Db {
    let db = sigil_core::db::connect("sqlite::memory:", 1).await.unwrap();
    sigil_migrations::migrate(&db).await.unwrap();
    db
}

pub fn feed(db: &Db) -> Arc<ChangeFeed> {
    Arc::new(ChangeFeed::new(db.clone()))
}

/// The operator, calling from 192.0.2.1 with curl.
pub fn operator() -> Actor {
    Actor::operator().from_client(Some("192.0.2.1".into()), Some("curl/8".into()))
}

/// Alice, a user of `tenant`, presenting a token, from 192.0.2.7.
pub fn alice(tenant: TenantId) -> Actor {
    Actor::user(tenant, UserId::new(), "alice", Some(TokenId::new()))
        .from_client(Some("192.0.2.7".into()), Some("sdk/1".into()))
}

/// Every audit event written, oldest first.
pub async fn events(db: &Db) -> Vec<audit::Model> {
    audit::Entity::find()
        .order_by_asc(audit::Column::Id)
        .all(db)
        .await
        .unwrap()
}

/// The JSON of an event's `before` or `after`.
pub fn json(text: &Option<String>) -> serde_json::Value {
    serde_json::from_str(text.as_deref().unwrap()).unwrap()
}
