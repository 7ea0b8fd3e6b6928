//! Webhook endpoints of the caller's tenant (admins): register, list, change, delete,
//! send a test delivery, read the delivery log. Each delivery is signed with the endpoint's
//! secret per Standard Webhooks; the secret is shown once (when created or replaced).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use sigil_core::outbox::events;
use sigil_core::page::PageRequest;
use sigil_webhook::{Delivery, DeliveryStatus, Endpoint, EndpointPatch, NewEndpoint};
use uuid::Uuid;

use super::caller::TenantCaller;
use super::ApiTags;
use crate::problem::ApiResult;
use crate::state::AppState;

pub struct WebhooksApi(pub Arc<AppState>);

/// An event a webhook endpoint can subscribe to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
pub enum WebhookEventType {
    #[oai(rename = "token.created")]
    TokenCreated,
    #[oai(rename = "token.updated")]
    TokenUpdated,
    #[oai(rename = "token.regenerated")]
    TokenRegenerated,
    #[oai(rename = "token.deleted")]
    TokenDeleted,
    #[oai(rename = "token.revoked")]
    TokenRevoked,
    #[oai(rename = "token.leaked")]
    TokenLeaked,
    #[oai(rename = "token.reuse_detected")]
    TokenReuseDetected,
    #[oai(rename = "token.expiring")]
    TokenExpiring,
    #[oai(rename = "token.expired")]
    TokenExpired,
    #[oai(rename = "token.new_ip")]
    TokenNewIp,
    #[oai(rename = "user.deactivated")]
    UserDeactivated,
}

const EVENT_TYPES: [(WebhookEventType, &str); 11] = [
    (WebhookEventType::TokenCreated, events::TOKEN_CREATED),
    (WebhookEventType::TokenUpdated, events::TOKEN_UPDATED),
    (
        WebhookEventType::TokenRegenerated,
        events::TOKEN_REGENERATED,
    ),
    (WebhookEventType::TokenDeleted, events::TOKEN_DELETED),
    (WebhookEventType::TokenRevoked, events::TOKEN_REVOKED),
    (WebhookEventType::TokenLeaked, events::TOKEN_LEAKED),
    (
        WebhookEventType::TokenReuseDetected,
        events::TOKEN_REUSE_DETECTED,
    ),
    (WebhookEventType::TokenExpiring, events::TOKEN_EXPIRING),
    (WebhookEventType::TokenExpired, events::TOKEN_EXPIRED),
    (WebhookEventType::TokenNewIp, events::TOKEN_NEW_IP),
    (WebhookEventType::UserDeactivated, events::USER_DEACTIVATED),
];

fn type_name(t: WebhookEventType) -> String {
    EVENT_TYPES
        .iter()
        .find(|(k, _)| *k == t)
        .map(|(_, n)| (*n).to_owned())
        .unwrap_or_default()
}

fn type_of(name: &str) -> Option<WebhookEventType> {
    EVENT_TYPES
        .iter()
        .find(|(_, n)| *n == name)
        .map(|(k, _)| *k)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum DeliveryStatusDto {
    /// Waiting for its first attempt or a retry.
    Pending,
    /// The endpoint answered 2xx.
    Succeeded,
    /// Every attempt of the retry schedule failed (or the endpoint went away).
    Failed,
}

impl From<DeliveryStatus> for DeliveryStatusDto {
    fn from(s: DeliveryStatus) -> Self {
        match s {
            DeliveryStatus::Pending => Self::Pending,
            DeliveryStatus::Succeeded => Self::Succeeded,
            DeliveryStatus::Failed => Self::Failed,
        }
    }
}

impl From<DeliveryStatusDto> for DeliveryStatus {
    fn from(s: DeliveryStatusDto) -> Self {
        match s {
            DeliveryStatusDto::Pending => Self::Pending,
            DeliveryStatusDto::Succeeded => Self::Succeeded,
            DeliveryStatusDto::Failed => Self::Failed,
        }
    }
}

/// A webhook endpoint (never its secret).
#[derive(Object)]
pub struct WebhookDto {
    pub id: Uuid,
    pub url: String,
    pub description: String,
    /// The events sent to it; empty: every event.
    pub event_types: Vec<WebhookEventType>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Endpoint> for WebhookDto {
    fn from(e: &Endpoint) -> Self {
        Self {
            id: e.id,
            url: e.url.clone(),
            description: e.description.clone(),
            event_types: e.event_types.iter().filter_map(|t| type_of(t)).collect(),
            enabled: e.enabled,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// A new endpoint and its signing secret, shown this once.
#[derive(Object)]
pub struct CreatedWebhookDto {
    pub webhook: WebhookDto,
    /// `whsec_<base64>`: the key of the deliveries' HMAC-SHA256 signatures. Store it now.
    pub secret: String,
}

/// An endpoint after a change; `secret` only when it was replaced.
#[derive(Object)]
pub struct UpdatedWebhookDto {
    pub webhook: WebhookDto,
    #[oai(skip_serializing_if_is_none)]
    pub secret: Option<String>,
}

#[derive(Object)]
pub struct CreateWebhookBody {
    /// Where deliveries are POSTed (http or https; internal addresses are refused unless
    /// the operator allows them).
    #[oai(validator(min_length = 1, max_length = 2000))]
    pub url: String,
    #[oai(validator(max_length = 500))]
    pub description: Option<String>,
    /// The events to send; absent or empty: every event.
    #[oai(validator(max_items = 20))]
    pub event_types: Option<Vec<WebhookEventType>>,
    /// Your own secret (`whsec_` + base64 of 24 to 64 random bytes); absent: one is made.
    #[oai(validator(max_length = 200))]
    pub secret: Option<String>,
    /// Default true.
    pub enabled: Option<bool>,
}

#[derive(Object)]
pub struct UpdateWebhookBody {
    #[oai(validator(min_length = 1, max_length = 2000))]
    pub url: Option<String>,
    #[oai(validator(max_length = 500))]
    pub description: Option<String>,
    /// The events to send; empty: every event.
    #[oai(validator(max_items = 20))]
    pub event_types: Option<Vec<WebhookEventType>>,
    pub enabled: Option<bool>,
    /// A new secret of your own (`whsec_...`).
    #[oai(validator(max_length = 200))]
    pub secret: Option<String>,
    /// True: replace the secret by a new one (in the answer).
    pub rotate_secret: Option<bool>,
}

/// One event's delivery to one endpoint.
#[derive(Object)]
pub struct WebhookDeliveryDto {
    pub id: Uuid,
    pub webhook_id: Uuid,
    pub event_id: Uuid,
    /// The `webhook-id` header of every attempt (the same for retries: deduplicate on it).
    pub message_id: String,
    pub event_type: String,
    pub status: DeliveryStatusDto,
    /// Attempts made so far.
    pub attempts: i32,
    /// When the next attempt is due (pending deliveries).
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// The HTTP status of the last answer, if there was one.
    pub last_response_code: Option<i32>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The body sent: `{"type", "timestamp", "data"}`.
    pub payload: Option<serde_json::Value>,
}

impl From<&Delivery> for WebhookDeliveryDto {
    fn from(d: &Delivery) -> Self {
        Self {
            id: d.id,
            webhook_id: d.endpoint_id,
            event_id: d.event_id,
            message_id: sigil_webhook::endpoints::message_id(d.event_id),
            event_type: d.event_type.clone(),
            status: d.status.into(),
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at,
            last_attempt_at: d.last_attempt_at,
            last_response_code: d.last_status_code,
            last_error: d.last_error.clone(),
            created_at: d.created_at,
            payload: d.payload.clone(),
        }
    }
}

super::dto::list_envelope!(
    /// One page of webhook endpoints.
    WebhookList,
    WebhookDto
);

super::dto::list_envelope!(
    /// One page of an endpoint's deliveries, newest first.
    WebhookDeliveryList,
    WebhookDeliveryDto
);

#[derive(ApiResponse)]
pub enum CreatedResponse {
    #[oai(status = 201)]
    Created(Json<CreatedWebhookDto>),
}

#[derive(ApiResponse)]
pub enum WebhookResponse {
    #[oai(status = 200)]
    Ok(Json<WebhookDto>),
}

#[derive(ApiResponse)]
pub enum UpdatedResponse {
    #[oai(status = 200)]
    Ok(Json<UpdatedWebhookDto>),
}

#[derive(ApiResponse)]
pub enum ListResponse {
    #[oai(status = 200)]
    Ok(Json<WebhookList>),
}

#[derive(ApiResponse)]
pub enum DeletedResponse {
    #[oai(status = 204)]
    Deleted,
}

#[derive(ApiResponse)]
pub enum TestResponse {
    /// Queued: the delivery log shows its outcome.
    #[oai(status = 202)]
    Accepted(Json<WebhookDeliveryDto>),
}

#[derive(ApiResponse)]
pub enum DeliveriesResponse {
    #[oai(status = 200)]
    Ok(Json<WebhookDeliveryList>),
}

fn names(types: Option<Vec<WebhookEventType>>) -> Option<Vec<String>> {
    types.map(|t| t.into_iter().map(type_name).collect())
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Webhooks")]
impl WebhooksApi {
    /// Register a webhook endpoint; the answer holds its signing secret, shown this once.
    #[oai(path = "/webhooks", method = "post", operation_id = "createWebhook")]
    async fn create_webhook(
        &self,
        req: &Request,
        caller: TenantCaller,
        body: Json<CreateWebhookBody>,
    ) -> ApiResult<CreatedResponse> {
        let p = caller.0;
        let b = body.0;
        let actor = self.0.actor(req, Some(&p));
        let (endpoint, secret) = self
            .0
            .webhooks
            .create(
                &actor,
                p.tenant_id,
                NewEndpoint {
                    url: b.url,
                    description: b.description.unwrap_or_default(),
                    event_types: names(b.event_types).unwrap_or_default(),
                    secret: b.secret,
                    enabled: b.enabled.unwrap_or(true),
                },
            )
            .await?;
        Ok(CreatedResponse::Created(Json(CreatedWebhookDto {
            webhook: WebhookDto::from(&endpoint),
            secret: secret.expose(),
        })))
    }

    /// The tenant's webhook endpoints.
    #[oai(path = "/webhooks", method = "get", operation_id = "listWebhooks")]
    async fn list_webhooks(
        &self,
        caller: TenantCaller,
        /// Matching items to skip.
        #[oai(validator(minimum(value = "0"), maximum(value = "1000000")))]
        offset: Query<Option<u64>>,
        /// Items per page (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u64>>,
    ) -> ApiResult<ListResponse> {
        let p = caller.0;
        let page = PageRequest::new(offset.0, limit.0)?;
        let found = self.0.webhooks.list(p.tenant_id, page).await?;
        Ok(ListResponse::Ok(Json(WebhookList::new(
            found.items.iter().map(WebhookDto::from).collect(),
            found.total,
            page,
        ))))
    }

    /// One webhook endpoint.
    #[oai(
        path = "/webhooks/:webhook_id",
        method = "get",
        operation_id = "getWebhook"
    )]
    async fn get_webhook(
        &self,
        caller: TenantCaller,
        webhook_id: Path<Uuid>,
    ) -> ApiResult<WebhookResponse> {
        let p = caller.0;
        let endpoint = self.0.webhooks.get(p.tenant_id, webhook_id.0).await?;
        Ok(WebhookResponse::Ok(Json(WebhookDto::from(&endpoint))))
    }

    /// Change an endpoint's URL, description, events, enabled flag or secret.
    #[oai(
        path = "/webhooks/:webhook_id",
        method = "patch",
        operation_id = "updateWebhook"
    )]
    async fn update_webhook(
        &self,
        req: &Request,
        caller: TenantCaller,
        webhook_id: Path<Uuid>,
        body: Json<UpdateWebhookBody>,
    ) -> ApiResult<UpdatedResponse> {
        let p = caller.0;
        let b = body.0;
        let generated = b.rotate_secret == Some(true);
        let actor = self.0.actor(req, Some(&p));
        let changed = self
            .0
            .webhooks
            .update(
                &actor,
                p.tenant_id,
                webhook_id.0,
                EndpointPatch {
                    url: b.url,
                    description: b.description,
                    event_types: names(b.event_types),
                    enabled: b.enabled,
                    secret: b.secret,
                    rotate_secret: b.rotate_secret.unwrap_or(false),
                },
            )
            .await?;
        Ok(UpdatedResponse::Ok(Json(UpdatedWebhookDto {
            webhook: WebhookDto::from(&changed.after),
            // A generated secret is shown; one the admin gave is not echoed back.
            secret: changed.secret.filter(|_| generated).map(|s| s.expose()),
        })))
    }

    /// Delete an endpoint and its delivery log; pending deliveries to it are dropped.
    #[oai(
        path = "/webhooks/:webhook_id",
        method = "delete",
        operation_id = "deleteWebhook"
    )]
    async fn delete_webhook(
        &self,
        req: &Request,
        caller: TenantCaller,
        webhook_id: Path<Uuid>,
    ) -> ApiResult<DeletedResponse> {
        let p = caller.0;
        let actor = self.0.actor(req, Some(&p));
        self.0
            .webhooks
            .delete(&actor, p.tenant_id, webhook_id.0)
            .await?;
        Ok(DeletedResponse::Deleted)
    }

    /// Queue a `webhook.test` delivery to this endpoint (whatever its event filter).
    #[oai(
        path = "/webhooks/:webhook_id/test",
        method = "post",
        operation_id = "sendTestWebhook"
    )]
    async fn send_test_webhook(
        &self,
        req: &Request,
        caller: TenantCaller,
        webhook_id: Path<Uuid>,
    ) -> ApiResult<TestResponse> {
        let p = caller.0;
        let actor = self.0.actor(req, Some(&p));
        let delivery = self
            .0
            .webhooks
            .send_test(&actor, p.tenant_id, webhook_id.0)
            .await?;
        Ok(TestResponse::Accepted(Json(WebhookDeliveryDto::from(
            &delivery,
        ))))
    }

    /// The delivery log of an endpoint: status, attempts, last response code, next attempt.
    #[oai(
        path = "/webhooks/:webhook_id/deliveries",
        method = "get",
        operation_id = "listWebhookDeliveries"
    )]
    async fn list_webhook_deliveries(
        &self,
        caller: TenantCaller,
        webhook_id: Path<Uuid>,
        status: Query<Option<DeliveryStatusDto>>,
        /// Matching items to skip.
        #[oai(validator(minimum(value = "0"), maximum(value = "1000000")))]
        offset: Query<Option<u64>>,
        /// Items per page (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u64>>,
    ) -> ApiResult<DeliveriesResponse> {
        let p = caller.0;
        let page = PageRequest::new(offset.0, limit.0)?;
        let found = self
            .0
            .webhooks
            .deliveries(p.tenant_id, webhook_id.0, status.0.map(Into::into), page)
            .await?;
        Ok(DeliveriesResponse::Ok(Json(WebhookDeliveryList::new(
            found.items.iter().map(WebhookDeliveryDto::from).collect(),
            found.total,
            page,
        ))))
    }
}
