//! Usage counting off the request path: verifications add to an in-memory tally that a
//! background task flushes as additive batch updates, so replicas never overwrite each
//! other and no request waits for a write. The last use (time and IP) only moves forwards,
//! whatever order replicas flush in.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{CaseStatement, Condition, Expr, SimpleExpr};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, TransactionTrait};
use sigil_core::db::Db;
use sigil_core::{Result, TokenId};
use tracing::Instrument;

use crate::addresses::Seen;
use crate::entity;

#[derive(Clone, Debug)]
struct Tally {
    count: i64,
    last_at: DateTime<Utc>,
    last_ip: Option<std::net::IpAddr>,
    /// Distinct addresses since the last flush (crate::addresses), at most
    /// `MAX_PENDING_IPS`: the ones seen last win.
    ips: HashMap<std::net::IpAddr, Seen>,
}

/// Addresses held per token between flushes.
const MAX_PENDING_IPS: usize = 2 * crate::addresses::KEEP;

impl Tally {
    fn saw(&mut self, ip: std::net::IpAddr, seen: Seen) {
        let slot = self.ips.entry(ip).or_insert(seen);
        slot.first = slot.first.min(seen.first);
        slot.last = slot.last.max(seen.last);
        if self.ips.len() > MAX_PENDING_IPS {
            if let Some(oldest) = self
                .ips
                .iter()
                .min_by_key(|(_, s)| s.last)
                .map(|(ip, _)| *ip)
            {
                self.ips.remove(&oldest);
            }
        }
    }
}

/// Flush counters, read by the metrics endpoint.
#[derive(Debug, Default)]
pub struct UsageStats {
    /// Batches written.
    pub batches: AtomicU64,
    /// Token rows updated by those batches.
    pub tokens: AtomicU64,
    /// Flushes that failed (their tallies are retried).
    pub failures: AtomicU64,
    /// When the oldest use not yet written was counted (Unix milliseconds; 0: none).
    oldest_pending_ms: AtomicI64,
}

impl UsageStats {
    /// Seconds the oldest unwritten use has waited (0 when everything is written).
    pub fn lag_secs(&self) -> f64 {
        let oldest = self.oldest_pending_ms.load(Ordering::Relaxed);
        if oldest == 0 {
            return 0.0;
        }
        (Utc::now().timestamp_millis() - oldest).max(0) as f64 / 1000.0
    }
}

#[derive(Clone, Default)]
pub struct UsageRecorder {
    pending: Arc<Mutex<HashMap<TokenId, Tally>>>,
    stats: Arc<UsageStats>,
}

impl UsageRecorder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn record(&self, token: TokenId, ip: Option<std::net::IpAddr>) {
        let now = Utc::now();
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        if pending.is_empty() {
            self.stats
                .oldest_pending_ms
                .store(now.timestamp_millis(), Ordering::Relaxed);
        }
        let tally = pending.entry(token).or_insert(Tally {
            count: 0,
            last_at: now,
            last_ip: None,
            ips: HashMap::new(),
        });
        tally.count += 1;
        tally.last_at = now;
        if let Some(ip) = ip {
            tally.last_ip = Some(ip);
            tally.saw(
                ip,
                Seen {
                    first: now,
                    last: now,
                },
            );
        }
    }

    pub fn stats(&self) -> &UsageStats {
        &self.stats
    }

    pub fn pending_tokens(&self) -> usize {
        self.pending.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// Writes the tallies in one transaction. On failure they are merged back and retried
    /// at the next flush, so no counted use is lost while the database is away.
    pub async fn flush(&self, db: &Db) -> Result<usize> {
        let (batch, oldest): (HashMap<TokenId, Tally>, i64) = match self.pending.lock() {
            Ok(mut p) => (
                std::mem::take(&mut *p),
                self.stats.oldest_pending_ms.swap(0, Ordering::Relaxed),
            ),
            Err(_) => return Ok(0),
        };
        if batch.is_empty() {
            return Ok(0);
        }
        let size = batch.len();
        let span = tracing::debug_span!("db", op = "usage.flush", tokens = size);
        match write(db, &batch).instrument(span).await {
            Ok(()) => {
                self.stats.batches.fetch_add(1, Ordering::Relaxed);
                self.stats.tokens.fetch_add(size as u64, Ordering::Relaxed);
                Ok(size)
            }
            Err(e) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut p) = self.pending.lock() {
                    // The unwritten uses are older than anything counted since.
                    self.stats
                        .oldest_pending_ms
                        .store(oldest, Ordering::Relaxed);
                    for (id, t) in batch {
                        let slot = p.entry(id).or_insert(Tally {
                            count: 0,
                            ips: HashMap::new(),
                            ..t.clone()
                        });
                        slot.count += t.count;
                        for (ip, seen) in &t.ips {
                            slot.saw(*ip, *seen);
                        }
                        if t.last_at > slot.last_at {
                            slot.last_at = t.last_at;
                            slot.last_ip = t.last_ip.or(slot.last_ip.take());
                        }
                    }
                }
                Err(e)
            }
        }
    }
}

/// Tokens per UPDATE statement: a flush of N tokens runs N / FLUSH_CHUNK statements (one
/// per token would cost a round trip each, which a busy replica pays on every flush).
const FLUSH_CHUNK: usize = 100;

/// Writes one flush: its tokens may be of any tenant (token ids are unique across them).
async fn write(db: &Db, batch: &HashMap<TokenId, Tally>) -> Result<()> {
    let rows: Vec<(&TokenId, &Tally)> = batch.iter().collect();
    let txn = db.begin().await?;
    for chunk in rows.chunks(FLUSH_CHUNK) {
        // use_count = use_count + CASE id WHEN .. THEN n .. END. The last use moves only
        // forwards: replicas flush in any order, so a flush carrying an earlier use than
        // the stored one (and its IP) leaves the row's last use as it is.
        let mut count = CaseStatement::new();
        let mut last_at = CaseStatement::new();
        let mut last_ip = CaseStatement::new();
        let mut any_ip = false;
        for (id, tally) in chunk {
            count = count.case(entity::Column::Id.eq(**id), Expr::value(tally.count));
            last_at = last_at.case(
                entity::Column::Id.eq(**id),
                Expr::value(Some(tally.last_at)),
            );
            if let Some(ip) = tally.last_ip {
                last_ip = last_ip.case(
                    entity::Column::Id.eq(**id),
                    Expr::value(Some(ip.to_string())),
                );
                any_ip = true;
            }
        }
        let flushed_at: SimpleExpr = last_at.into();
        // The flushed use is later than the stored one (or none is stored). Every SET
        // expression sees the row as it was before the UPDATE, so the IP's condition
        // compares against the old last use too. (SQLite compares the stored RFC 3339 text,
        // which sorts by time: every value is written by the same encoder, in UTC.)
        let later = Condition::any()
            .add(Expr::col(entity::Column::LastUsedAt).is_null())
            .add(Expr::col(entity::Column::LastUsedAt).lt(flushed_at.clone()));
        let mut update = entity::Entity::update_many()
            .col_expr(
                entity::Column::UseCount,
                Expr::col(entity::Column::UseCount).add(SimpleExpr::Case(Box::new(count))),
            )
            .col_expr(
                entity::Column::LastUsedAt,
                Expr::case(later.clone(), flushed_at)
                    .finally(Expr::col(entity::Column::LastUsedAt))
                    .into(),
            )
            .filter(entity::Column::Id.is_in(chunk.iter().map(|(id, _)| **id)));
        if any_ip {
            update = update.col_expr(
                entity::Column::LastUsedIp,
                Expr::case(
                    later,
                    last_ip.finally(Expr::col(entity::Column::LastUsedIp)),
                )
                .finally(Expr::col(entity::Column::LastUsedIp))
                .into(),
            );
        }
        update.exec(&txn).await?;
    }
    let seen: HashMap<TokenId, HashMap<std::net::IpAddr, Seen>> = batch
        .iter()
        .filter(|(_, t)| !t.ips.is_empty())
        .map(|(id, t)| (*id, t.ips.clone()))
        .collect();
    crate::addresses::record(&txn, &seen).await?;
    txn.commit().await?;
    Ok(())
}
