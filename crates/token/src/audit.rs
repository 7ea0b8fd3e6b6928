//! What the audit log records of a token: the fields a person changes, never the secret.
//! Each use case writes its event in its own transaction (crate::service).

use chrono::Utc;
use serde_json::{json, Value};
use sigil_audit::{Actor, NewEvent};
use sigil_core::TokenId;

use crate::types::{Scope, Token};

/// `action` on token `id`, done by `by`.
pub(crate) fn event(by: &Actor, action: &str, id: TokenId) -> NewEvent {
    by.event(action, "token").target(id)
}

/// The token as the audit log shows it before and after a change. Credits show the
/// stored balance (a balance spent since the last flush is per replica and not yet
/// stored).
pub fn view(t: &Token) -> Value {
    let (set, methods) = match &t.scope {
        Scope::Set(s) => (Some(s.clone()), None),
        Scope::Methods(m) => (None, Some(m.clone())),
        Scope::All => (None, None),
    };
    json!({
        "name": t.name, "description": t.description, "kind": t.kind.as_str(),
        "owner_id": t.owner_id.0, "scope_set": set, "methods": methods,
        "expires_at": t.expires_at, "ip_filter": t.ip_filter, "enabled": t.enabled,
        "generation": t.generation, "rate_limits": t.rate_limits,
        "credits": t.credits.as_ref().map(|c| json!({
            "remaining": c.effective(Utc::now()).0,
            "refill": c.refill.as_ref().map(|r| json!({
                "interval": r.interval, "amount": r.amount, "day": r.day,
            })),
        })),
    })
}
