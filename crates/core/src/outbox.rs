//! The event outbox: a domain change that others must hear about (a token created,
//! revoked, leaked; a user deactivated) writes its event here, with the connection of its
//! own transaction, so the event exists exactly when the change does. The webhook worker
//! (crate `sigil-webhook`) delivers what is written here at least once. It lives in the
//! kernel because every domain crate writes to it and none should depend on the webhook
//! crate for that.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, EntityTrait, Set};
use uuid::Uuid;

use crate::{Result, TenantId};

/// The event types, as they appear in a delivery's `type` field and in an endpoint's
/// filter.
pub mod events {
    pub const TOKEN_CREATED: &str = "token.created";
    pub const TOKEN_UPDATED: &str = "token.updated";
    pub const TOKEN_REGENERATED: &str = "token.regenerated";
    pub const TOKEN_DELETED: &str = "token.deleted";
    pub const TOKEN_REVOKED: &str = "token.revoked";
    pub const TOKEN_LEAKED: &str = "token.leaked";
    pub const TOKEN_REUSE_DETECTED: &str = "token.reuse_detected";
    pub const TOKEN_EXPIRING: &str = "token.expiring";
    pub const TOKEN_EXPIRED: &str = "token.expired";
    pub const TOKEN_NEW_IP: &str = "token.new_ip";
    pub const USER_DEACTIVATED: &str = "user.deactivated";
    pub const WEBHOOK_TEST: &str = "webhook.test";

    /// Every event type.
    pub const ALL: &[&str] = &[
        TOKEN_CREATED,
        TOKEN_UPDATED,
        TOKEN_REGENERATED,
        TOKEN_DELETED,
        TOKEN_REVOKED,
        TOKEN_LEAKED,
        TOKEN_REUSE_DETECTED,
        TOKEN_EXPIRING,
        TOKEN_EXPIRED,
        TOKEN_NEW_IP,
        USER_DEACTIVATED,
        WEBHOOK_TEST,
    ];
}

/// One event waiting for (or done with) its fan-out to the tenant's endpoints.
pub mod entity {
    use sea_orm::entity::prelude::*;

    use crate::TenantId;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhook_events")]
    pub struct Model {
        /// Time-ordered (UUIDv7); also the message id of every delivery of the event.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: TenantId,
        pub event_type: String,
        /// The delivered body: `{"type", "timestamp", "data"}` as JSON text.
        pub payload: String,
        /// Only this endpoint receives it (test deliveries); NULL: every subscribed one.
        pub endpoint_id: Option<Uuid>,
        pub created_at: DateTimeUtc,
        /// When the worker turned it into deliveries; NULL while waiting.
        pub dispatched_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The body every delivery of an event carries (Standard Webhooks' recommended shape).
pub fn payload(event_type: &str, at: DateTime<Utc>, data: serde_json::Value) -> String {
    serde_json::json!({
        "type": event_type,
        "timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "data": data,
    })
    .to_string()
}

/// Writes an event for every subscribed endpoint of `tenant`. Call it with the
/// transaction of the change it reports.
pub async fn enqueue(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    event_type: &str,
    data: serde_json::Value,
) -> Result<Uuid> {
    enqueue_for(conn, tenant, None, event_type, data).await
}

/// Writes an event for one endpoint only (`Some`), or for every subscribed one.
pub async fn enqueue_for(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    endpoint: Option<Uuid>,
    event_type: &str,
    data: serde_json::Value,
) -> Result<Uuid> {
    let id = Uuid::now_v7();
    let now = crate::now();
    entity::Entity::insert(entity::ActiveModel {
        id: Set(id),
        tenant_id: Set(tenant),
        event_type: Set(event_type.to_owned()),
        payload: Set(payload(event_type, now, data)),
        endpoint_id: Set(endpoint),
        created_at: Set(now),
        dispatched_at: Set(None),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(id)
}
