//! Who changes the registry, as its audit events name them.

use sigil_audit::NewEvent;
use sigil_core::{TenantId, TokenId, UserId};

/// A tenant user (an admin) acting with one of their tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantUser {
    pub tenant: TenantId,
    pub user: UserId,
    pub username: String,
    pub credential: TokenId,
}

/// The platform operator (global plugins) or a tenant user (the tenant's own plugins and
/// scope sets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    Operator,
    User(TenantUser),
}

impl TenantUser {
    /// `event`, done by this user and filed under their tenant.
    pub(crate) fn sign(&self, event: NewEvent) -> NewEvent {
        event.by_user(
            self.tenant,
            self.user,
            &self.username,
            Some(self.credential),
        )
    }
}

impl Actor {
    /// The tenant acted for; `None` for the operator.
    pub fn tenant(&self) -> Option<TenantId> {
        match self {
            Actor::Operator => None,
            Actor::User(u) => Some(u.tenant),
        }
    }

    /// `event`, done by this actor: the operator's events are filed under no tenant.
    pub(crate) fn sign(&self, event: NewEvent) -> NewEvent {
        match self {
            Actor::Operator => event.by_operator(None),
            Actor::User(u) => u.sign(event),
        }
    }
}
