//! Pieces every Sigil domain crate shares: ids, the error kinds, crypto helpers and the
//! database connection. Nothing here knows HTTP.

pub mod changes;
pub mod crypto;
pub mod db;
pub mod error;
pub mod ids;
pub mod outbox;
pub mod page;
pub mod scoped;

pub use changes::{Change, ChangeFeed};
pub use error::{Error, FieldError, Result};
pub use ids::{ScopeSetId, TenantId, TokenId, UserId};
pub use scoped::TenantOwned;

/// Current time truncated to milliseconds, so values round-trip through every database.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    let t = chrono::Utc::now();
    chrono::DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}
