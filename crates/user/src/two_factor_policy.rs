//! Requiring two-factor sign-in for a tenant: only an admin who has a second factor may
//! turn it on, and turning it on ends the login sessions of every person without one (they
//! sign in again and enrol). Applied in the policy change's own transaction.

use std::sync::Arc;

use sea_orm::{ColumnTrait, DatabaseTransaction, QueryFilter, QuerySelect};
use sigil_audit::Actor;
use sigil_core::{Error, TenantId, TenantOwned, UserId};
use sigil_tenant::policy_effects::Applying;
use sigil_tenant::{PolicyEffects, TenantPolicy};

use crate::entity;
use crate::sessions::SessionEnder;
use crate::types::UserKind;

pub struct TwoFactorRequirement {
    sessions: Arc<dyn SessionEnder>,
}

impl TwoFactorRequirement {
    pub fn new(sessions: Arc<dyn SessionEnder>) -> Self {
        Self { sessions }
    }
}

impl PolicyEffects for TwoFactorRequirement {
    fn apply<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        actor: &'a Actor,
        tenant: TenantId,
        before: &'a TenantPolicy,
        after: &'a TenantPolicy,
    ) -> Applying<'a> {
        Box::pin(async move {
            if before.require_two_factor || !after.require_two_factor {
                return Ok(());
            }
            if let Some(me) = actor.user {
                let row = crate::service::model_in(txn, tenant, me).await?;
                if row.two_factor_enabled_at.is_none() {
                    return Err(Error::conflict(
                        "enrol_two_factor_first",
                        "turn on two-factor sign-in for yourself before requiring it for everyone",
                    ));
                }
            }
            let people: Vec<UserId> = entity::Entity::find_in(tenant)
                .filter(entity::Column::Kind.eq(UserKind::Person.as_str()))
                .filter(entity::Column::TwoFactorEnabledAt.is_null())
                .select_only()
                .column(entity::Column::Id)
                .into_tuple()
                .all(txn)
                .await?;
            for user in people {
                self.sessions.end_sessions(txn, tenant, user, None).await?;
            }
            Ok(())
        })
    }
}
