use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::types::Any;
use poem_openapi::{ApiResponse, Object, OpenApi};
use sigil_audit::{AuditFilter, MemberScope};
use sigil_core::page::PageRequest;
use sigil_core::{Error, TenantId, UserId};
use sigil_token::{Caller, Principal, TokenFilter};
use sigil_user::Role;
use uuid::Uuid;

use super::caller::AnyCaller;
use super::ApiTags;
use crate::problem::ApiResult;
use crate::state::AppState;

pub struct AuditApi(pub Arc<AppState>);

#[derive(Object)]
pub struct AuditEventDto {
    pub id: Uuid,
    pub tenant_id: Option<Uuid>,
    pub actor_id: Option<Uuid>,
    pub actor: String,
    /// The token the actor used.
    pub credential_id: Option<Uuid>,
    pub action: String,
    pub target_type: String,
    pub target_id: Option<String>,
    pub before: Option<Any<serde_json::Value>>,
    pub after: Option<Any<serde_json::Value>>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    /// How many identical events this row stands for (refusals are aggregated per minute).
    pub occurrences: i32,
    pub created_at: DateTime<Utc>,
}

/// One page of audit events: the list envelope every list operation answers, plus a
/// cursor.
#[derive(Object)]
pub struct AuditPage {
    /// This page's items.
    pub items: Vec<AuditEventDto>,
    /// How many events match the filters, over all pages (the cursor is a position, not a
    /// filter: it does not change the count).
    pub total: u64,
    /// How many events this page skipped (after the cursor, when one was given).
    pub offset: u64,
    /// The largest number of items a page holds.
    pub limit: u64,
    /// Pass as `cursor` (with no `offset`) to get the next, older events; absent on the last
    /// page.
    pub next_cursor: Option<Uuid>,
}

#[derive(ApiResponse)]
pub enum AuditResponse {
    #[oai(status = 200)]
    Ok(Json<AuditPage>),
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Audit")]
impl AuditApi {
    /// Audit events, newest first. Admins see their tenant's events (including what the
    /// operator did to the tenant), token managers the events about tokens, members the
    /// events about their own tokens; the platform operator sees every event, or one
    /// tenant's with `tenant_id`.
    #[oai(
        path = "/audit-events",
        method = "get",
        operation_id = "listAuditEvents"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        any: AnyCaller,
        actor_id: Query<Option<Uuid>>,
        target_id: Query<Option<String>>,
        action: Query<Option<String>>,
        /// Events at or after this time.
        since: Query<Option<DateTime<Utc>>>,
        /// Events before this time.
        until: Query<Option<DateTime<Utc>>>,
        /// The tenant whose events to list (the platform operator); a tenant user may only
        /// name their own tenant.
        tenant_id: Query<Option<Uuid>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<Uuid>>,
        /// Matching items to skip.
        #[oai(validator(minimum(value = "0"), maximum(value = "1000000")))]
        offset: Query<Option<u64>>,
        /// Items per page (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u64>>,
    ) -> ApiResult<AuditResponse> {
        let caller = any.0;
        let page = PageRequest::new(offset.0, limit.0)?;
        let mut filter = AuditFilter {
            actor: actor_id.0.map(UserId),
            target_id: target_id.0,
            action: action.0,
            since: since.0,
            until: until.0,
            before_id: cursor.0,
            offset: page.offset,
            limit: page.limit,
            ..AuditFilter::default()
        };
        let tenant = match caller {
            Caller::Operator => tenant_id.0.map(TenantId),
            Caller::Tenant(p) => {
                if tenant_id.0.is_some_and(|t| t != p.tenant_id.0) {
                    return Err(Error::forbidden(
                        "operator_only",
                        "only the platform operator reads another tenant's audit events",
                    )
                    .into());
                }
                match p.role {
                    Role::Admin => {}
                    Role::TokenManager => filter.target_type = Some("token".into()),
                    Role::Member => {
                        filter.member = Some(MemberScope {
                            user: p.user_id,
                            tokens: self.own_tokens(&p).await?,
                        })
                    }
                }
                Some(p.tenant_id)
            }
        };
        let total = self.0.audit.count(tenant, &filter).await?;
        let events = self.0.audit.list(tenant, filter).await?;
        let next_cursor = (events.len() as u64 == page.limit)
            .then(|| events.last().map(|e| e.id))
            .flatten();
        let items = events
            .into_iter()
            .map(|e| AuditEventDto {
                id: e.id,
                tenant_id: e.tenant.map(|t| t.0),
                actor_id: e.actor.map(|a| a.0),
                actor: e.actor_label,
                credential_id: e.credential.map(|c| c.0),
                action: e.action,
                target_type: e.target_type,
                target_id: e.target_id,
                before: e.before.map(Any),
                after: e.after.map(Any),
                client_ip: e.client_ip,
                user_agent: e.user_agent,
                occurrences: e.occurrences,
                created_at: e.created_at,
            })
            .collect();
        Ok(AuditResponse::Ok(Json(AuditPage {
            items,
            total,
            offset: page.offset,
            limit: page.limit,
            next_cursor,
        })))
    }
}

impl AuditApi {
    /// Ids of every token the member owns now.
    async fn own_tokens(&self, p: &Principal) -> ApiResult<Vec<String>> {
        let mut ids = Vec::new();
        let mut offset = 0;
        loop {
            let page = self
                .0
                .tokens
                .list(
                    p,
                    TokenFilter {
                        owner: Some(p.user_id),
                        ..TokenFilter::default()
                    },
                    PageRequest::new(Some(offset), Some(200))?,
                )
                .await?;
            let n = page.items.len() as u64;
            ids.extend(page.items.iter().map(|t| t.id.to_string()));
            if n < 200 {
                return Ok(ids);
            }
            offset += n;
        }
    }
}
