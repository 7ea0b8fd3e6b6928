//! Expiry notices: a periodic sweep raises `token.expiring` a number of days before a
//! token expires (7 and 1 by default, once each) and `token.expired` once it has. A
//! notice is remembered per token, kind and expiry (table `token_notices`), written in
//! the transaction of its event, so each fires once whatever the number of replicas, and
//! fires again if the expiry is moved.

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::{Alias, Expr, OnConflict, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, TransactionTrait,
};
use sigil_core::db::Db;
use sigil_core::outbox::events;
use sigil_core::{Result, TokenId};

use crate::entity;
use crate::types::TokenKind;

/// Tokens handled per sweep and kind of notice (the rest wait for the next sweep).
const BATCH: u64 = 500;
/// Expired tokens older than this are not announced (a new installation, a long outage).
const EXPIRED_LOOKBACK_DAYS: i64 = 30;

fn notices() -> Alias {
    Alias::new("token_notices")
}

fn col(name: &str) -> (Alias, Alias) {
    (notices(), Alias::new(name))
}

/// Live (not revoked) personal and application tokens expiring in `(from, to]` that have
/// no `notice` for their current expiry, of every tenant (a background sweep).
async fn candidates(
    db: &Db,
    notice: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<entity::Model>> {
    let done = Query::select()
        .expr(Expr::value(1))
        .from(notices())
        .and_where(Expr::col(col("token_id")).equals((entity::Entity, entity::Column::Id)))
        .and_where(Expr::col(col("notice")).eq(notice))
        .and_where(Expr::col(col("expires_at")).equals((entity::Entity, entity::Column::ExpiresAt)))
        .to_owned();
    Ok(entity::Entity::find()
        .filter(entity::Column::Kind.ne(TokenKind::Session.as_str()))
        .filter(entity::Column::RevokedAt.is_null())
        .filter(entity::Column::ExpiresAt.gt(from))
        .filter(entity::Column::ExpiresAt.lte(to))
        .filter(Expr::exists(done).not())
        .limit(BATCH)
        .all(db)
        .await?)
}

/// Remembers a notice; true when this call wrote it (and should raise the event).
async fn remember(
    conn: &impl ConnectionTrait,
    token: TokenId,
    notice: &str,
    expires_at: DateTime<Utc>,
) -> Result<bool> {
    let insert = Query::insert()
        .into_table(notices())
        .columns([
            Alias::new("token_id"),
            Alias::new("notice"),
            Alias::new("expires_at"),
            Alias::new("created_at"),
        ])
        .values_panic([
            token.0.into(),
            notice.into(),
            expires_at.into(),
            sigil_core::now().into(),
        ])
        .on_conflict(
            OnConflict::columns([
                Alias::new("token_id"),
                Alias::new("notice"),
                Alias::new("expires_at"),
            ])
            .do_nothing()
            .to_owned(),
        )
        .to_owned();
    let statement = conn.get_database_backend().build(&insert);
    Ok(conn.execute(statement).await?.rows_affected() == 1)
}

/// One sweep. `days`: how long before expiry `token.expiring` fires (each once). Returns
/// the events raised.
pub async fn sweep(db: &Db, days: &[u32]) -> Result<usize> {
    let now = sigil_core::now();
    let mut raised = 0;
    let mut days: Vec<u32> = days.iter().copied().filter(|d| *d > 0).collect();
    days.sort_unstable();
    days.dedup();
    if let Some(widest) = days.last().copied() {
        for token in candidates(
            db,
            &notice_name(widest),
            now,
            now + Duration::days(i64::from(widest)),
        )
        .await?
        {
            let Some(expires_at) = token.expires_at else {
                continue;
            };
            // The nearest threshold already reached is announced; wider ones reached at
            // the same time are remembered silently (one event, not several).
            let reached: Vec<u32> = days
                .iter()
                .copied()
                .filter(|d| expires_at <= now + Duration::days(i64::from(*d)))
                .collect();
            let Some(nearest) = reached.first().copied() else {
                continue;
            };
            let txn = db.begin().await?;
            let fire = remember(&txn, token.id, &notice_name(nearest), expires_at).await?;
            for wider in reached.iter().skip(1) {
                remember(&txn, token.id, &notice_name(*wider), expires_at).await?;
            }
            if fire {
                crate::events::token_event(
                    &txn,
                    events::TOKEN_EXPIRING,
                    &token,
                    serde_json::json!({ "days": nearest }),
                )
                .await?;
                raised += 1;
            }
            txn.commit().await?;
        }
        // A token whose nearer threshold is reached later (7 days, then 1 day).
        for d in days.iter().rev().skip(1) {
            raised += announce_threshold(db, *d, now).await?;
        }
    }
    for token in candidates(
        db,
        "expired",
        now - Duration::days(EXPIRED_LOOKBACK_DAYS),
        now,
    )
    .await?
    {
        let Some(expires_at) = token.expires_at else {
            continue;
        };
        let txn = db.begin().await?;
        if remember(&txn, token.id, "expired", expires_at).await? {
            crate::events::token_event(&txn, events::TOKEN_EXPIRED, &token, serde_json::json!({}))
                .await?;
            raised += 1;
        }
        txn.commit().await?;
    }
    Ok(raised)
}

/// `token.expiring` for tokens within `d` days that have not had that notice.
async fn announce_threshold(db: &Db, d: u32, now: DateTime<Utc>) -> Result<usize> {
    let mut raised = 0;
    let notice = notice_name(d);
    for token in candidates(db, &notice, now, now + Duration::days(i64::from(d))).await? {
        let Some(expires_at) = token.expires_at else {
            continue;
        };
        let txn = db.begin().await?;
        if remember(&txn, token.id, &notice, expires_at).await? {
            crate::events::token_event(
                &txn,
                events::TOKEN_EXPIRING,
                &token,
                serde_json::json!({ "days": d }),
            )
            .await?;
            raised += 1;
        }
        txn.commit().await?;
    }
    Ok(raised)
}

fn notice_name(days: u32) -> String {
    format!("expiring_{days}d")
}
