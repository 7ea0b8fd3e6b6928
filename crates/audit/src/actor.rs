//! Who acts, and from where: the request context every use case takes, so that it files
//! its own audit event in its own transaction.

use sigil_core::{TenantId, TokenId, UserId};

use crate::event::NewEvent;

#[derive(Clone, Debug, PartialEq)]
pub struct Actor {
    /// The actor's tenant (none for the platform operator).
    pub tenant: Option<TenantId>,
    pub user: Option<UserId>,
    pub label: String,
    /// The credential presented.
    pub credential: Option<TokenId>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

impl Actor {
    /// A tenant user presenting `credential`.
    pub fn user(
        tenant: TenantId,
        user: UserId,
        username: &str,
        credential: Option<TokenId>,
    ) -> Self {
        Self {
            tenant: Some(tenant),
            user: Some(user),
            label: username.to_owned(),
            credential,
            client_ip: None,
            user_agent: None,
        }
    }

    /// The platform operator.
    pub fn operator() -> Self {
        Self {
            tenant: None,
            user: None,
            label: "operator".to_owned(),
            credential: None,
            client_ip: None,
            user_agent: None,
        }
    }

    /// Sigil itself (`reuse detection`, `leak report`), acting in `tenant`.
    pub fn system(label: &str, tenant: TenantId) -> Self {
        Self {
            tenant: Some(tenant),
            label: label.to_owned(),
            ..Self::operator()
        }
    }

    /// Where the request came from.
    pub fn from_client(mut self, ip: Option<String>, user_agent: Option<String>) -> Self {
        self.client_ip = ip;
        self.user_agent = user_agent;
        self
    }

    pub fn is_operator(&self) -> bool {
        self.tenant.is_none()
    }

    /// `action` on an object of `target_type`, done by this actor. An operator's event is
    /// filed under no tenant until [`NewEvent::in_tenant`] names the one it concerns.
    pub fn event(&self, action: &str, target_type: &str) -> NewEvent {
        NewEvent {
            tenant: self.tenant,
            actor: self.user,
            actor_label: self.label.clone(),
            credential: self.credential,
            action: action.to_owned(),
            target_type: target_type.to_owned(),
            client_ip: self.client_ip.clone(),
            user_agent: self.user_agent.clone(),
            ..NewEvent::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_event_carries_the_user_the_credential_and_the_client() {
        let tenant = TenantId(uuid::Uuid::now_v7());
        let user = UserId(uuid::Uuid::now_v7());
        let token = TokenId(uuid::Uuid::now_v7());
        let actor = Actor::user(tenant, user, "alice", Some(token))
            .from_client(Some("192.0.2.7".into()), Some("curl/8".into()));
        let e = actor.event("token.create", "token").target("t1");
        assert_eq!(e.tenant, Some(tenant));
        assert_eq!(e.actor, Some(user));
        assert_eq!(e.actor_label, "alice");
        assert_eq!(e.credential, Some(token));
        assert_eq!(e.client_ip.as_deref(), Some("192.0.2.7"));
        assert_eq!(e.user_agent.as_deref(), Some("curl/8"));
        assert_eq!(e.action, "token.create");
    }

    #[test]
    fn an_operators_event_is_filed_under_the_tenant_it_concerns() {
        let tenant = TenantId(uuid::Uuid::now_v7());
        let e = Actor::operator().event("tenant.update", "tenant");
        assert_eq!(e.tenant, None);
        let e = e.in_tenant(tenant);
        assert_eq!(e.tenant, Some(tenant));
        assert_eq!(e.actor_label, "operator");
        assert_eq!(e.actor, None);
    }

    #[test]
    fn a_users_event_stays_in_the_users_tenant() {
        let mine = TenantId(uuid::Uuid::now_v7());
        let other = TenantId(uuid::Uuid::now_v7());
        let actor = Actor::user(mine, UserId(uuid::Uuid::now_v7()), "bob", None);
        assert_eq!(actor.event("x", "y").in_tenant(other).tenant, Some(mine));
    }
}
