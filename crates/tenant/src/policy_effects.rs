//! What else a policy change must do, in its own transaction. The tenant crate knows
//! neither users nor sessions; the user crate implements this port (requiring two-factor
//! sign-in ends the sessions of the people who have none), so the policy and its
//! consequences commit together or not at all.

use std::future::Future;
use std::pin::Pin;

use sea_orm::DatabaseTransaction;
use sigil_audit::Actor;
use sigil_core::{Result, TenantId};

use crate::policy::TenantPolicy;

/// The future of [`PolicyEffects::apply`].
pub type Applying<'a> = Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;

pub trait PolicyEffects: Send + Sync {
    /// Checks that `actor` may make the change from `before` to `after` and applies its
    /// consequences, with `txn`. An error rolls the policy change back.
    fn apply<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        actor: &'a Actor,
        tenant: TenantId,
        before: &'a TenantPolicy,
        after: &'a TenantPolicy,
    ) -> Applying<'a>;
}

/// A policy change with no consequences beyond the policy (tools and tests).
pub struct NoEffects;

impl PolicyEffects for NoEffects {
    fn apply<'a>(
        &'a self,
        _txn: &'a DatabaseTransaction,
        _actor: &'a Actor,
        _tenant: TenantId,
        _before: &'a TenantPolicy,
        _after: &'a TenantPolicy,
    ) -> Applying<'a> {
        Box::pin(async { Ok(()) })
    }
}
