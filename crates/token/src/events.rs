//! The outbox events of tokens (`sigil_core::outbox`): each written with the transaction
//! of the change it reports. The data names the token, never its secret.

use sea_orm::ConnectionTrait;
use sigil_core::outbox::{self, events};
use sigil_core::Result;

use crate::entity;

/// What every token event says about its token.
pub fn token_data(m: &entity::Model) -> serde_json::Value {
    serde_json::json!({
        "tenant_id": m.tenant_id.0,
        "token_id": m.id.0,
        "name": m.name,
        "kind": m.kind,
        "owner_id": m.owner_id.0,
        "expires_at": m.expires_at,
        "generation": m.generation,
    })
}

/// Writes `event_type` about the token `m`, with `extra` fields merged into its data.
pub async fn token_event(
    conn: &impl ConnectionTrait,
    event_type: &str,
    m: &entity::Model,
    extra: serde_json::Value,
) -> Result<()> {
    // Login sessions are not the tenant's tokens to watch: they come and go with sign-ins.
    if m.kind == crate::types::TokenKind::Session.as_str() {
        return Ok(());
    }
    let mut data = token_data(m);
    if let (Some(data), serde_json::Value::Object(extra)) = (data.as_object_mut(), extra) {
        data.extend(extra);
    }
    outbox::enqueue(conn, m.tenant_id, event_type, data).await?;
    Ok(())
}

/// `token.revoked` and the event naming why (`token.leaked`, `token.reuse_detected`).
pub async fn revoked(
    conn: &impl ConnectionTrait,
    m: &entity::Model,
    reason: &str,
    extra: serde_json::Value,
) -> Result<()> {
    let specific = match reason {
        crate::leaks::LEAKED => events::TOKEN_LEAKED,
        _ => events::TOKEN_REUSE_DETECTED,
    };
    token_event(conn, specific, m, extra).await?;
    token_event(
        conn,
        events::TOKEN_REVOKED,
        m,
        serde_json::json!({ "reason": reason }),
    )
    .await
}
