//! Verifying Sigil tokens from a plugin (a service behind Sigil's scope registry).
//!
//! Two ways, with different guarantees:
//! - [`Introspector`] asks Sigil (`introspectToken`) whether a token may call a method from
//!   a client address, and caches answers for a few seconds. It sees revocation,
//!   regeneration, disabled tokens and role changes (within the cache time).
//! - [`OfflineVerifier`] checks the signature, issuer and expiry against the tenant's JWKS.
//!   It needs no call per request but cannot see anything that happened after the token
//!   was signed; pair it with short token lifetimes.

mod introspect;
mod offline;

pub use introspect::{Decision, Introspector};
pub use offline::{OfflineClaims, OfflineVerifier};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach Sigil: {0}")]
    Transport(String),
    #[error("Sigil answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("the token is not valid: {0}")]
    Invalid(String),
}
