//! A tenant's webhook endpoints and their delivery log. Every query is scoped to the
//! tenant; another tenant's endpoint is not found. The signing secret is sealed with the
//! master key and leaves this module only once, in the answer that created or replaced it.
//! Each change writes its audit event in its own transaction.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, TransactionTrait,
};
use sigil_audit::Actor;
use sigil_core::crypto::MasterKey;
use sigil_core::db::Db;
use sigil_core::outbox::{self, events};
use sigil_core::page::{Page, PageRequest};
use sigil_core::{Error, Result, TenantId, TenantOwned};
use uuid::Uuid;

use crate::entity::{delivery, endpoint};
use crate::signing::WebhookSecret;

/// Endpoints one tenant may register.
pub const MAX_ENDPOINTS: u64 = 20;

#[derive(Clone, Debug)]
pub struct Endpoint {
    pub id: Uuid,
    pub tenant: TenantId,
    pub url: String,
    pub description: String,
    /// Subscribed event types; empty: all of them.
    pub event_types: Vec<String>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Endpoint {
    fn from_model(m: &endpoint::Model) -> Self {
        Self::from_model_ref(m)
    }

    /// What the audit log keeps of an endpoint (never its secret).
    fn audit_view(&self) -> serde_json::Value {
        let event_types: Vec<&str> = self
            .event_types
            .iter()
            .map(String::as_str)
            .filter(|t| events::ALL.contains(t) && *t != events::WEBHOOK_TEST)
            .collect();
        serde_json::json!({
            "url": self.url, "description": self.description, "enabled": self.enabled,
            "event_types": event_types,
        })
    }

    /// Whether the endpoint wants events of this type.
    pub fn wants(&self, event_type: &str) -> bool {
        self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type)
    }
}

#[derive(Clone, Debug)]
pub struct NewEndpoint {
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    /// A secret the admin supplies (`whsec_...`); none: one is generated.
    pub secret: Option<String>,
    pub enabled: bool,
}

#[derive(Clone, Debug, Default)]
pub struct EndpointPatch {
    pub url: Option<String>,
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub enabled: Option<bool>,
    /// A new secret the admin supplies.
    pub secret: Option<String>,
    /// Replace the secret by a generated one.
    pub rotate_secret: bool,
}

/// An endpoint before and after a change, and its new secret when the change replaced it.
#[derive(Clone, Debug)]
pub struct EndpointChange {
    pub before: Endpoint,
    pub after: Endpoint,
    pub secret: Option<WebhookSecret>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Succeeded,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "succeeded" => DeliveryStatus::Succeeded,
            "failed" => DeliveryStatus::Failed,
            _ => DeliveryStatus::Pending,
        }
    }
}

/// One event's delivery to one endpoint, with its retry state.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub id: Uuid,
    pub endpoint_id: Uuid,
    /// The event; `msg_<event id>` is the `webhook-id` of every attempt.
    pub event_id: Uuid,
    pub event_type: String,
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The body sent (the event), when still stored.
    pub payload: Option<serde_json::Value>,
}

impl Delivery {
    fn from_model(m: &delivery::Model, payload: Option<serde_json::Value>) -> Self {
        Self {
            id: m.id,
            endpoint_id: m.endpoint_id,
            event_id: m.event_id,
            event_type: m.event_type.clone(),
            status: DeliveryStatus::parse(&m.status),
            attempts: m.attempts,
            next_attempt_at: m.next_attempt_at,
            last_attempt_at: m.last_attempt_at,
            last_status_code: m.last_status_code,
            last_error: m.last_error.clone(),
            created_at: m.created_at,
            payload,
        }
    }
}

/// The `webhook-id` of an event's deliveries.
pub fn message_id(event: Uuid) -> String {
    format!("msg_{}", event.simple())
}

pub(crate) fn seal_context(endpoint: Uuid) -> String {
    format!("webhook:{endpoint}")
}

fn validate_event_types(types: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for t in types {
        if !events::ALL.contains(&t.as_str()) || t == events::WEBHOOK_TEST {
            return Err(Error::invalid_field(
                "invalid_event_type",
                "event_types",
                format!("unknown event type {t:?}"),
            ));
        }
        if !out.contains(t) {
            out.push(t.clone());
        }
    }
    Ok(out)
}

fn validate_description(d: &str) -> Result<()> {
    if d.chars().count() > 500 {
        return Err(Error::invalid_field(
            "invalid_description",
            "description",
            "at most 500 characters",
        ));
    }
    Ok(())
}

#[derive(Clone)]
pub struct WebhookService {
    db: Db,
    master: MasterKey,
    allow_private: bool,
}

impl WebhookService {
    pub fn new(db: Db, master: MasterKey, allow_private: bool) -> Self {
        Self {
            db,
            master,
            allow_private,
        }
    }

    async fn model(&self, tenant: TenantId, id: Uuid) -> Result<endpoint::Model> {
        model(&self.db, tenant, id).await
    }

    /// Registers an endpoint (`webhook.create`, by `actor`); returns it with its secret
    /// (shown this once).
    pub async fn create(
        &self,
        actor: &Actor,
        tenant: TenantId,
        new: NewEndpoint,
    ) -> Result<(Endpoint, WebhookSecret)> {
        let url = crate::address::check_url(&new.url, self.allow_private)?;
        validate_description(&new.description)?;
        let event_types = validate_event_types(&new.event_types)?;
        let secret = match &new.secret {
            Some(s) => WebhookSecret::parse(s)?,
            None => WebhookSecret::generate(),
        };
        let txn = self.db.begin().await?;
        if endpoint::Entity::find_in(tenant).count(&txn).await? >= MAX_ENDPOINTS {
            return Err(Error::conflict(
                "webhook_limit_reached",
                format!("a tenant may register at most {MAX_ENDPOINTS} webhook endpoints"),
            ));
        }
        let id = Uuid::now_v7();
        let now = sigil_core::now();
        let model = endpoint::ActiveModel {
            id: Set(id),
            tenant_id: Set(tenant),
            url: Set(url.to_string()),
            description: Set(new.description),
            event_types: Set(serde_json::to_string(&event_types).map_err(Error::internal)?),
            secret_sealed: Set(self.master.seal(secret.bytes(), &seal_context(id))?),
            enabled: Set(new.enabled),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&txn)
        .await?;
        let created = Endpoint::from_model(&model);
        let event = actor
            .event("webhook.create", "webhook")
            .in_tenant(tenant)
            .target(id)
            .after(created.audit_view());
        sigil_audit::write(&txn, event).await?;
        txn.commit().await?;
        Ok((created, secret))
    }

    pub async fn list(&self, tenant: TenantId, page: PageRequest) -> Result<Page<Endpoint>> {
        let query = endpoint::Entity::find_in(tenant);
        let total = query.clone().count(&self.db).await?;
        let items = query
            .order_by_asc(endpoint::Column::CreatedAt)
            .order_by_asc(endpoint::Column::Id)
            .offset(page.offset)
            .limit(page.limit)
            .all(&self.db)
            .await?
            .iter()
            .map(Endpoint::from_model)
            .collect();
        Ok(Page { items, total })
    }

    pub async fn get(&self, tenant: TenantId, id: Uuid) -> Result<Endpoint> {
        Ok(Endpoint::from_model(&self.model(tenant, id).await?))
    }

    /// Changes an endpoint (`webhook.update`, by `actor`); returns it as it was and as it
    /// is, and the new secret when it was replaced.
    pub async fn update(
        &self,
        actor: &Actor,
        tenant: TenantId,
        id: Uuid,
        patch: EndpointPatch,
    ) -> Result<EndpointChange> {
        let txn = self.db.begin().await?;
        let current = model(&txn, tenant, id).await?;
        let before = Endpoint::from_model(&current);
        let mut model: endpoint::ActiveModel = current.into();
        if let Some(url) = &patch.url {
            model.url = Set(crate::address::check_url(url, self.allow_private)?.to_string());
        }
        if let Some(d) = patch.description {
            validate_description(&d)?;
            model.description = Set(d);
        }
        if let Some(types) = &patch.event_types {
            let types = validate_event_types(types)?;
            model.event_types = Set(serde_json::to_string(&types).map_err(Error::internal)?);
        }
        if let Some(enabled) = patch.enabled {
            model.enabled = Set(enabled);
        }
        let secret = match (&patch.secret, patch.rotate_secret) {
            (Some(_), true) => {
                return Err(Error::invalid(
                    "ambiguous_secret",
                    "give a secret or rotate_secret, not both",
                ))
            }
            (Some(s), false) => Some(WebhookSecret::parse(s)?),
            (None, true) => Some(WebhookSecret::generate()),
            (None, false) => None,
        };
        if let Some(s) = &secret {
            model.secret_sealed = Set(self.master.seal(s.bytes(), &seal_context(id))?);
        }
        model.updated_at = Set(sigil_core::now());
        let after = Endpoint::from_model(&model.update(&txn).await?);
        let mut after_view = after.audit_view();
        after_view["secret_replaced"] = serde_json::Value::Bool(secret.is_some());
        let event = actor
            .event("webhook.update", "webhook")
            .in_tenant(tenant)
            .target(id)
            .before(before.audit_view())
            .after(after_view);
        sigil_audit::write(&txn, event).await?;
        txn.commit().await?;
        Ok(EndpointChange {
            before,
            after,
            secret,
        })
    }

    /// Removes an endpoint and its delivery log (`webhook.delete`, by `actor`); its pending
    /// deliveries are dropped.
    pub async fn delete(&self, actor: &Actor, tenant: TenantId, id: Uuid) -> Result<Endpoint> {
        let txn = self.db.begin().await?;
        let current = Endpoint::from_model(&model(&txn, tenant, id).await?);
        delivery::Entity::delete_many_in(tenant)
            .filter(delivery::Column::EndpointId.eq(id))
            .exec(&txn)
            .await?;
        let res = endpoint::Entity::delete_many_in(tenant)
            .filter(endpoint::Column::Id.eq(id))
            .exec(&txn)
            .await?;
        if res.rows_affected == 0 {
            return Err(Error::not_found("webhook"));
        }
        let event = actor
            .event("webhook.delete", "webhook")
            .in_tenant(tenant)
            .target(id)
            .before(current.audit_view());
        sigil_audit::write(&txn, event).await?;
        txn.commit().await?;
        Ok(current)
    }

    /// Queues a `webhook.test` event for this endpoint only (enabled or not), audited as
    /// `webhook.test` by `actor`; the delivery is sent by the worker like any other.
    pub async fn send_test(&self, actor: &Actor, tenant: TenantId, id: Uuid) -> Result<Delivery> {
        let endpoint = self.get(tenant, id).await?;
        let data = serde_json::json!({
            "tenant_id": tenant.0,
            "webhook_id": endpoint.id,
            "message": "A test delivery from Sigil.",
        });
        let txn = self.db.begin().await?;
        let event = outbox::enqueue_for(&txn, tenant, Some(id), events::WEBHOOK_TEST, data).await?;
        let now = sigil_core::now();
        outbox::entity::Entity::update_many()
            .col_expr(
                outbox::entity::Column::DispatchedAt,
                sea_orm::sea_query::Expr::value(Some(now)),
            )
            .filter(outbox::entity::Column::Id.eq(event))
            .exec(&txn)
            .await?;
        let model = new_delivery(tenant, id, event, events::WEBHOOK_TEST, now)
            .insert(&txn)
            .await?;
        let audit = actor
            .event("webhook.test", "webhook")
            .in_tenant(tenant)
            .target(id)
            .after(serde_json::json!({"delivery_id": model.id}));
        sigil_audit::write(&txn, audit).await?;
        txn.commit().await?;
        Ok(Delivery::from_model(&model, None))
    }

    /// One page of an endpoint's deliveries, newest first.
    pub async fn deliveries(
        &self,
        tenant: TenantId,
        id: Uuid,
        status: Option<DeliveryStatus>,
        page: PageRequest,
    ) -> Result<Page<Delivery>> {
        self.model(tenant, id).await?;
        let mut query =
            delivery::Entity::find_in(tenant).filter(delivery::Column::EndpointId.eq(id));
        if let Some(status) = status {
            query = query.filter(delivery::Column::Status.eq(status.as_str()));
        }
        let total = query.clone().count(&self.db).await?;
        let rows = query
            .order_by_desc(delivery::Column::CreatedAt)
            .order_by_desc(delivery::Column::Id)
            .offset(page.offset)
            .limit(page.limit)
            .all(&self.db)
            .await?;
        let events: Vec<Uuid> = rows.iter().map(|r| r.event_id).collect();
        let payloads: std::collections::HashMap<Uuid, serde_json::Value> =
            outbox::entity::Entity::find()
                .filter(outbox::entity::Column::TenantId.eq(tenant))
                .filter(outbox::entity::Column::Id.is_in(events))
                .all(&self.db)
                .await?
                .into_iter()
                .filter_map(|e| serde_json::from_str(&e.payload).ok().map(|p| (e.id, p)))
                .collect();
        let items = rows
            .iter()
            .map(|r| Delivery::from_model(r, payloads.get(&r.event_id).cloned()))
            .collect();
        Ok(Page { items, total })
    }
}

async fn model(conn: &impl ConnectionTrait, tenant: TenantId, id: Uuid) -> Result<endpoint::Model> {
    endpoint::Entity::find_by_id_in(tenant, id)
        .one(conn)
        .await?
        .ok_or_else(|| Error::not_found("webhook"))
}

/// A new pending delivery, due now.
pub(crate) fn new_delivery(
    tenant: TenantId,
    endpoint: Uuid,
    event: Uuid,
    event_type: &str,
    now: DateTime<Utc>,
) -> delivery::ActiveModel {
    delivery::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(tenant),
        endpoint_id: Set(endpoint),
        event_id: Set(event),
        event_type: Set(event_type.to_owned()),
        status: Set(DeliveryStatus::Pending.as_str().to_owned()),
        attempts: Set(0),
        next_attempt_at: Set(Some(now)),
        last_attempt_at: Set(None),
        last_status_code: Set(None),
        last_error: Set(None),
        lease_until: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
}

#[cfg(test)]
mod tests {
    use sigil_audit::entity as audit;
    use sigil_core::{TokenId, UserId};

    use super::*;

    async fn service() -> WebhookService {
        let db = sigil_core::db::connect("sqlite::memory:", 1).await.unwrap();
        sigil_migrations::migrate(&db).await.unwrap();
        WebhookService::new(db, MasterKey::generate(), false)
    }

    /// An admin of `tenant`, from 192.0.2.7.
    fn admin(tenant: TenantId) -> Actor {
        Actor::user(tenant, UserId::new(), "alice", Some(TokenId::new()))
            .from_client(Some("192.0.2.7".into()), Some("sdk/1".into()))
    }

    fn new_endpoint(url: &str) -> NewEndpoint {
        NewEndpoint {
            url: url.into(),
            description: String::new(),
            event_types: vec![],
            secret: None,
            enabled: true,
        }
    }

    fn is_not_found<T: std::fmt::Debug>(r: Result<T>) -> bool {
        matches!(r, Err(Error::NotFound { what: "webhook" }))
    }

    #[tokio::test]
    async fn another_tenants_endpoint_is_not_found_and_stays_untouched() {
        let hooks = service().await;
        let (owner, stranger) = (TenantId::new(), TenantId::new());
        let (endpoint, _) = hooks
            .create(&admin(owner), owner, new_endpoint("https://a.example/hook"))
            .await
            .unwrap();
        hooks
            .send_test(&admin(owner), owner, endpoint.id)
            .await
            .unwrap();
        let id = endpoint.id;
        assert!(is_not_found(hooks.get(stranger, id).await));
        let patch = EndpointPatch {
            enabled: Some(false),
            rotate_secret: true,
            ..EndpointPatch::default()
        };
        assert!(is_not_found(
            hooks.update(&admin(stranger), stranger, id, patch).await
        ));
        assert!(is_not_found(
            hooks.delete(&admin(stranger), stranger, id).await
        ));
        assert!(is_not_found(
            hooks.send_test(&admin(stranger), stranger, id).await
        ));
        assert!(is_not_found(
            hooks
                .deliveries(stranger, id, None, PageRequest::default())
                .await
        ));
        assert_eq!(
            hooks
                .list(stranger, PageRequest::default())
                .await
                .unwrap()
                .total,
            0
        );
        assert!(hooks.get(owner, id).await.unwrap().enabled);
        let log = hooks
            .deliveries(owner, id, None, PageRequest::default())
            .await
            .unwrap();
        assert_eq!(log.total, 1);
        assert_eq!(log.items[0].event_type, events::WEBHOOK_TEST);
        assert!(log.items[0].payload.is_some());
    }

    #[tokio::test]
    async fn an_update_returns_the_endpoint_before_and_after_with_a_new_secret() {
        let hooks = service().await;
        let tenant = TenantId::new();
        let (endpoint, first_secret) = hooks
            .create(
                &admin(tenant),
                tenant,
                new_endpoint("https://a.example/hook"),
            )
            .await
            .unwrap();
        let patch = EndpointPatch {
            description: Some("billing".into()),
            event_types: Some(vec![
                events::TOKEN_CREATED.into(),
                events::TOKEN_CREATED.into(),
            ]),
            rotate_secret: true,
            ..EndpointPatch::default()
        };
        let changed = hooks
            .update(&admin(tenant), tenant, endpoint.id, patch)
            .await
            .unwrap();
        assert_eq!(changed.before.description, "");
        assert!(changed.before.event_types.is_empty());
        assert_eq!(changed.after.description, "billing");
        assert_eq!(
            changed.after.event_types,
            [events::TOKEN_CREATED],
            "duplicates are dropped"
        );
        assert!(changed.secret.is_some_and(|s| s != first_secret));
        let unchanged = hooks
            .update(
                &admin(tenant),
                tenant,
                endpoint.id,
                EndpointPatch::default(),
            )
            .await
            .unwrap();
        assert!(unchanged.secret.is_none());
        let both = EndpointPatch {
            secret: Some(WebhookSecret::generate().expose()),
            rotate_secret: true,
            ..EndpointPatch::default()
        };
        let refused = hooks
            .update(&admin(tenant), tenant, endpoint.id, both)
            .await;
        assert!(matches!(
            refused,
            Err(Error::Invalid {
                code: "ambiguous_secret",
                ..
            })
        ));
    }

    #[tokio::test]
    async fn deleting_an_endpoint_drops_its_deliveries_only() {
        let hooks = service().await;
        let tenant = TenantId::new();
        let (gone, _) = hooks
            .create(
                &admin(tenant),
                tenant,
                new_endpoint("https://a.example/gone"),
            )
            .await
            .unwrap();
        let (kept, _) = hooks
            .create(
                &admin(tenant),
                tenant,
                new_endpoint("https://a.example/kept"),
            )
            .await
            .unwrap();
        hooks
            .send_test(&admin(tenant), tenant, gone.id)
            .await
            .unwrap();
        hooks
            .send_test(&admin(tenant), tenant, kept.id)
            .await
            .unwrap();
        assert_eq!(
            hooks
                .delete(&admin(tenant), tenant, gone.id)
                .await
                .unwrap()
                .id,
            gone.id
        );
        assert!(is_not_found(hooks.get(tenant, gone.id).await));
        let left = delivery::Entity::find_in(tenant)
            .all(&hooks.db)
            .await
            .unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].endpoint_id, kept.id);
    }

    #[tokio::test]
    async fn the_endpoint_limit_counts_each_tenants_own() {
        let hooks = service().await;
        let (full, other) = (TenantId::new(), TenantId::new());
        for n in 0..MAX_ENDPOINTS {
            let url = format!("https://a.example/{n}");
            hooks
                .create(&admin(full), full, new_endpoint(&url))
                .await
                .unwrap();
        }
        let over = hooks
            .create(&admin(full), full, new_endpoint("https://a.example/over"))
            .await;
        assert!(matches!(
            over,
            Err(Error::Conflict {
                code: "webhook_limit_reached",
                ..
            })
        ));
        assert!(hooks
            .create(&admin(other), other, new_endpoint("https://b.example/1"))
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn unknown_or_internal_event_types_are_refused() {
        let hooks = service().await;
        let tenant = TenantId::new();
        for bad in ["token.nonsense", events::WEBHOOK_TEST] {
            let new = NewEndpoint {
                event_types: vec![bad.into()],
                ..new_endpoint("https://a.example/hook")
            };
            let refused = hooks.create(&admin(tenant), tenant, new).await;
            assert!(
                matches!(
                    refused,
                    Err(Error::Invalid {
                        code: "invalid_event_type",
                        ..
                    })
                ),
                "{bad}"
            );
        }
    }

    /// Every audit event written, oldest first.
    async fn audited(hooks: &WebhookService) -> Vec<audit::Model> {
        audit::Entity::find()
            .order_by_asc(audit::Column::Id)
            .all(&hooks.db)
            .await
            .unwrap()
    }

    fn json(text: &Option<String>) -> serde_json::Value {
        serde_json::from_str(text.as_deref().unwrap()).unwrap()
    }

    /// The fields every event of `actor` carries.
    fn assert_by(e: &audit::Model, actor: &Actor, tenant: TenantId, action: &str, id: Uuid) {
        assert_eq!(e.action, action);
        assert_eq!(e.target_type, "webhook");
        assert_eq!(e.target_id, Some(id.to_string()));
        assert_eq!(e.tenant_id, Some(tenant));
        assert_eq!(e.actor_id, actor.user);
        assert_eq!(e.actor_label, "alice");
        assert_eq!(e.credential_id, actor.credential);
        assert_eq!(e.client_ip.as_deref(), Some("192.0.2.7"));
        assert_eq!(e.user_agent.as_deref(), Some("sdk/1"));
    }

    #[tokio::test]
    async fn each_change_is_one_event_by_its_actor_without_the_secret() {
        let hooks = service().await;
        let tenant = TenantId::new();
        let by = admin(tenant);
        let new = NewEndpoint {
            description: "billing".into(),
            event_types: vec![events::TOKEN_CREATED.into(), events::TOKEN_LEAKED.into()],
            ..new_endpoint("https://a.example/hook")
        };
        let (endpoint, secret) = hooks.create(&by, tenant, new).await.unwrap();
        let id = endpoint.id;
        let view = serde_json::json!({
            "url": "https://a.example/hook", "description": "billing", "enabled": true,
            "event_types": [events::TOKEN_CREATED, events::TOKEN_LEAKED],
        });
        let events = audited(&hooks).await;
        assert_eq!(events.len(), 1, "{events:#?}");
        assert_by(&events[0], &by, tenant, "webhook.create", id);
        assert_eq!(events[0].before, None);
        assert_eq!(json(&events[0].after), view);

        let patch = EndpointPatch {
            enabled: Some(false),
            rotate_secret: true,
            ..EndpointPatch::default()
        };
        let changed = hooks.update(&by, tenant, id, patch).await.unwrap();
        let events = audited(&hooks).await;
        assert_eq!(events.len(), 2, "{events:#?}");
        assert_by(&events[1], &by, tenant, "webhook.update", id);
        assert_eq!(json(&events[1].before), view);
        let mut after = view.clone();
        after["enabled"] = false.into();
        after["secret_replaced"] = true.into();
        assert_eq!(json(&events[1].after), after);
        let unchanged = hooks
            .update(&by, tenant, id, EndpointPatch::default())
            .await
            .unwrap();
        assert!(unchanged.secret.is_none());
        let events = audited(&hooks).await;
        assert_eq!(json(&events[2].after)["secret_replaced"], false);

        let delivery = hooks.send_test(&by, tenant, id).await.unwrap();
        let events = audited(&hooks).await;
        assert_eq!(events.len(), 4, "{events:#?}");
        assert_by(&events[3], &by, tenant, "webhook.test", id);
        assert_eq!(
            json(&events[3].after),
            serde_json::json!({"delivery_id": delivery.id})
        );

        hooks.delete(&by, tenant, id).await.unwrap();
        let events = audited(&hooks).await;
        assert_eq!(events.len(), 5, "{events:#?}");
        assert_by(&events[4], &by, tenant, "webhook.delete", id);
        let mut before = view;
        before["enabled"] = false.into();
        assert_eq!(json(&events[4].before), before);
        assert_eq!(events[4].after, None);

        let secrets = [secret.expose(), changed.secret.unwrap().expose()];
        for e in &events {
            let text = format!("{:?} {:?}", e.before, e.after);
            assert!(secrets.iter().all(|s| !text.contains(s.as_str())), "{text}");
        }
    }

    #[tokio::test]
    async fn a_refused_change_writes_no_event() {
        let hooks = service().await;
        let tenant = TenantId::new();
        let by = admin(tenant);
        let bad = NewEndpoint {
            event_types: vec!["token.nonsense".into()],
            ..new_endpoint("https://a.example/hook")
        };
        assert!(hooks.create(&by, tenant, bad).await.is_err());
        let internal = new_endpoint("http://127.0.0.1/hook");
        assert!(hooks.create(&by, tenant, internal).await.is_err());
        assert!(audited(&hooks).await.is_empty());

        let (endpoint, _) = hooks
            .create(&by, tenant, new_endpoint("https://a.example/hook"))
            .await
            .unwrap();
        let both = EndpointPatch {
            secret: Some(WebhookSecret::generate().expose()),
            rotate_secret: true,
            ..EndpointPatch::default()
        };
        assert!(hooks.update(&by, tenant, endpoint.id, both).await.is_err());
        let long = EndpointPatch {
            description: Some("x".repeat(501)),
            ..EndpointPatch::default()
        };
        assert!(hooks.update(&by, tenant, endpoint.id, long).await.is_err());
        let stranger = TenantId::new();
        let other = admin(stranger);
        assert!(hooks.delete(&other, stranger, endpoint.id).await.is_err());
        assert!(hooks
            .send_test(&other, stranger, endpoint.id)
            .await
            .is_err());
        let unknown = Uuid::now_v7();
        assert!(hooks.delete(&by, tenant, unknown).await.is_err());
        let events = audited(&hooks).await;
        assert_eq!(events.len(), 1, "only the creation: {events:#?}");
        assert_eq!(events[0].action, "webhook.create");
        // The refused transactions were rolled back: the endpoint is as it was.
        assert_eq!(
            hooks.get(tenant, endpoint.id).await.unwrap().description,
            ""
        );
    }
}
