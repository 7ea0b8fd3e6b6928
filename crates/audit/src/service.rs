use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    Select, Set,
};
use sigil_core::db::Db;
use sigil_core::{Error, Result, TenantId, TokenId, UserId};
use tracing::Instrument;
use uuid::Uuid;

use crate::entity;

#[derive(Clone, Debug, Default)]
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

#[derive(Clone, Debug)]
pub struct AuditEvent {
    pub id: Uuid,
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
    pub occurrences: i32,
    pub created_at: DateTime<Utc>,
}

impl From<entity::Model> for AuditEvent {
    fn from(m: entity::Model) -> Self {
        let parse = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
        Self {
            id: m.id,
            tenant: m.tenant_id,
            actor: m.actor_id,
            actor_label: m.actor_label,
            credential: m.credential_id,
            action: m.action,
            target_type: m.target_type,
            target_id: m.target_id,
            before: parse(m.before),
            after: parse(m.after),
            client_ip: m.client_ip,
            user_agent: m.user_agent,
            occurrences: m.occurrences,
            created_at: m.created_at,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub actor: Option<UserId>,
    pub target_id: Option<String>,
    pub action: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Cursor: only events older than this id (ids are time-ordered UUIDv7).
    pub before_id: Option<Uuid>,
    /// Restrict to events whose target is one of these ids.
    pub targets_in: Option<Vec<String>>,
    pub target_type: Option<String>,
    /// A member's view: events about tokens that the member did, or that concern one of
    /// their current tokens.
    pub member: Option<MemberScope>,
    /// Events to skip (after the cursor, when one is given).
    pub offset: u64,
    pub limit: u64,
}

/// What a member may see of the audit log: token events they caused, and events about
/// their own tokens (changes by an admin, refused uses).
#[derive(Clone, Debug, Default)]
pub struct MemberScope {
    pub user: UserId,
    pub tokens: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct RefusalKey {
    tenant: Option<TenantId>,
    token: Option<TokenId>,
    code: &'static str,
    minute: i64,
}

/// Refusal counts and the last client address, per token, reason and minute.
type RefusalTally = HashMap<RefusalKey, (i32, Option<String>)>;

#[derive(Clone)]
pub struct AuditLog {
    db: Db,
    refusals: Arc<Mutex<RefusalTally>>,
}

impl AuditLog {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            refusals: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub async fn record(&self, event: NewEvent) -> Result<()> {
        let to_text = |v: Option<serde_json::Value>| v.map(|v| v.to_string());
        let span = tracing::info_span!("db", op = "audit.record");
        entity::Entity::insert(entity::ActiveModel {
            id: Set(Uuid::now_v7()),
            tenant_id: Set(event.tenant),
            actor_id: Set(event.actor),
            actor_label: Set(event.actor_label.chars().take(200).collect()),
            credential_id: Set(event.credential),
            action: Set(event.action),
            target_type: Set(event.target_type),
            target_id: Set(event.target_id),
            before: Set(to_text(event.before)),
            after: Set(to_text(event.after)),
            client_ip: Set(event.client_ip),
            user_agent: Set(event.user_agent),
            occurrences: Set(1),
            created_at: Set(sigil_core::now()),
        })
        .exec_without_returning(&self.db)
        .instrument(span)
        .await?;
        Ok(())
    }

    /// Counts a refused verification in memory; `flush_refusals` writes one row per token,
    /// reason and minute.
    pub fn note_refusal(
        &self,
        tenant: Option<TenantId>,
        token: Option<TokenId>,
        code: &'static str,
        ip: Option<String>,
    ) {
        let minute = Utc::now().timestamp() / 60;
        if let Ok(mut map) = self.refusals.lock() {
            if map.len() > 100_000 {
                return;
            }
            let slot = map
                .entry(RefusalKey {
                    tenant,
                    token,
                    code,
                    minute,
                })
                .or_insert((0, None));
            slot.0 += 1;
            slot.1 = ip;
        }
    }

    /// Writes the counted refusals: a row already written for the same token, reason and
    /// minute (by an earlier flush) is incremented, so a minute stays one row.
    pub async fn flush_refusals(&self) -> Result<usize> {
        let batch = match self.refusals.lock() {
            Ok(mut map) => std::mem::take(&mut *map),
            Err(_) => return Ok(0),
        };
        let n = batch.len();
        if n == 0 {
            return Ok(0);
        }
        let span = tracing::info_span!("db", op = "audit.flush_refusals", rows = n);
        self.write_refusals(batch).instrument(span).await?;
        Ok(n)
    }

    async fn write_refusals(&self, batch: RefusalTally) -> Result<()> {
        for (key, (count, ip)) in batch {
            let at = DateTime::from_timestamp(key.minute * 60, 0).unwrap_or_else(Utc::now);
            let after = serde_json::json!({ "code": key.code }).to_string();
            let mut update = entity::Entity::update_many()
                .col_expr(
                    entity::Column::Occurrences,
                    Expr::col(entity::Column::Occurrences).add(count),
                )
                .filter(entity::Column::Action.eq("verification.refused"))
                .filter(entity::Column::CreatedAt.eq(at))
                .filter(entity::Column::After.eq(after.clone()))
                .filter(match key.tenant {
                    Some(t) => entity::Column::TenantId.eq(t),
                    None => entity::Column::TenantId.is_null(),
                })
                .filter(match key.token {
                    Some(t) => entity::Column::CredentialId.eq(t),
                    None => entity::Column::CredentialId.is_null(),
                });
            if let Some(ip) = &ip {
                update = update.col_expr(entity::Column::ClientIp, Expr::value(Some(ip.clone())));
            }
            if update.exec(&self.db).await?.rows_affected > 0 {
                continue;
            }
            entity::Entity::insert(entity::ActiveModel {
                id: Set(Uuid::now_v7()),
                tenant_id: Set(key.tenant),
                actor_id: Set(None),
                actor_label: Set("anonymous".into()),
                credential_id: Set(key.token),
                action: Set("verification.refused".into()),
                target_type: Set("token".into()),
                target_id: Set(key.token.map(|t| t.to_string())),
                before: Set(None),
                after: Set(Some(after)),
                client_ip: Set(ip),
                user_agent: Set(None),
                occurrences: Set(count),
                created_at: Set(at),
            })
            .exec_without_returning(&self.db)
            .await?;
        }
        Ok(())
    }

    pub async fn list(
        &self,
        tenant: Option<TenantId>,
        filter: AuditFilter,
    ) -> Result<Vec<AuditEvent>> {
        let mut query = Self::filtered(tenant, &filter);
        if let Some(before) = filter.before_id {
            query = query.filter(entity::Column::Id.lt(before));
        }
        let rows = query
            .order_by_desc(entity::Column::Id)
            .offset(filter.offset)
            .limit(filter.limit.clamp(1, 200))
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(AuditEvent::from).collect())
    }

    /// How many events match the filter, whatever the cursor, offset and limit.
    pub async fn count(&self, tenant: Option<TenantId>, filter: &AuditFilter) -> Result<u64> {
        Ok(Self::filtered(tenant, filter).count(&self.db).await?)
    }

    /// The events of `tenant` (all with `None`) that match `filter`, cursor aside.
    fn filtered(tenant: Option<TenantId>, filter: &AuditFilter) -> Select<entity::Entity> {
        let mut query = entity::Entity::find();
        if let Some(t) = tenant {
            query = query.filter(entity::Column::TenantId.eq(t));
        }
        if let Some(actor) = filter.actor {
            query = query.filter(entity::Column::ActorId.eq(actor));
        }
        if let Some(target) = &filter.target_id {
            query = query.filter(entity::Column::TargetId.eq(target.clone()));
        }
        if let Some(action) = &filter.action {
            query = query.filter(entity::Column::Action.eq(action.clone()));
        }
        if let Some(since) = filter.since {
            query = query.filter(entity::Column::CreatedAt.gte(since));
        }
        if let Some(until) = filter.until {
            query = query.filter(entity::Column::CreatedAt.lt(until));
        }
        if let Some(targets) = &filter.targets_in {
            query = query.filter(
                Condition::all().add(entity::Column::TargetId.is_in(targets.iter().cloned())),
            );
        }
        if let Some(target_type) = &filter.target_type {
            query = query.filter(entity::Column::TargetType.eq(target_type.clone()));
        }
        if let Some(member) = &filter.member {
            let mut mine = Condition::any().add(entity::Column::ActorId.eq(member.user));
            if !member.tokens.is_empty() {
                mine = mine.add(entity::Column::TargetId.is_in(member.tokens.iter().cloned()));
            }
            query = query
                .filter(entity::Column::TargetType.eq("token"))
                .filter(mine);
        }
        query
    }

    /// Deletes events older than the retention period.
    pub async fn prune(&self, retention_days: u32) -> Result<u64> {
        let cutoff = Utc::now() - TimeDelta::days(i64::from(retention_days));
        let cutoff = cutoff
            .duration_trunc(TimeDelta::seconds(1))
            .map_err(Error::internal)?;
        let res = entity::Entity::delete_many()
            .filter(entity::Column::CreatedAt.lt(cutoff))
            .exec(&self.db)
            .await?;
        Ok(res.rows_affected)
    }
}
