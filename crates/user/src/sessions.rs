//! Login sessions are kept by the token crate, which depends on this one. A user change
//! that must end them (a new password) ends them through this port, with the change's own
//! transaction, so the password and the revocation commit together or not at all.

use std::future::Future;
use std::pin::Pin;

use sea_orm::DatabaseTransaction;
use sigil_core::{Result, TenantId, TokenId, UserId};

/// The future of [`SessionEnder::end_sessions`].
pub type Ending<'a> = Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;

/// Ends the login sessions of a user inside a transaction of the user crate.
pub trait SessionEnder: Send + Sync {
    /// Ends every live login session of `user` except `keep`, with `txn`. The caller
    /// publishes the user's change once the transaction commits.
    fn end_sessions<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        tenant: TenantId,
        user: UserId,
        keep: Option<TokenId>,
    ) -> Ending<'a>;
}
