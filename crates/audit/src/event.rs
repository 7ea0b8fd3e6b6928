//! The one way to describe an audit event: start from what happened to which kind of
//! object, then say who did it, to which object, and what it looked like before and
//! after. The server adds where the request came from when it records the event.

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
    /// `action` (`token.update`) happened to an object of `target_type` (`token`). The
    /// actor is the platform operator until a `by_*` call says otherwise.
    pub fn of(action: &str, target_type: &str) -> Self {
        Self {
            actor_label: "operator".to_owned(),
            action: action.to_owned(),
            target_type: target_type.to_owned(),
            ..Self::default()
        }
    }

    /// Done by a tenant user presenting `credential`; filed under the user's tenant.
    pub fn by_user(
        mut self,
        tenant: TenantId,
        user: UserId,
        username: &str,
        credential: Option<TokenId>,
    ) -> Self {
        self.tenant = Some(tenant);
        self.actor = Some(user);
        self.actor_label = username.to_owned();
        self.credential = credential;
        self
    }

    /// Done by the platform operator to `tenant`: filed under that tenant, so its admins
    /// see what the operator did to it.
    pub fn by_operator(mut self, tenant: Option<TenantId>) -> Self {
        self.tenant = tenant;
        self.actor = None;
        self.actor_label = "operator".to_owned();
        self.credential = None;
        self
    }

    /// Done by Sigil itself (`reuse detection`, `leak report`) in `tenant`.
    pub fn by_system(mut self, label: &str, tenant: TenantId) -> Self {
        self.tenant = Some(tenant);
        self.actor = None;
        self.actor_label = label.to_owned();
        self
    }

    /// The credential involved when no user acted (a token revoked by reuse detection).
    pub fn with_credential(mut self, credential: TokenId) -> Self {
        self.credential = Some(credential);
        self
    }

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

    /// Where the request came from.
    pub fn from_client(mut self, ip: Option<String>, user_agent: Option<String>) -> Self {
        self.client_ip = ip;
        self.user_agent = user_agent;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_event_is_filed_under_the_users_tenant() {
        let tenant = TenantId(uuid::Uuid::now_v7());
        let user = UserId(uuid::Uuid::now_v7());
        let token = TokenId(uuid::Uuid::now_v7());
        let e = NewEvent::of("token.update", "token")
            .by_user(tenant, user, "alice", Some(token))
            .target("t1")
            .before(serde_json::json!({"name": "a"}))
            .after(serde_json::json!({"name": "b"}));
        assert_eq!(e.tenant, Some(tenant));
        assert_eq!(e.actor, Some(user));
        assert_eq!(e.actor_label, "alice");
        assert_eq!(e.credential, Some(token));
        assert_eq!(e.target_id.as_deref(), Some("t1"));
        assert_eq!(e.before, Some(serde_json::json!({"name": "a"})));
    }

    #[test]
    fn an_operator_event_names_no_user() {
        let tenant = TenantId(uuid::Uuid::now_v7());
        let e = NewEvent::of("tenant.update", "tenant").by_operator(Some(tenant));
        assert_eq!(e.actor, None);
        assert_eq!(e.actor_label, "operator");
        assert_eq!(e.tenant, Some(tenant));
    }

    #[test]
    fn a_system_event_keeps_its_label_and_credential() {
        let tenant = TenantId(uuid::Uuid::now_v7());
        let token = TokenId(uuid::Uuid::now_v7());
        let e = NewEvent::of("token.reuse_detected", "token")
            .by_system("reuse detection", tenant)
            .with_credential(token)
            .from_client(Some("192.0.2.1".into()), None);
        assert_eq!(e.actor_label, "reuse detection");
        assert_eq!(e.credential, Some(token));
        assert_eq!(e.client_ip.as_deref(), Some("192.0.2.1"));
    }
}
