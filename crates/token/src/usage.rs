//! Usage counting off the request path: verifications add to an in-memory tally that a
//! background task flushes as additive batch updates, so replicas never overwrite each
//! other and no request waits for a write.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, TransactionTrait};
use sigil_core::db::Db;
use sigil_core::{Result, TokenId};

use crate::entity;

#[derive(Clone, Debug)]
struct Tally {
    count: i64,
    last_at: DateTime<Utc>,
    last_ip: Option<String>,
}

#[derive(Clone, Default)]
pub struct UsageRecorder {
    pending: Arc<Mutex<HashMap<TokenId, Tally>>>,
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
        let tally = pending.entry(token).or_insert(Tally {
            count: 0,
            last_at: now,
            last_ip: None,
        });
        tally.count += 1;
        tally.last_at = now;
        if let Some(ip) = ip {
            tally.last_ip = Some(ip.to_string());
        }
    }

    pub fn pending_tokens(&self) -> usize {
        self.pending.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// Writes the tallies in one transaction. On failure they are merged back and retried
    /// at the next flush, so no counted use is lost while the database is away.
    pub async fn flush(&self, db: &Db) -> Result<usize> {
        let batch: HashMap<TokenId, Tally> = match self.pending.lock() {
            Ok(mut p) => std::mem::take(&mut *p),
            Err(_) => return Ok(0),
        };
        if batch.is_empty() {
            return Ok(0);
        }
        let size = batch.len();
        match write(db, &batch).await {
            Ok(()) => Ok(size),
            Err(e) => {
                if let Ok(mut p) = self.pending.lock() {
                    for (id, t) in batch {
                        let slot = p.entry(id).or_insert(Tally {
                            count: 0,
                            ..t.clone()
                        });
                        slot.count += t.count;
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

async fn write(db: &Db, batch: &HashMap<TokenId, Tally>) -> Result<()> {
    let txn = db.begin().await?;
    for (id, tally) in batch {
        let mut update = entity::Entity::update_many()
            .col_expr(
                entity::Column::UseCount,
                Expr::col(entity::Column::UseCount).add(tally.count),
            )
            .col_expr(entity::Column::LastUsedAt, Expr::value(Some(tally.last_at)))
            .filter(entity::Column::Id.eq(*id));
        if let Some(ip) = &tally.last_ip {
            update = update.col_expr(entity::Column::LastUsedIp, Expr::value(Some(ip.clone())));
        }
        update.exec(&txn).await?;
    }
    txn.commit().await?;
    Ok(())
}
