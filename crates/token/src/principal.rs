//! Who calls: the checked identity behind a tenant token, or the platform operator. The
//! verifier builds principals; token management acts on their behalf.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use sigil_core::{Error, TenantId, TokenId, UserId};
use sigil_limits::{CreditState, RateLimit};
use sigil_scope_registry::MethodSet;
use sigil_tenant::TenantPolicy;
use sigil_user::{Role, UserKind};

use crate::types::TokenKind;

/// The checked identity behind a tenant token: the same value for every request that
/// presents the same credential until something about it changes.
#[derive(Debug)]
pub struct Principal {
    pub tenant_id: TenantId,
    /// Shared by every principal of the tenant.
    pub tenant_slug: Arc<str>,
    pub user_id: UserId,
    pub username: Box<str>,
    pub user_kind: UserKind,
    pub role: Role,
    pub token_id: TokenId,
    pub token_kind: TokenKind,
    pub expires_at: Option<DateTime<Utc>>,
    pub elevated_until: Option<DateTime<Utc>>,
    /// The token's own scope, compiled (shared by the principals with the same scope).
    pub scope: Arc<MethodSet>,
    /// scope ∩ what the owner's role allows now (shared likewise).
    pub rights: Arc<MethodSet>,
    /// The token's IP filter; `None` when the stored filter is unreadable (refuses all).
    pub ip_filter: Option<Box<[IpNet]>>,
    /// The tenant's allowlist, parsed once and shared by the tenant's principals.
    pub tenant_nets: Arc<[IpNet]>,
    pub policy: Arc<TenantPolicy>,
    /// When the credential is a replaced secret in its grace period: the period's end.
    /// Past it the cached principal is dropped, so the next use is verified in full (and
    /// reuse detection sees it).
    pub grace_until: Option<DateTime<Utc>>,
    /// The token's usage limits with the tenant's defaults applied; `None` when it has
    /// none, so a token without limits pays one branch for them.
    pub limits: Option<Arc<UsageLimits>>,
    /// The registry version the rights were compiled against.
    pub(crate) registry_version: u64,
    /// The verifier's invalidation epoch the principal was loaded at.
    pub(crate) loaded_epoch: u64,
}

impl Principal {
    pub fn is_session(&self) -> bool {
        self.token_kind == TokenKind::Session
    }

    /// Token changes made with a login session need a recent password confirmation when
    /// the tenant asks for it; automation tokens are not asked.
    pub fn require_confirmation(&self) -> Result<(), Error> {
        if self.is_session()
            && self.policy.require_password_confirmation
            && self.elevated_until.is_none_or(|t| t <= Utc::now())
        {
            return Err(Error::forbidden(
                "password_confirmation_required",
                "changing tokens with a login session needs a recent password confirmation: POST /api/v1/auth/confirm-password with {\"password\": ...} (confirmPassword), then retry",
            ));
        }
        Ok(())
    }
}

/// A token's usage limits as verification enforces them.
#[derive(Debug, PartialEq)]
pub struct UsageLimits {
    /// The token's rate limits, or the tenant's defaults for tokens when it has none.
    pub token: Box<[RateLimit]>,
    /// The owner's rate limits (or the tenant's defaults for owners), shared by all of the
    /// owner's tokens.
    pub owner: Box<[RateLimit]>,
    /// The token's credits as stored when the principal was loaded.
    pub credits: Option<CreditState>,
}

impl UsageLimits {
    /// The limits, or `None` when there are none to check.
    pub fn of(
        token: Vec<RateLimit>,
        owner: Vec<RateLimit>,
        credits: Option<CreditState>,
    ) -> Option<Arc<Self>> {
        if token.is_empty() && owner.is_empty() && credits.is_none() {
            return None;
        }
        Some(Arc::new(Self {
            token: token.into(),
            owner: owner.into(),
            credits,
        }))
    }
}

/// A verified caller: the platform operator or a tenant user's token.
#[derive(Clone, Debug)]
pub enum Caller {
    Operator,
    Tenant(Arc<Principal>),
}

#[cfg(test)]
pub(crate) mod fixture {
    //! A principal for unit tests, built without a database.

    use super::*;

    pub fn principal(kind: TokenKind) -> Principal {
        Principal {
            tenant_id: TenantId::new(),
            tenant_slug: "acme".into(),
            user_id: UserId::new(),
            username: "admin".into(),
            user_kind: UserKind::Person,
            role: Role::Admin,
            token_id: TokenId::new(),
            token_kind: kind,
            expires_at: None,
            elevated_until: None,
            scope: Arc::default(),
            rights: Arc::default(),
            ip_filter: Some(Box::new([])),
            tenant_nets: Arc::new([]),
            policy: Arc::new(TenantPolicy::default()),
            grace_until: None,
            registry_version: 0,
            loaded_epoch: 0,
            limits: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::principal;
    use super::*;

    #[test]
    fn sessions_need_a_recent_confirmation_for_token_changes() {
        let mut session = principal(TokenKind::Session);
        assert!(session.require_confirmation().is_err());
        session.elevated_until = Some(Utc::now() + chrono::Duration::minutes(5));
        assert!(session.require_confirmation().is_ok());
        session.elevated_until = Some(Utc::now() - chrono::Duration::seconds(1));
        assert!(session.require_confirmation().is_err());
        session.policy = Arc::new(TenantPolicy {
            require_password_confirmation: false,
            ..TenantPolicy::default()
        });
        assert!(session.require_confirmation().is_ok());
    }

    #[test]
    fn automation_tokens_are_not_asked_to_confirm() {
        assert!(principal(TokenKind::Personal)
            .require_confirmation()
            .is_ok());
    }
}
