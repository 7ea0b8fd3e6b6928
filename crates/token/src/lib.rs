//! Tokens: minting and managing personal, application and session tokens, and verifying
//! them on the hot path (cache, precise refusal codes, usage counting, change feed).

pub mod addresses;
pub mod audit;
pub mod ceiling;
pub mod credits;
pub mod entity;
pub mod events;
pub mod jwt;
pub mod leaks;
mod loader;
pub mod methods;
pub mod notices;
pub mod principal;
pub mod rights;
pub mod scope;
pub mod service;
pub mod types;
pub mod usage;
pub mod verifier;
pub mod widening;

pub use ceiling::Expiry;
pub use methods::{Audience, SigilMethod};
pub use principal::{Caller, Principal};
pub use service::{NewToken, TokenFilter, TokenPatch, TokenService};
pub use sigil_core::changes::{self, Change, ChangeFeed};
pub use types::{Minted, Scope, Token, TokenKind};
pub use usage::UsageRecorder;
pub use verifier::{Refusal, RefusalKind, Verifier};
