//! What the registry needs to know about tokens. Tokens sit above this crate (their
//! scopes are resolved against the registry), so the token store answers through this
//! trait rather than being called directly.

use async_trait::async_trait;
use sigil_core::{Result, TenantId, TokenId};

/// The transaction a registry change reads tokens in (for implementors without their own
/// dependency on sea-orm).
pub use sea_orm::DatabaseTransaction;

/// A live token with its own method list (no scope set).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomScopeToken {
    pub id: TokenId,
    pub tenant: TenantId,
    pub name: String,
    /// Method ids and globs, as stored.
    pub methods: Vec<String>,
    /// The creator ceiling: method ids the token can never exceed, when set.
    pub ceiling: Option<Vec<String>>,
}

/// The tokens whose scope names a set or lists its own methods.
#[async_trait]
pub trait TokenScopes: Send + Sync {
    /// Tokens of `tenant` whose scope names the custom set `set` (to refuse deleting a set
    /// in use).
    async fn count_using_set(&self, tenant: TenantId, set: &str) -> Result<u64>;

    /// Live tokens without a creator ceiling (those that gain what their set gains) using
    /// one of `sets`, of `tenant` (`None`: of every tenant), counted per tenant and set.
    /// Read in `txn`, the registration's (on SQLite it holds the only connection).
    async fn count_using_sets(
        &self,
        txn: &DatabaseTransaction,
        tenant: Option<TenantId>,
        sets: &[String],
    ) -> Result<Vec<(TenantId, String, u64)>>;

    /// Live tokens of `tenant` (`None`: of every tenant) with a custom method list that
    /// could match one of `new_ids`; over-inclusion is harmless (the caller matches
    /// exactly). Read in `txn`, the registration's.
    async fn with_custom_methods(
        &self,
        txn: &DatabaseTransaction,
        tenant: Option<TenantId>,
        new_ids: &[&str],
    ) -> Result<Vec<CustomScopeToken>>;
}
