//! The one way to describe an audit event: the actor starts it (`Actor::event`: who, with
//! which credential, from where, and what happened to which kind of object), then it says
//! to which object, and what it looked like before and after.

use sigil_core::{TenantId, TokenId, UserId};

/// An audit event about to be written.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NewEvent {
    pub tenant: Option<TenantId>,
    pub actor: Option<UserId>,
    pub actor_label: String,
    pub credential: Option<TokenId>,
    pub action: String,
    pub target_type: String,
    pub target_id: Option<String>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

impl NewEvent {
    /// Files an operator's event under the tenant it concerns (a tenant user's event
    /// stays in the user's tenant).
    pub fn in_tenant(mut self, tenant: TenantId) -> Self {
        self.tenant.get_or_insert(tenant);
        self
    }

    pub fn target(mut self, id: impl ToString) -> Self {
        self.target_id = Some(id.to_string());
        self
    }

    pub fn before(mut self, view: serde_json::Value) -> Self {
        self.before = Some(view);
        self
    }

    pub fn after(mut self, view: serde_json::Value) -> Self {
        self.after = Some(view);
        self
    }

    pub fn before_opt(mut self, view: Option<serde_json::Value>) -> Self {
        self.before = view;
        self
    }

    pub fn after_opt(mut self, view: Option<serde_json::Value>) -> Self {
        self.after = view;
        self
    }
}

#[cfg(test)]
mod tests {
    use crate::Actor;
    use sigil_core::{TenantId, TokenId, UserId};

    #[test]
    fn an_event_says_to_what_and_how_it_looked() {
        let tenant = TenantId(uuid::Uuid::now_v7());
        let token = TokenId(uuid::Uuid::now_v7());
        let e = Actor::user(tenant, UserId(uuid::Uuid::now_v7()), "alice", Some(token))
            .event("token.update", "token")
            .target("t1")
            .before(serde_json::json!({"name": "a"}))
            .after(serde_json::json!({"name": "b"}));
        assert_eq!(e.target_id.as_deref(), Some("t1"));
        assert_eq!(e.before, Some(serde_json::json!({"name": "a"})));
        assert_eq!(e.after, Some(serde_json::json!({"name": "b"})));
        let e = e.before_opt(None).after_opt(None);
        assert_eq!((e.before, e.after), (None, None));
    }

    #[test]
    fn a_system_event_keeps_its_label_and_credential() {
        let tenant = TenantId(uuid::Uuid::now_v7());
        let token = TokenId(uuid::Uuid::now_v7());
        let actor = Actor {
            credential: Some(token),
            ..Actor::system("reuse detection", tenant)
        }
        .from_client(Some("192.0.2.1".into()), None);
        let e = actor.event("token.reuse_detected", "token");
        assert_eq!(e.actor_label, "reuse detection");
        assert_eq!(e.actor, None);
        assert_eq!(e.tenant, Some(tenant));
        assert_eq!(e.credential, Some(token));
        assert_eq!(e.client_ip.as_deref(), Some("192.0.2.1"));
    }
}
