use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Select, Set,
};
use sigil_core::db::Db;
use sigil_core::{Error, Result, TenantId, TenantOwned, TokenId, UserId};
use tracing::Instrument;
use uuid::Uuid;

use crate::entity;
use crate::event::NewEvent;

/// Writes `event` on `conn`: a use case passes its transaction, so its change and its
/// audit event commit together or not at all.
pub async fn write(conn: &impl ConnectionTrait, event: NewEvent) -> Result<()> {
    let to_text = |v: Option<serde_json::Value>| v.map(|v| v.to_string());
    let span = tracing::debug_span!("db", op = "audit.record");
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
    .exec_without_returning(conn)
    .instrument(span)
    .await?;
    Ok(())
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

    /// Writes an event on its own (events of a use case are written by [`write`] in the
    /// use case's transaction).
    pub async fn record(&self, event: NewEvent) -> Result<()> {
        write(&self.db, event).await
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
        self.note_refusal_at(tenant, token, code, ip, Utc::now());
    }

    /// Counts a refusal that happened at `at` in the tally of its minute.
    fn note_refusal_at(
        &self,
        tenant: Option<TenantId>,
        token: Option<TokenId>,
        code: &'static str,
        ip: Option<String>,
        at: DateTime<Utc>,
    ) {
        let minute = at.timestamp() / 60;
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
        let span = tracing::debug_span!("db", op = "audit.flush_refusals", rows = n);
        self.write_refusals(batch).instrument(span).await?;
        Ok(n)
    }

    async fn write_refusals(&self, batch: RefusalTally) -> Result<()> {
        for (key, (count, ip)) in batch {
            let at = DateTime::from_timestamp(key.minute * 60, 0).unwrap_or_else(Utc::now);
            let after = serde_json::json!({ "code": key.code }).to_string();
            let in_tenant = match key.tenant {
                Some(t) => entity::Entity::update_many_in(t),
                None => entity::Entity::update_many().filter(entity::Column::TenantId.is_null()),
            };
            let mut update = in_tenant
                .col_expr(
                    entity::Column::Occurrences,
                    Expr::col(entity::Column::Occurrences).add(count),
                )
                .filter(entity::Column::Action.eq("verification.refused"))
                .filter(entity::Column::CreatedAt.eq(at))
                .filter(entity::Column::After.eq(after.clone()))
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
        let mut query = match tenant {
            Some(t) => entity::Entity::find_in(t),
            // The operator's view: every tenant's events and the platform's own.
            None => entity::Entity::find(),
        };
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    async fn log() -> AuditLog {
        let db = sigil_core::db::connect("sqlite::memory:", 1).await.unwrap();
        sigil_migrations::migrate(&db).await.unwrap();
        AuditLog::new(db)
    }

    fn all() -> AuditFilter {
        AuditFilter {
            limit: 200,
            ..AuditFilter::default()
        }
    }

    fn refused() -> AuditFilter {
        AuditFilter {
            action: Some("verification.refused".into()),
            ..all()
        }
    }

    /// The first second of a whole minute, `n` minutes into some day.
    fn minute(n: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_040 + n * 60, 0).unwrap()
    }

    /// Stores an event that happened at `at` (`record` stamps the current time).
    async fn stored_at(log: &AuditLog, tenant: Option<TenantId>, action: &str, at: DateTime<Utc>) {
        entity::Entity::insert(entity::ActiveModel {
            id: Set(Uuid::now_v7()),
            tenant_id: Set(tenant),
            actor_id: Set(None),
            actor_label: Set("operator".into()),
            credential_id: Set(None),
            action: Set(action.into()),
            target_type: Set("tenant".into()),
            target_id: Set(None),
            before: Set(None),
            after: Set(None),
            client_ip: Set(None),
            user_agent: Set(None),
            occurrences: Set(1),
            created_at: Set(at),
        })
        .exec_without_returning(&log.db)
        .await
        .unwrap();
    }

    fn actions(events: &[AuditEvent]) -> Vec<&str> {
        events.iter().map(|e| e.action.as_str()).collect()
    }

    #[tokio::test]
    async fn refusals_of_one_token_reason_and_minute_are_one_row() {
        let log = log().await;
        let (tenant, token) = (TenantId::new(), TokenId::new());
        for ip in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
            log.note_refusal_at(
                Some(tenant),
                Some(token),
                "token_expired",
                Some(ip.into()),
                minute(0) + TimeDelta::seconds(7),
            );
        }
        assert_eq!(log.flush_refusals().await.unwrap(), 1);
        let rows = log.list(Some(tenant), refused()).await.unwrap();
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert_eq!(row.occurrences, 3);
        assert_eq!(
            row.client_ip.as_deref(),
            Some("192.0.2.3"),
            "the last address is kept"
        );
        assert_eq!(row.created_at, minute(0));
        assert_eq!(row.credential, Some(token));
        assert_eq!(row.target_id, Some(token.to_string()));
        assert_eq!(row.target_type, "token");
        assert_eq!(row.actor_label, "anonymous");
        assert_eq!(row.after, Some(json!({"code": "token_expired"})));
        assert_eq!(
            log.flush_refusals().await.unwrap(),
            0,
            "the tally was emptied"
        );
    }

    #[tokio::test]
    async fn each_token_reason_and_minute_has_its_own_row() {
        let log = log().await;
        let tenant = Some(TenantId::new());
        let (a, b) = (Some(TokenId::new()), Some(TokenId::new()));
        log.note_refusal_at(tenant, a, "token_expired", None, minute(0));
        log.note_refusal_at(tenant, a, "token_revoked", None, minute(0));
        log.note_refusal_at(tenant, b, "token_expired", None, minute(0));
        log.note_refusal_at(tenant, a, "token_expired", None, minute(1));
        log.note_refusal_at(
            tenant,
            a,
            "token_expired",
            None,
            minute(1) + TimeDelta::seconds(59),
        );
        assert_eq!(log.flush_refusals().await.unwrap(), 4);
        let rows = log.list(tenant, refused()).await.unwrap();
        let mut seen: Vec<(Option<TokenId>, String, i64, i32)> = rows
            .iter()
            .map(|r| {
                let code = r.after.as_ref().unwrap()["code"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                (r.credential, code, r.created_at.timestamp(), r.occurrences)
            })
            .collect();
        seen.sort_by_key(|r| (r.2, r.1.clone(), r.0.map(|t| t.0)));
        let mut expected = vec![
            (a, "token_expired".to_owned(), minute(0).timestamp(), 1),
            (b, "token_expired".to_owned(), minute(0).timestamp(), 1),
            (a, "token_revoked".to_owned(), minute(0).timestamp(), 1),
            (a, "token_expired".to_owned(), minute(1).timestamp(), 2),
        ];
        expected.sort_by_key(|r| (r.2, r.1.clone(), r.0.map(|t| t.0)));
        assert_eq!(seen, expected);
    }

    #[tokio::test]
    async fn a_later_flush_adds_to_the_minute_already_written() {
        let log = log().await;
        let (tenant, token) = (Some(TenantId::new()), Some(TokenId::new()));
        log.note_refusal_at(tenant, token, "token_expired", None, minute(0));
        log.note_refusal_at(
            tenant,
            token,
            "token_expired",
            Some("192.0.2.1".into()),
            minute(0),
        );
        log.flush_refusals().await.unwrap();
        log.note_refusal_at(
            tenant,
            token,
            "token_expired",
            None,
            minute(0) + TimeDelta::seconds(30),
        );
        log.flush_refusals().await.unwrap();
        let rows = log.list(tenant, refused()).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].occurrences, 3);
        // A flush that saw no address leaves the stored one.
        assert_eq!(rows[0].client_ip.as_deref(), Some("192.0.2.1"));
        log.note_refusal_at(
            tenant,
            token,
            "token_expired",
            Some("192.0.2.9".into()),
            minute(0),
        );
        log.flush_refusals().await.unwrap();
        let rows = log.list(tenant, refused()).await.unwrap();
        assert_eq!(
            (rows[0].occurrences, rows[0].client_ip.as_deref()),
            (4, Some("192.0.2.9"))
        );
    }

    #[tokio::test]
    async fn refusals_without_a_tenant_stay_apart_from_a_tenants() {
        let log = log().await;
        let tenant = TenantId::new();
        // A credential that names no tenant, then one of `tenant` (neither names a token).
        log.note_refusal_at(None, None, "token_malformed", None, minute(0));
        log.flush_refusals().await.unwrap();
        log.note_refusal_at(Some(tenant), None, "token_malformed", None, minute(0));
        log.note_refusal_at(Some(tenant), None, "token_malformed", None, minute(0));
        log.flush_refusals().await.unwrap();
        log.note_refusal_at(None, None, "token_malformed", None, minute(0));
        log.flush_refusals().await.unwrap();
        let mine = log.list(Some(tenant), refused()).await.unwrap();
        assert_eq!(mine.len(), 1);
        assert_eq!((mine[0].tenant, mine[0].occurrences), (Some(tenant), 2));
        let everyone = log.list(None, refused()).await.unwrap();
        let platform: Vec<_> = everyone.iter().filter(|e| e.tenant.is_none()).collect();
        assert_eq!(platform.len(), 1);
        assert_eq!(platform[0].occurrences, 2);
        assert_eq!(platform[0].target_id, None);
    }

    #[tokio::test]
    async fn a_flood_of_distinct_refusals_is_bounded_in_memory() {
        let log = log().await;
        let tenant = Some(TenantId::new());
        for n in 0..100_010 {
            log.note_refusal_at(tenant, None, "token_malformed", None, minute(n));
        }
        let held = log.refusals.lock().unwrap().len();
        assert!(held <= 100_001, "the tally holds {held} entries");
    }

    #[tokio::test]
    async fn a_recorded_event_keeps_its_facts_and_views() {
        let log = log().await;
        let (tenant, user, token) = (TenantId::new(), UserId::new(), TokenId::new());
        let event = crate::Actor::user(tenant, user, &"a".repeat(250), Some(token))
            .from_client(Some("192.0.2.4".into()), Some("curl/8".into()))
            .event("token.update", "token")
            .target("t1")
            .before(json!({"name": "old"}))
            .after(json!({"name": "new", "scopes": ["me.get"]}));
        log.record(event).await.unwrap();
        let rows = log.list(Some(tenant), all()).await.unwrap();
        assert_eq!(rows.len(), 1);
        let e = &rows[0];
        assert_eq!(
            e.actor_label.chars().count(),
            200,
            "the label is cut to 200 characters"
        );
        assert_eq!((e.actor, e.credential), (Some(user), Some(token)));
        assert_eq!(e.before, Some(json!({"name": "old"})));
        assert_eq!(e.after, Some(json!({"name": "new", "scopes": ["me.get"]})));
        assert_eq!(e.client_ip.as_deref(), Some("192.0.2.4"));
        assert_eq!(e.user_agent.as_deref(), Some("curl/8"));
        assert_eq!(e.occurrences, 1);
    }

    /// Tenant `a`'s log: alice creates and revokes her tokens, bob creates one, alice edits
    /// a user, an admin updates alice's token t3; tenant `b` has one event.
    struct Story {
        log: AuditLog,
        a: TenantId,
        alice: UserId,
        bob: UserId,
    }

    async fn story() -> Story {
        let log = log().await;
        let (a, b) = (TenantId::new(), TenantId::new());
        let (alice, bob, admin) = (UserId::new(), UserId::new(), UserId::new());
        let events = [
            crate::Actor::user(a, alice, "alice", None)
                .event("token.create", "token")
                .target("t1"),
            crate::Actor::user(a, bob, "bob", None)
                .event("token.create", "token")
                .target("t2"),
            crate::Actor::user(a, alice, "alice", None)
                .event("user.update", "user")
                .target("u9"),
            crate::Actor::user(a, admin, "admin", None)
                .event("token.update", "token")
                .target("t3"),
            crate::Actor::user(a, alice, "alice", None)
                .event("token.revoke", "token")
                .target("t1"),
            crate::Actor::operator()
                .event("tenant.update", "tenant")
                .in_tenant(b)
                .target(b),
        ];
        for e in events {
            log.record(e).await.unwrap();
        }
        Story { log, a, alice, bob }
    }

    #[tokio::test]
    async fn a_tenant_sees_its_own_events_newest_first_and_the_operator_sees_all() {
        let s = story().await;
        let mine = s.log.list(Some(s.a), all()).await.unwrap();
        assert_eq!(
            actions(&mine),
            [
                "token.revoke",
                "token.update",
                "user.update",
                "token.create",
                "token.create"
            ]
        );
        assert!(mine.iter().all(|e| e.tenant == Some(s.a)));
        assert_eq!(s.log.list(None, all()).await.unwrap().len(), 6);
        assert_eq!(s.log.count(None, &all()).await.unwrap(), 6);
        assert_eq!(s.log.count(Some(TenantId::new()), &all()).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn filters_narrow_by_actor_action_target_and_type() {
        let s = story().await;
        let list = |filter: AuditFilter| {
            let log = s.log.clone();
            let a = s.a;
            async move { log.list(Some(a), filter).await.unwrap() }
        };
        let by_bob = list(AuditFilter {
            actor: Some(s.bob),
            ..all()
        })
        .await;
        assert_eq!(actions(&by_bob), ["token.create"]);
        let creations = list(AuditFilter {
            action: Some("token.create".into()),
            ..all()
        })
        .await;
        assert_eq!(creations.len(), 2);
        let about_t1 = list(AuditFilter {
            target_id: Some("t1".into()),
            ..all()
        })
        .await;
        assert_eq!(actions(&about_t1), ["token.revoke", "token.create"]);
        let about_t2_or_t3 = list(AuditFilter {
            targets_in: Some(vec!["t2".into(), "t3".into()]),
            ..all()
        })
        .await;
        assert_eq!(actions(&about_t2_or_t3), ["token.update", "token.create"]);
        let users = list(AuditFilter {
            target_type: Some("user".into()),
            ..all()
        })
        .await;
        assert_eq!(actions(&users), ["user.update"]);
        let alices_tokens = list(AuditFilter {
            actor: Some(s.alice),
            target_type: Some("token".into()),
            ..all()
        })
        .await;
        assert_eq!(actions(&alices_tokens), ["token.revoke", "token.create"]);
    }

    #[tokio::test]
    async fn the_cursor_offset_and_limit_page_through_but_do_not_change_the_count() {
        let s = story().await;
        let everything = s.log.list(Some(s.a), all()).await.unwrap();
        let after_second = AuditFilter {
            before_id: Some(everything[1].id),
            ..all()
        };
        let older = s.log.list(Some(s.a), after_second.clone()).await.unwrap();
        assert_eq!(
            older.iter().map(|e| e.id).collect::<Vec<_>>(),
            everything[2..].iter().map(|e| e.id).collect::<Vec<_>>()
        );
        let page = AuditFilter {
            offset: 1,
            limit: 2,
            ..after_second
        };
        let paged = s.log.list(Some(s.a), page.clone()).await.unwrap();
        assert_eq!(
            paged.iter().map(|e| e.id).collect::<Vec<_>>(),
            [everything[3].id, everything[4].id]
        );
        assert_eq!(s.log.count(Some(s.a), &page).await.unwrap(), 5);
        // A page holds between 1 and 200 events whatever the limit asked.
        let none_asked = AuditFilter {
            limit: 0,
            ..AuditFilter::default()
        };
        assert_eq!(s.log.list(Some(s.a), none_asked).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_member_sees_the_token_events_they_caused_or_that_concern_their_tokens() {
        let s = story().await;
        let member = |tokens: &[&str]| AuditFilter {
            member: Some(MemberScope {
                user: s.alice,
                tokens: tokens.iter().map(|t| (*t).to_owned()).collect(),
            }),
            ..all()
        };
        // Alice's own token changes, not her user edit, not bob's token.
        let own = s.log.list(Some(s.a), member(&[])).await.unwrap();
        assert_eq!(actions(&own), ["token.revoke", "token.create"]);
        // Holding t3, she also sees what the admin did to it.
        let with_t3 = s.log.list(Some(s.a), member(&["t3"])).await.unwrap();
        assert_eq!(
            actions(&with_t3),
            ["token.revoke", "token.update", "token.create"]
        );
        assert_eq!(s.log.count(Some(s.a), &member(&["t3"])).await.unwrap(), 3);
    }

    #[tokio::test]
    async fn since_and_until_bound_the_time_half_open() {
        let log = log().await;
        let tenant = Some(TenantId::new());
        for (n, action) in [(0, "first"), (1, "second"), (2, "third")] {
            stored_at(&log, tenant, action, minute(n)).await;
        }
        let window = AuditFilter {
            since: Some(minute(1)),
            until: Some(minute(2)),
            ..all()
        };
        assert_eq!(
            actions(&log.list(tenant, window).await.unwrap()),
            ["second"]
        );
        let from_first = AuditFilter {
            since: Some(minute(0)),
            ..all()
        };
        assert_eq!(log.count(tenant, &from_first).await.unwrap(), 3);
    }

    #[tokio::test]
    async fn pruning_deletes_only_events_past_the_retention() {
        let log = log().await;
        let tenant = Some(TenantId::new());
        let now = Utc::now();
        stored_at(&log, tenant, "ancient", now - TimeDelta::days(31)).await;
        stored_at(&log, None, "ancient", now - TimeDelta::days(40)).await;
        stored_at(&log, tenant, "recent", now - TimeDelta::days(29)).await;
        assert_eq!(log.prune(30).await.unwrap(), 2);
        assert_eq!(actions(&log.list(None, all()).await.unwrap()), ["recent"]);
    }
}
