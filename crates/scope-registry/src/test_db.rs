//! The use cases' unit tests: a fresh, migrated in-memory database behind a registry
//! service with stand-in tokens, the actors, and the audit events the use cases wrote.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sea_orm::{EntityTrait, QueryOrder};
use sigil_audit::entity as audit;
use sigil_audit::Actor;
use sigil_core::{ChangeFeed, Result, TenantId, TokenId, UserId};

use crate::registry::Registry;
use crate::service::RegistryService;
use crate::snapshot::Snapshot;
use crate::token_scopes::{CustomScopeToken, DatabaseTransaction, TokenScopes};

/// What the tokens answer: how many use any set, and the tokens with their own method
/// lists.
#[derive(Default)]
pub(crate) struct Tokens {
    pub using_set: Mutex<u64>,
    pub custom: Mutex<Vec<CustomScopeToken>>,
}

#[async_trait]
impl TokenScopes for Tokens {
    async fn count_using_set(&self, _tenant: TenantId, _set: &str) -> Result<u64> {
        Ok(self.using_set.lock().map(|n| *n).unwrap_or_default())
    }

    async fn count_using_sets(
        &self,
        _txn: &DatabaseTransaction,
        _tenant: Option<TenantId>,
        _sets: &[String],
    ) -> Result<Vec<(TenantId, String, u64)>> {
        Ok(Vec::new())
    }

    async fn with_custom_methods(
        &self,
        _txn: &DatabaseTransaction,
        tenant: Option<TenantId>,
        _new_ids: &[&str],
    ) -> Result<Vec<CustomScopeToken>> {
        let all = self.custom.lock().map(|c| c.clone()).unwrap_or_default();
        Ok(all
            .into_iter()
            .filter(|t| tenant.is_none_or(|wanted| t.tenant == wanted))
            .collect())
    }
}

/// A registry service on a fresh database, and the tokens it sees.
pub(crate) async fn service() -> (RegistryService, Arc<Tokens>) {
    let db = sigil_core::db::connect("sqlite::memory:", 1).await.unwrap();
    sigil_migrations::migrate(&db).await.unwrap();
    let tokens = Arc::new(Tokens::default());
    let service = RegistryService::new(
        db.clone(),
        Arc::new(Registry::new(Snapshot::build(Vec::new()).unwrap())),
        Arc::new(ChangeFeed::new(db)),
        tokens.clone(),
    );
    (service, tokens)
}

/// The operator, calling from 192.0.2.1 with curl.
pub(crate) fn operator() -> Actor {
    Actor::operator().from_client(Some("192.0.2.1".into()), Some("curl/8".into()))
}

/// Alice, an admin of `tenant`, presenting a token, from 192.0.2.7.
pub(crate) fn alice(tenant: TenantId) -> Actor {
    Actor::user(tenant, UserId::new(), "alice", Some(TokenId::new()))
        .from_client(Some("192.0.2.7".into()), Some("sdk/1".into()))
}

/// Every audit event written, oldest first.
pub(crate) async fn events(service: &RegistryService) -> Vec<audit::Model> {
    audit::Entity::find()
        .order_by_asc(audit::Column::Id)
        .all(&service.db)
        .await
        .unwrap()
}

/// Checks that `event` is by `actor` (who, with which credential, from where).
pub(crate) fn assert_by(event: &audit::Model, actor: &Actor) {
    assert_eq!(event.actor_id, actor.user, "{event:?}");
    assert_eq!(event.actor_label, actor.label, "{event:?}");
    assert_eq!(event.credential_id, actor.credential, "{event:?}");
    assert_eq!(event.client_ip, actor.client_ip, "{event:?}");
    assert_eq!(event.user_agent, actor.user_agent, "{event:?}");
}

/// The JSON of an event's `before` or `after`.
pub(crate) fn json(text: &Option<String>) -> serde_json::Value {
    text.as_deref()
        .map(|t| serde_json::from_str(t).unwrap())
        .unwrap_or_default()
}
