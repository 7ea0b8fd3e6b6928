//! Token credits in storage: the stored columns read back as a [`CreditState`], and the
//! spends a [`CreditLedger`](sigil_limits::CreditLedger) hands out written as relative
//! decrements, so replicas flushing in any order never overwrite each other and a
//! balance someone set since (a newer `credits_version`) is never charged for earlier
//! spends.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, Query};
use sea_orm::{ConnectionTrait, DbErr};
use sigil_core::db::Db;
use sigil_core::Result;
use sigil_limits::{CreditFlush, CreditState, Credits, RateLimit, Refill};

/// The credits of a token as stored; `None` when it has none (unlimited).
pub fn stored_state(
    remaining: Option<i64>,
    refill: Option<&str>,
    refilled_at: Option<DateTime<Utc>>,
    version: i64,
    created_at: DateTime<Utc>,
) -> Option<CreditState> {
    let remaining = u64::try_from(remaining?).unwrap_or(0);
    Some(CreditState {
        remaining,
        version: u64::try_from(version).unwrap_or(0),
        refill: refill.and_then(|r| serde_json::from_str::<Refill>(r).ok()),
        refilled_at: refilled_at.unwrap_or(created_at),
    })
}

/// Stored rate limits (JSON); an unreadable value reads as none.
pub fn stored_limits(json: Option<&str>) -> Vec<RateLimit> {
    json.and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_default()
}

/// Rate limits as stored: `None` for none.
pub fn limits_json(limits: &[RateLimit]) -> Option<String> {
    (!limits.is_empty()).then(|| serde_json::to_string(limits).unwrap_or_default())
}

/// The columns `credits` sets on a token: remaining, refill (JSON), refilled at.
pub fn credit_columns(
    credits: Option<&Credits>,
    now: DateTime<Utc>,
) -> (Option<i64>, Option<String>, Option<DateTime<Utc>>) {
    match credits {
        None => (None, None, None),
        Some(c) => (
            Some(i64::try_from(c.remaining).unwrap_or(i64::MAX)),
            c.refill
                .as_ref()
                .map(|r| serde_json::to_string(r).unwrap_or_default()),
            Some(now),
        ),
    }
}

/// Writes a batch of spends: per token, a refill the batch's period started (written
/// once, by whichever replica writes first), then `remaining - spent`, never below 0.
pub async fn flush(db: &Db, batch: &[CreditFlush]) -> Result<()> {
    for f in batch {
        write_one(db, f).await?;
    }
    Ok(())
}

async fn write_one(db: &Db, f: &CreditFlush) -> std::result::Result<(), DbErr> {
    let tokens = Alias::new("tokens");
    let remaining = Alias::new("credits_remaining");
    let refilled_at = Alias::new("credits_refilled_at");
    let at = f.refilled_at;
    let spent = i64::try_from(f.spent).unwrap_or(i64::MAX);
    // The balance the spends come out of: the refill amount when this batch's period is
    // newer than the stored one, else the stored balance.
    let base = match f.refill_amount {
        Some(amount) => Expr::cust_with_values(
            "CASE WHEN credits_refilled_at IS NULL OR credits_refilled_at < ? THEN ? ELSE credits_remaining END",
            [
                sea_orm::Value::from(at),
                sea_orm::Value::from(i64::try_from(amount).unwrap_or(i64::MAX)),
            ],
        ),
        None => Expr::cust("credits_remaining"),
    };
    let left = Expr::case(Expr::expr(base.clone().sub(spent)).lt(0), Expr::val(0i64))
        .finally(base.sub(spent));
    let update = Query::update()
        .table(tokens)
        .value(remaining.clone(), left)
        .value(
            refilled_at.clone(),
            Expr::case(
                Expr::col(refilled_at.clone())
                    .is_null()
                    .or(Expr::col(refilled_at.clone()).lt(at)),
                Expr::val(at),
            )
            .finally(Expr::col(refilled_at.clone())),
        )
        .and_where(Expr::col(Alias::new("id")).eq(f.token.0))
        .and_where(
            Expr::col(Alias::new("credits_version")).eq(i64::try_from(f.version).unwrap_or(0)),
        )
        .and_where(Expr::col(remaining).is_not_null())
        .and_where(
            Expr::col(refilled_at.clone())
                .is_null()
                .or(Expr::col(refilled_at).lte(at)),
        )
        .to_owned();
    db.execute(db.get_database_backend().build(&update)).await?;
    Ok(())
}
