//! Counters and balances shared by replicas through Redis, kept off the request path by
//! leases.
//!
//! Each rate limit is one Redis hash (window, bucket index, previous and current count)
//! that an atomic script rolls and charges, with buckets taken from Redis `TIME`, so
//! replicas' clocks never matter. A replica asks for a lease of up to `batch` units at
//! once (never more than the window admits), spends them locally and asks again when
//! they run out; a lease dies at the end of the bucket it was granted in.
//!
//! Each credit balance is one hash (version, balance, period) that a script starts from
//! the stored balance once (and again whenever the stored version is newer), refills once
//! per period (the period is part of the hash, and only ever moves forward), and spends
//! from, never below 0. Grants are a single use's cost, or a lease of several uses while
//! the balance keeps a reserve of `replicas × lease` beyond it.
//!
//! Replicas announce themselves in a sorted set scored by Redis time every health tick;
//! the ones heard from recently are the count each replica divides limits by while Redis
//! is unreachable.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script};
use sigil_core::TokenId;

use crate::credits::{CreditState, Parcel, SharedBalance};
use crate::key::Holder;
use crate::local::Target;
use crate::window::WindowView;

/// How a limiter uses Redis.
#[derive(Clone, Debug)]
pub struct SharedSettings {
    /// Prefix of every key (`<prefix>:rl:…`, `<prefix>:cr:…`, `<prefix>:replicas`).
    pub key_prefix: String,
    /// Longest wait for one Redis answer before falling back.
    pub timeout: Duration,
    /// How often the health task pings Redis (and announces this replica).
    pub health_interval: Duration,
    /// Largest rate-limit lease. Limits up to 100 lease one unit at a time; above, a
    /// hundredth of the limit, up to this.
    pub max_batch: u32,
    /// Uses' worth of credits leased at once while the balance is large.
    pub credit_lease_uses: u32,
    /// Credit leases unspent for this long go back to the shared balance.
    pub lease_idle: Duration,
    /// How long an unused shared balance is kept in Redis.
    pub credit_ttl: Duration,
}

impl Default for SharedSettings {
    fn default() -> Self {
        Self {
            key_prefix: "sigil:limits".to_owned(),
            timeout: Duration::from_millis(250),
            health_interval: Duration::from_millis(500),
            max_batch: 100,
            credit_lease_uses: 10,
            lease_idle: Duration::from_secs(1),
            credit_ttl: Duration::from_secs(30 * 86_400),
        }
    }
}

impl SharedSettings {
    /// Units leased at once for `limit`: 1 up to 100, a hundredth of it beyond, at most
    /// `max_batch`. At most `replicas × (batch - 1)` units per limit and bucket can go
    /// unspent, so the bigger the limit, the bigger the lease it can afford.
    pub fn batch(&self, limit: u32) -> u64 {
        if limit <= 100 {
            1
        } else {
            u64::from((limit / 100).clamp(1, self.max_batch.max(1)))
        }
    }
}

/// What the window script answered.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WindowGrant {
    pub granted: u64,
    /// Units the window admits beyond the grant.
    pub others_remaining: u64,
    /// The shared counter after the grant.
    pub view: WindowView,
}

/// Why a credit script runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CreditOp {
    Take,
    Give,
    Debit,
}

impl CreditOp {
    fn as_str(self) -> &'static str {
        match self {
            Self::Take => "take",
            Self::Give => "give",
            Self::Debit => "debit",
        }
    }
}

/// Rolls the window to Redis's clock and grants up to `want` of what it admits.
/// KEYS[1] the counter; ARGV window ms, limit, want.
/// Returns {granted, admitted beyond, previous, current, ms into the bucket}.
const WINDOW_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local w = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local bucket = math.floor(now / w)
local h = redis.call('HMGET', KEYS[1], 'w', 'b', 'p', 'c')
local b, p, c = bucket, 0, 0
if tonumber(h[1]) == w then
  b = tonumber(h[2]); p = tonumber(h[3]); c = tonumber(h[4])
  if bucket == b + 1 then p = c; c = 0; b = bucket
  elseif bucket > b + 1 then p = 0; c = 0; b = bucket end
end
local e = now - b * w
if e < 0 then e = 0 end
local avail = limit - c - math.ceil(p * (w - e) / w)
local grant = 0
if avail >= 1 then
  grant = math.min(want, avail)
  c = c + grant
  redis.call('HSET', KEYS[1], 'w', w, 'b', b, 'p', p, 'c', c)
  redis.call('PEXPIRE', KEYS[1], 2 * w + 1000)
end
return {grant, avail - grant, p, c, e}
";

/// A credit balance: started from the stored one when missing or older, refilled once per
/// period, then one of: take (grant `units`, or `want` while `reserve` is left beyond it),
/// give (an unspent lease back), debit (fallback spends, never below 0). Give and debit
/// only touch the balance they belong to (same version and period).
/// KEYS[1] the balance; ARGV op, version, stored remaining, stored period ms, current period
/// ms (0: no refill), refill amount, units, want, reserve, ttl ms.
/// Returns {granted, balance, version, period ms}.
const CREDIT_SCRIPT: &str = r"
local av = tonumber(ARGV[2])
local h = redis.call('HMGET', KEYS[1], 'v', 'r', 'p')
local v, r, p = tonumber(h[1]), tonumber(h[2]), tonumber(h[3])
if v == nil or r == nil or p == nil or v < av then
  v = av; r = tonumber(ARGV[3]); p = tonumber(ARGV[4])
end
local period = tonumber(ARGV[5])
if period > p then r = tonumber(ARGV[6]); p = period end
local units = tonumber(ARGV[7])
local op = ARGV[1]
local grant = 0
if op == 'take' then
  if r >= units then
    grant = units
    local want = tonumber(ARGV[8])
    if want > units and r - want >= tonumber(ARGV[9]) then grant = want end
    r = r - grant
  end
elseif v == av and p == tonumber(ARGV[4]) then
  if op == 'give' then r = r + units
  elseif op == 'debit' then r = math.max(r - units, 0) end
end
redis.call('HSET', KEYS[1], 'v', v, 'r', r, 'p', p)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[10]))
return {grant, r, v, p}
";

/// Announces a replica and counts the ones heard from within ARGV[2] ms.
/// KEYS[1] the set; ARGV replica id, staleness ms.
const HEARTBEAT_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local stale = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - stale)
redis.call('PEXPIRE', KEYS[1], stale * 2)
return redis.call('ZCARD', KEYS[1])
";

/// The Redis side of a limiter, and what it knows of Redis's health.
pub(crate) struct Shared {
    conn: ConnectionManager,
    pub settings: SharedSettings,
    replica_id: String,
    window_script: Script,
    credit_script: Script,
    heartbeat_script: Script,
    up: AtomicBool,
    replicas: AtomicU32,
    /// Times shared counting was given up for local shares (each is one outage).
    fallbacks: AtomicU64,
    /// Scripts run (health ticks included).
    round_trips: AtomicU64,
}

/// A failed Redis exchange: an error or no answer in time.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SharedError {
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
}

impl Shared {
    /// A lazy connection: nothing is awaited, so a limiter starts even while Redis is away.
    pub fn connect(url: &str, settings: SharedSettings) -> Result<Self, RedisError> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(settings.health_interval);
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self {
            conn,
            settings,
            replica_id: uuid::Uuid::new_v4().to_string(),
            window_script: Script::new(WINDOW_SCRIPT),
            credit_script: Script::new(CREDIT_SCRIPT),
            heartbeat_script: Script::new(HEARTBEAT_SCRIPT),
            up: AtomicBool::new(false),
            replicas: AtomicU32::new(1),
            fallbacks: AtomicU64::new(0),
            round_trips: AtomicU64::new(0),
        })
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Replicas last counted (at least 1).
    pub fn replicas(&self) -> u32 {
        self.replicas.load(Ordering::Relaxed).max(1)
    }

    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// Identifies the current outage (fallback shares are computed once per outage).
    pub fn outage(&self) -> u64 {
        self.fallbacks()
    }

    /// Gives up shared counting until the health task sees Redis again.
    pub fn mark_down(&self, why: &SharedError) {
        if self.up.swap(false, Ordering::AcqRel) {
            self.fallbacks.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %why, replicas = self.replicas(),
                "shared rate limits unreachable: each replica enforces its share");
        }
    }

    pub fn mark_up(&self) {
        if !self.up.swap(true, Ordering::AcqRel) {
            tracing::info!(replicas = self.replicas(), "shared rate limits in use");
        }
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, SharedError> {
        let mut conn = self.conn.clone();
        let timeout = self.settings.timeout;
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(timeout, invocation.invoke_async(&mut conn)).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(SharedError::Timeout(timeout)),
        }
    }

    fn key(&self, kind: &str, rest: std::fmt::Arguments<'_>) -> String {
        format!("{}:{kind}:{rest}", self.settings.key_prefix)
    }

    fn window_key(&self, target: &Target) -> String {
        let (scope, id) = match target.key.holder {
            Holder::Token(t) => ("t", t.0),
            Holder::Owner(u) => ("o", u.0),
        };
        self.key("rl", format_args!("{scope}:{id}:{}", target.key.name))
    }

    fn credit_key(&self, token: TokenId) -> String {
        self.key("cr", format_args!("{token}"))
    }

    /// Asks the shared window of `target` for up to `want` units.
    pub async fn lease_window(
        &self,
        target: &Target,
        want: u64,
    ) -> Result<WindowGrant, SharedError> {
        let mut inv = self.window_script.key(self.window_key(target));
        inv.arg(target.window_ms).arg(target.limit).arg(want.max(1));
        let (granted, beyond, prev, cur, elapsed): (i64, i64, i64, i64, i64) =
            self.run(&inv).await?;
        let non_neg = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(WindowGrant {
            granted: non_neg(granted),
            others_remaining: non_neg(beyond),
            view: WindowView {
                window_ms: target.window_ms,
                prev: non_neg(prev),
                cur: non_neg(cur),
                elapsed_ms: non_neg(elapsed).min(target.window_ms.saturating_sub(1)),
            },
        })
    }

    /// Takes `cost` from a token's shared balance, or a lease of several uses while the
    /// balance is large.
    pub async fn take_credits(
        &self,
        token: TokenId,
        state: &CreditState,
        cost: u64,
        now: DateTime<Utc>,
    ) -> Result<SharedBalance, SharedError> {
        let lease = cost.saturating_mul(u64::from(self.settings.credit_lease_uses.max(1)));
        let reserve = lease.saturating_mul(u64::from(self.replicas()));
        let period = state
            .refill
            .as_ref()
            .map_or(0, |r| millis(crate::spec::period_start(r, now)));
        let amount = state.refill.as_ref().map_or(0, |r| r.amount);
        self.credit(
            CreditOp::Take,
            token,
            (state.version, state.remaining, millis(state.refilled_at)),
            (period, amount),
            (cost, lease, reserve),
        )
        .await
    }

    /// Returns an unspent lease, or charges fallback spends (`debit`), to the balance it
    /// belongs to.
    pub async fn settle(&self, parcel: &Parcel, debit: bool) -> Result<(), SharedError> {
        let op = if debit {
            CreditOp::Debit
        } else {
            CreditOp::Give
        };
        self.credit(
            op,
            parcel.token,
            (parcel.version, parcel.seen, millis(parcel.refilled_at)),
            (0, 0),
            (parcel.units, 0, 0),
        )
        .await
        .map(|_| ())
    }

    async fn credit(
        &self,
        op: CreditOp,
        token: TokenId,
        (version, stored, stored_period): (u64, u64, u64),
        (period, amount): (u64, u64),
        (units, want, reserve): (u64, u64, u64),
    ) -> Result<SharedBalance, SharedError> {
        let mut inv = self.credit_script.key(self.credit_key(token));
        inv.arg(op.as_str())
            .arg(version)
            .arg(stored)
            .arg(stored_period)
            .arg(period)
            .arg(amount)
            .arg(units)
            .arg(want)
            .arg(reserve)
            .arg(u64::try_from(self.settings.credit_ttl.as_millis()).unwrap_or(u64::MAX));
        let (granted, remaining, version, period): (i64, i64, i64, i64) = self.run(&inv).await?;
        let non_neg = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(SharedBalance {
            granted: non_neg(granted),
            remaining: non_neg(remaining),
            version: non_neg(version),
            refilled_at: DateTime::from_timestamp_millis(period).unwrap_or_default(),
        })
    }

    /// Announces this replica and counts the live ones.
    pub async fn heartbeat(&self) -> Result<u32, SharedError> {
        let stale = self.stale_after_ms();
        let mut inv = self
            .heartbeat_script
            .key(self.key("replicas", format_args!("set")));
        inv.arg(&self.replica_id).arg(stale);
        let n: i64 = self.run(&inv).await?;
        let n = u32::try_from(n).unwrap_or(u32::MAX).max(1);
        self.replicas.store(n, Ordering::Relaxed);
        Ok(n)
    }

    /// Takes this replica out of the count (on shutdown).
    pub async fn leave(&self) -> Result<(), SharedError> {
        let mut conn = self.conn.clone();
        let key = self.key("replicas", format_args!("set"));
        let cmd = redis::cmd("ZREM").arg(key).arg(&self.replica_id).clone();
        let timeout = self.settings.timeout;
        match tokio::time::timeout(timeout, cmd.query_async::<i64>(&mut conn)).await {
            Ok(r) => r.map(|_| ()).map_err(SharedError::from),
            Err(_) => Err(SharedError::Timeout(timeout)),
        }
    }

    /// A replica not heard from for three health ticks is not counted.
    fn stale_after_ms(&self) -> u64 {
        u64::try_from(self.settings.health_interval.as_millis())
            .unwrap_or(u64::MAX / 4)
            .max(1)
            * 3
    }
}

/// Milliseconds since the epoch (0 before it).
pub(crate) fn millis(at: DateTime<Utc>) -> u64 {
    u64::try_from(at.timestamp_millis()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_grow_with_the_limit() {
        let s = SharedSettings::default();
        assert_eq!(s.batch(1), 1);
        assert_eq!(s.batch(100), 1);
        assert_eq!(s.batch(199), 1);
        assert_eq!(s.batch(1_000), 10);
        assert_eq!(s.batch(1_000_000), 100);
    }
}
