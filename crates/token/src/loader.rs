//! What a verification cache miss needs from storage: the token row and its owner, read
//! in one statement (the user crate joins the owner: `sigil_user::owners`). Misses that
//! arrive while a statement runs wait for the next one and are read together (`WHERE id
//! IN (...)`), so a burst of new credentials costs a few round trips instead of two per
//! credential (adaptive batching: one miss alone is read at once; batches grow only
//! while the database is busy).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, Query};
use sea_orm::{ConnectionTrait, FromQueryResult};
use sigil_core::db::Db;
use sigil_core::{Error, Result, TenantId, TokenId, UserId};
use tokio::sync::{mpsc, oneshot};

use crate::entity;
use sigil_user::owners::{self, OwnerState};

/// Most ids in one statement (well below SQLite's and PostgreSQL's parameter limits).
const MAX_BATCH: usize = 256;
/// Requests waiting for a statement; past it, callers wait to enqueue (back-pressure).
const QUEUE: usize = 4096;

/// The token and owner columns verification reads.
#[derive(Clone, Debug)]
pub(crate) struct MissRow {
    pub id: TokenId,
    pub tenant_id: TenantId,
    pub owner_id: UserId,
    pub kind: String,
    pub scope_set: Option<String>,
    pub scope_methods: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub ip_filter: String,
    pub enabled: bool,
    pub generation: i32,
    pub secret_hash: String,
    pub prev_secret_hash: Option<String>,
    pub prev_valid_until: Option<DateTime<Utc>>,
    pub elevated_until: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// `leaked` when the secret was reported exposed (crate::leaks).
    pub revoked_reason: Option<String>,
    pub ceiling: Option<String>,
    /// Oldest generation replaced by self-rotation only (reuse detection).
    pub self_rotated_from: Option<i32>,
    pub username: String,
    pub user_kind: String,
    pub role: String,
    pub api_access: bool,
    pub active: bool,
    pub is_system: bool,
    /// The token's rate limits (JSON), credits, and the owner's rate limits (JSON).
    pub rate_limits: Option<String>,
    pub credits_remaining: Option<i64>,
    pub credits_refill: Option<String>,
    pub credits_refilled_at: Option<DateTime<Utc>>,
    pub credits_version: i64,
    pub created_at: DateTime<Utc>,
    pub owner_rate_limits: Option<String>,
}

struct Pending {
    tenant: TenantId,
    token: TokenId,
    reply: oneshot::Sender<Result<Option<MissRow>>>,
}

/// Folds concurrent cache misses into batched reads. The background task starts on the
/// first miss (inside the runtime that serves it).
#[derive(Clone)]
pub(crate) struct MissLoader {
    db: Db,
    queue: Arc<OnceLock<mpsc::Sender<Pending>>>,
}

impl MissLoader {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            queue: Arc::default(),
        }
    }

    /// The token `token` of `tenant` and its owner; `None` when either does not exist.
    pub async fn load(&self, tenant: TenantId, token: TokenId) -> Result<Option<MissRow>> {
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(run(self.db.clone(), rx));
            tx
        });
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            tenant,
            token,
            reply,
        };
        if queue.send(pending).await.is_err() {
            return Err(Error::Unavailable("the verification loader stopped".into()));
        }
        answer
            .await
            .map_err(|_| Error::Unavailable("the verification loader stopped".into()))?
    }
}

/// One statement at a time: the misses that arrive while it runs make the next batch,
/// so a busy database sees few, large statements (on SQLite there is one connection
/// anyway).
async fn run(db: Db, mut rx: mpsc::Receiver<Pending>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        answer(&db, batch).await;
    }
}

async fn answer(db: &Db, batch: Vec<Pending>) {
    let mut ids: Vec<TokenId> = batch.iter().map(|p| p.token).collect();
    ids.sort_unstable();
    ids.dedup();
    match fetch(db, &ids).await {
        Ok(rows) => {
            let rows: HashMap<TokenId, MissRow> = rows.into_iter().map(|r| (r.id, r)).collect();
            for p in batch {
                // The tenant named by the credential must own the row: a token id never
                // answers for another tenant.
                let row = rows.get(&p.token).filter(|r| r.tenant_id == p.tenant);
                let _ = p.reply.send(Ok(row.cloned()));
            }
        }
        Err(e) => {
            let text = e.to_string();
            for p in batch {
                let _ = p.reply.send(Err(Error::Unavailable(text.clone())));
            }
        }
    }
}

/// The token columns verification reads; the owner's come from the user crate.
#[derive(FromQueryResult)]
struct TokenColumns {
    id: TokenId,
    tenant_id: TenantId,
    owner_id: UserId,
    kind: String,
    scope_set: Option<String>,
    scope_methods: Option<String>,
    expires_at: Option<DateTime<Utc>>,
    ip_filter: String,
    enabled: bool,
    generation: i32,
    secret_hash: String,
    prev_secret_hash: Option<String>,
    prev_valid_until: Option<DateTime<Utc>>,
    elevated_until: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    revoked_reason: Option<String>,
    ceiling: Option<String>,
    self_rotated_from: Option<i32>,
    rate_limits: Option<String>,
    credits_remaining: Option<i64>,
    credits_refill: Option<String>,
    credits_refilled_at: Option<DateTime<Utc>>,
    credits_version: i64,
    created_at: DateTime<Utc>,
}

/// One row of the joined statement: a token and its owner.
#[derive(FromQueryResult)]
struct Joined {
    #[sea_orm(nested)]
    token: TokenColumns,
    #[sea_orm(nested)]
    owner: OwnerState,
}

impl From<Joined> for MissRow {
    fn from(Joined { token: t, owner: o }: Joined) -> Self {
        Self {
            id: t.id,
            tenant_id: t.tenant_id,
            owner_id: t.owner_id,
            kind: t.kind,
            scope_set: t.scope_set,
            scope_methods: t.scope_methods,
            expires_at: t.expires_at,
            ip_filter: t.ip_filter,
            enabled: t.enabled,
            generation: t.generation,
            secret_hash: t.secret_hash,
            prev_secret_hash: t.prev_secret_hash,
            prev_valid_until: t.prev_valid_until,
            elevated_until: t.elevated_until,
            revoked_at: t.revoked_at,
            revoked_reason: t.revoked_reason,
            ceiling: t.ceiling,
            self_rotated_from: t.self_rotated_from,
            username: o.username,
            user_kind: o.user_kind,
            role: o.role,
            api_access: o.api_access,
            active: o.active,
            is_system: o.is_system,
            rate_limits: t.rate_limits,
            credits_remaining: t.credits_remaining,
            credits_refill: t.credits_refill,
            credits_refilled_at: t.credits_refilled_at,
            credits_version: t.credits_version,
            created_at: t.created_at,
            owner_rate_limits: o.owner_rate_limits,
        }
    }
}

/// The tokens `ids` and their owners, in one statement (the user crate joins its owners).
async fn fetch(db: &Db, ids: &[TokenId]) -> Result<Vec<MissRow>> {
    use entity::Column as T;
    let t = entity::Entity;
    let mut select = Query::select();
    select
        .columns([
            (t, T::Id),
            (t, T::TenantId),
            (t, T::OwnerId),
            (t, T::Kind),
            (t, T::ScopeSet),
            (t, T::ScopeMethods),
            (t, T::ExpiresAt),
            (t, T::IpFilter),
            (t, T::Enabled),
            (t, T::Generation),
            (t, T::SecretHash),
            (t, T::PrevSecretHash),
            (t, T::PrevValidUntil),
            (t, T::ElevatedUntil),
            (t, T::RevokedAt),
            (t, T::Ceiling),
            (t, T::SelfRotatedFrom),
            (t, T::RateLimits),
            (t, T::CreditsRemaining),
            (t, T::CreditsRefill),
            (t, T::CreditsRefilledAt),
            (t, T::CreditsVersion),
            (t, T::CreatedAt),
        ])
        .expr_as(
            Expr::col((t, Alias::new(crate::leaks::REASON_COLUMN))),
            Alias::new("revoked_reason"),
        )
        .from(t)
        .and_where(Expr::col((t, T::Id)).is_in(ids.iter().copied()));
    owners::join_state(&mut select, t, T::OwnerId, T::TenantId);
    let statement = db.get_database_backend().build(&select);
    Ok(Joined::find_by_statement(statement)
        .all(db)
        .await?
        .into_iter()
        .map(MissRow::from)
        .collect())
}
