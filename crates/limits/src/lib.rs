//! Per-token usage limits: credits (a balance of uses with an optional daily or monthly
//! refill) and named sliding-window rate limits per token and per owner. Domain logic
//! only: the server maps a [`Decision`] to HTTP (429 `rate_limited` with `Retry-After`,
//! 429 `usage_exceeded`) and writes the credit spends the [`CreditLedger`] hands out.
//!
//! A check without any limit costs one branch ([`Request::is_unlimited`]; callers test it
//! before building anything else). Other checks are answered from memory, under at most
//! two shard locks and without allocating, whenever they can: always with one replica
//! ([`Limiter::local`]), and with several ([`Limiter::with_redis`]) whenever this replica
//! holds a lease for every limit involved, or Redis recently refused one of them. Only
//! otherwise does [`Limiter::check`] wait for Redis, once per missing lease.
//!
//! Rate limits count requests (one unit each); credits are spent by the request's cost.
//! In the header fields a token's limits keep their names and its owner's are
//! `owner:<name>`, so that both can use one name.
//!
//! # Bounds
//!
//! **Rate limits, one replica.** Exact sliding-window counting: a request is admitted
//! when the previous bucket's count, weighted by the part of it the window still covers
//! (rounded up), plus the current bucket's count stays within the limit. Like every
//! sliding-window counter this assumes the previous bucket's requests were spread evenly.
//!
//! **Rate limits, several replicas.** The replicas together never admit more than one
//! such counter would: every leased unit was admissible when Redis granted it, and a
//! window's estimate only falls within a bucket, so it is still admissible when spent
//! there; a lease dies at the end of its bucket. Units leased but not spent still count:
//! per limit and bucket, at most `replicas × batch` units go unspent (`batch` is 1 for
//! limits up to 100, `limit / 100` beyond, at most [`SharedSettings::max_batch`]), so a
//! client can be refused that many requests early. Redis is asked at most
//! `limit / batch` times per limit and bucket for grants; a refusal is remembered until
//! the first instant the window could admit again (exact: further takes only delay it),
//! so a client over its limit costs no round trip per request. Buckets follow Redis's
//! clock, so replica clock skew does not matter. Counts are exact in the scripts' arithmetic
//! (doubles) while `previous count × window ms` stays below 2^53, and within one unit
//! beyond.
//!
//! **Redis unreachable.** A replica that cannot reach Redis within
//! [`SharedSettings::timeout`] (or whose health task's ping fails) enforces
//! `ceil(limit / replicas)` on its own counter of what it admitted (which also counted
//! what it admitted through leases, so the share includes its recent traffic), where
//! `replicas` is the count last seen through the heartbeat set. Steady fallback admits at
//! most `limit + replicas - 1` per window across replicas if the count is right (more if
//! replicas were added during the outage). In the windows where an outage begins or ends
//! the fallback and shared counts do not see each other: up to one more limit's worth may
//! be admitted then. [`Limiter::health`] reports the fallback; shared counting resumes at
//! the first successful ping.
//!
//! **Credits.** See [`credits`]: a crash loses at most one flush interval of spends (given
//! back to the token, never spent twice because of the flush); a refill happens once per
//! period. With several replicas the balance lives in Redis: a grant is the use's cost, or
//! a lease of [`SharedSettings::credit_lease_uses`] uses while the balance keeps
//! `replicas × lease` beyond it, so the replicas together never spend more than the
//! balance. Unspent leases go back after [`SharedSettings::lease_idle`] and on
//! [`Limiter::close`]; near the end of a balance a replica may refuse up to
//! `lease_idle` early while another still holds leased uses (a refusal is remembered for
//! `lease_idle`, a refill ends it). A crashed replica's unspent
//! lease (at most `credit_lease_uses` uses per token) is lost to the token. While Redis
//! is unreachable a replica spends its lease, then `balance last seen / replicas`, and
//! charges that to the shared balance when Redis is back; the balance last seen may be
//! stale by what other replicas spent since this one last asked, which bounds what an
//! outage can overspend. If Redis loses a balance it is started again from the stored one,
//! which lags by at most one flush interval of spends.

pub mod credits;
pub mod key;
mod local;
mod shared;
pub mod spec;
pub mod state;
pub mod window;

use std::sync::{Arc, Weak};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sigil_core::{TokenId, UserId};

pub use credits::{CreditFlush, CreditLedger, CreditState};
pub use key::{LimitKey, LimitName, Scope};
pub use shared::SharedSettings;
pub use spec::{Credits, Interval, RateLimit, Refill};
pub use state::{CreditStatus, Decision, LimitState, LimitStatus, LimitSummary};

use credits::Exhausted;
use local::{Lease, Leased, LocalCounters, Refused, Targets};
use shared::{millis, Shared, SharedError};
use state::secs_ceil;

/// Counter shards; a power of two.
const SHARDS: usize = 64;

/// Balances unused for this long are forgotten once nothing is left to write.
const BALANCE_IDLE_MS: u64 = 3_600_000;

/// One verification to check.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub token: TokenId,
    pub owner: UserId,
    /// The token's rate limits (the tenant policy's defaults already applied).
    pub token_limits: &'a [RateLimit],
    /// The owner's rate limits, shared by all of the owner's tokens.
    pub owner_limits: &'a [RateLimit],
    pub credits: Option<&'a CreditState>,
    /// Credits this verification spends (1, or the method's cost). Rate limits count
    /// requests: each takes one unit whatever its cost.
    pub cost: u32,
}

impl Request<'_> {
    /// No limit and no credits: nothing to check.
    #[inline]
    pub fn is_unlimited(&self) -> bool {
        self.token_limits.is_empty() && self.owner_limits.is_empty() && self.credits.is_none()
    }
}

/// For readiness details and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct LimiterHealth {
    /// Counters are shared through Redis right now.
    pub shared: bool,
    pub redis_configured: bool,
    /// Replicas last counted (1 without Redis).
    pub replicas: u32,
    /// Times this replica fell back to its local share.
    pub fallbacks: u64,
}

/// The limiter: cheap to clone, one per process.
#[derive(Clone)]
pub struct Limiter {
    inner: Arc<Inner>,
}

struct Inner {
    counters: LocalCounters,
    credits: CreditLedger,
    shared: Option<Shared>,
    health_task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(mut task) = self.health_task.lock() {
            if let Some(task) = task.take() {
                task.abort();
            }
        }
    }
}

impl Limiter {
    /// Counters and balances in this process only (one replica).
    pub fn local() -> Self {
        Self::build(None)
    }

    /// Counters and balances shared through Redis at `url`. Starts even when Redis is
    /// unreachable (in fallback, until the health task reaches it); fails only on a URL
    /// that cannot be used. Must be called inside a Tokio runtime: it spawns the health
    /// task, which ends with the last clone of the limiter or [`Limiter::close`].
    pub async fn with_redis(
        url: &str,
        settings: SharedSettings,
    ) -> Result<Self, redis::RedisError> {
        let shared = Shared::connect(url, settings)?;
        let limiter = Self::build(Some(shared));
        // One tick now, so that a reachable Redis is in use from the first check.
        limiter.inner.health_tick().await;
        let weak = Arc::downgrade(&limiter.inner);
        let task = tokio::spawn(run_health(weak));
        if let Ok(mut slot) = limiter.inner.health_task.lock() {
            *slot = Some(task);
        }
        Ok(limiter)
    }

    fn build(shared: Option<Shared>) -> Self {
        Self {
            inner: Arc::new(Inner {
                counters: LocalCounters::new(SHARDS),
                credits: CreditLedger::new(shared.is_some()),
                shared,
                health_task: std::sync::Mutex::new(None),
            }),
        }
    }

    /// The credit ledger, for the periodic flush ([`CreditLedger::drain`]).
    pub fn credits(&self) -> &CreditLedger {
        &self.inner.credits
    }

    pub fn health(&self) -> LimiterHealth {
        match &self.inner.shared {
            None => LimiterHealth {
                shared: false,
                redis_configured: false,
                replicas: 1,
                fallbacks: 0,
            },
            Some(s) => LimiterHealth {
                shared: s.is_up(),
                redis_configured: true,
                replicas: s.replicas(),
                fallbacks: s.fallbacks(),
            },
        }
    }

    /// Answers from memory when it can: always without Redis, and with it when leases
    /// cover every limit involved. None means Redis must be asked: use [`Limiter::check`].
    pub fn try_check(&self, req: &Request<'_>, now: DateTime<Utc>) -> Option<Decision> {
        if req.is_unlimited() {
            return Some(Decision::UNLIMITED);
        }
        match &self.inner.shared {
            Some(shared) if shared.is_up() => self.inner.check_leased(req, now),
            shared => Some(self.inner.check_local(req, now, shared.as_ref())),
        }
    }

    /// Checks one verification, charging every limit and the credits, or none of them.
    /// Waits for Redis only when a lease is missing.
    pub async fn check(&self, req: &Request<'_>, now: DateTime<Utc>) -> Decision {
        if let Some(d) = self.try_check(req, now) {
            return d;
        }
        let Some(shared) = &self.inner.shared else {
            return self.inner.check_local(req, now, None);
        };
        match self.inner.check_shared(shared, req, now).await {
            Ok(d) => d,
            Err(e) => {
                shared.mark_down(&e);
                self.inner.check_local(req, now, Some(shared))
            }
        }
    }

    /// Stops the health task, returns unspent credit leases and leaves the replica count.
    /// Spends still to write stay in [`Limiter::credits`] for a last flush.
    pub async fn close(&self) {
        let task = self
            .inner
            .health_task
            .lock()
            .ok()
            .and_then(|mut t| t.take());
        if let Some(task) = task {
            task.abort();
        }
        let Some(shared) = &self.inner.shared else {
            return;
        };
        if !shared.is_up() {
            return;
        }
        for parcel in self.inner.credits.all_leases() {
            if shared.settle(&parcel, false).await.is_err() {
                self.inner.credits.keep_lease(&parcel);
            }
        }
        let _ = shared.leave().await;
    }

    /// Redis scripts run so far, health ticks included (for metrics; 0 without Redis).
    pub fn round_trips(&self) -> u64 {
        self.inner.shared.as_ref().map_or(0, |s| s.round_trips())
    }

    /// Rate-limit counters held in memory (for metrics).
    pub fn counters_held(&self) -> usize {
        self.inner.counters.len()
    }

    /// Forgets credit balances unused for an hour whose spends are all written. Call it
    /// now and then (the credit flush task does); with Redis the health task does it too.
    pub fn sweep(&self, now: DateTime<Utc>) {
        self.inner.credits.sweep(millis(now), BALANCE_IDLE_MS);
    }

    /// Runs one health tick now (the task runs them every `health_interval`).
    pub async fn tick(&self) {
        self.inner.health_tick().await;
    }
}

fn duration_ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

async fn run_health(inner: Weak<Inner>) {
    let every = match inner
        .upgrade()
        .and_then(|i| i.shared.as_ref().map(|s| s.settings.health_interval))
    {
        Some(every) => every,
        None => return,
    };
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        inner.health_tick().await;
    }
}

impl Inner {
    /// Pings Redis (announcing this replica); on the way back from an outage charges the
    /// fallback spends first; returns idle credit leases; forgets idle balances.
    async fn health_tick(&self) {
        let now_ms = millis(Utc::now());
        let Some(shared) = &self.shared else {
            return;
        };
        if let Err(e) = shared.heartbeat().await {
            shared.mark_down(&e);
            return;
        }
        if !shared.is_up() {
            for debt in self.credits.debts() {
                if let Err(e) = shared.settle(&debt, true).await {
                    self.credits.keep_debt(&debt);
                    shared.mark_down(&e);
                    return;
                }
            }
            shared.mark_up();
        }
        let idle_ms = duration_ms(shared.settings.lease_idle);
        for parcel in self.credits.idle_leases(now_ms, idle_ms) {
            if let Err(e) = shared.settle(&parcel, false).await {
                self.credits.keep_lease(&parcel);
                shared.mark_down(&e);
                return;
            }
        }
        self.credits.sweep(now_ms, BALANCE_IDLE_MS);
    }

    /// Without Redis, or while it is unreachable (`shared` then gives the share).
    fn check_local(
        &self,
        req: &Request<'_>,
        now: DateTime<Utc>,
        shared: Option<&Shared>,
    ) -> Decision {
        let now_ms = millis(now);
        let targets = Targets::new(req.token, req.owner, req.token_limits, req.owner_limits);
        let (divisor, outage) = shared.map_or((1, 0), |s| (s.replicas(), s.outage()));
        let mut state = LimitState::EMPTY;
        let mut credits = None;
        let cost = u64::from(req.cost);
        let outcome = self
            .counters
            .take(&targets, now_ms, divisor, &mut state, || {
                let Some(c) = req.credits else {
                    return Ok(());
                };
                let u = credits::Use {
                    token: req.token,
                    state: c,
                    cost,
                    now,
                    now_ms,
                };
                let spent = if shared.is_some() {
                    self.credits.spend_fallback(u, divisor, outage)
                } else {
                    self.credits.spend_local(u)
                };
                match spent {
                    Ok(status) => {
                        credits = Some(status);
                        Ok(())
                    }
                    Err(Exhausted { status }) => {
                        credits = Some(status);
                        Err(status.next_refill)
                    }
                }
            });
        if let Some(c) = credits {
            state.set_credits(c);
        }
        match outcome {
            Ok(()) => Decision::Allowed { state },
            Err(Refused::Rate { retry_after_ms }) => Decision::RateLimited {
                retry_after_secs: secs_ceil(retry_after_ms).max(1),
                state,
            },
            Err(Refused::Other(next_refill)) => Decision::UsageExceeded { next_refill, state },
        }
    }

    /// With Redis up: from leases (and refusals Redis gave recently) only, or None.
    fn check_leased(&self, req: &Request<'_>, now: DateTime<Utc>) -> Option<Decision> {
        let now_ms = millis(now);
        let targets = Targets::new(req.token, req.owner, req.token_limits, req.owner_limits);
        let mut state = LimitState::EMPTY;
        let mut credits = None;
        let cost = u64::from(req.cost);
        let taken = self.counters.take_leased(&targets, now_ms, &mut state, || {
            let Some(c) = req.credits else {
                return Ok(true);
            };
            let u = credits::Use {
                token: req.token,
                state: c,
                cost,
                now,
                now_ms,
            };
            match self.credits.spend_leased(u) {
                Ok(status) => {
                    credits = status;
                    Ok(status.is_some())
                }
                Err(Exhausted { status }) => {
                    credits = Some(status);
                    Err(status.next_refill)
                }
            }
        });
        if let Some(c) = credits {
            state.set_credits(c);
        }
        match taken {
            Leased::Taken => Some(Decision::Allowed { state }),
            Leased::Refused { retry_after_ms } => Some(Decision::RateLimited {
                retry_after_secs: secs_ceil(retry_after_ms).max(1),
                state,
            }),
            Leased::Other(next_refill) => Some(Decision::UsageExceeded { next_refill, state }),
            Leased::Missing => None,
        }
    }

    /// With Redis up and some lease missing: keeps what leases cover, asks Redis for the
    /// rest (the windows first, then the credits), and charges all or nothing.
    async fn check_shared(
        &self,
        shared: &Shared,
        req: &Request<'_>,
        now: DateTime<Utc>,
    ) -> Result<Decision, SharedError> {
        let now_ms = millis(now);
        let all = Targets::new(req.token, req.owner, req.token_limits, req.owner_limits);
        let targets = all.as_slice();
        let mut statuses = [None; state::MAX_LIMITS_PER_CHECK];
        // Units taken for this request from a lease (to give back on a refusal).
        let mut reserved = [false; state::MAX_LIMITS_PER_CHECK];
        let mut refused = false;
        let mut retry_after_ms = 0;
        for (i, t) in targets.iter().enumerate() {
            statuses[i] = self.counters.reserve(t, now_ms);
            reserved[i] = statuses[i].is_some();
        }
        for (i, t) in targets.iter().enumerate() {
            if reserved[i] {
                continue;
            }
            let grant = match shared.lease_window(t, shared.settings.batch(t.limit)).await {
                Ok(g) => g,
                Err(e) => {
                    self.unreserve(targets, &reserved, now_ms);
                    return Err(e);
                }
            };
            let reset_ms = grant.view.reset_after_ms();
            if grant.granted == 0 {
                refused = true;
                let retry_ms = grant.view.retry_after_ms(1, u64::from(t.limit));
                retry_after_ms = retry_after_ms.max(retry_ms);
                self.counters.refuse(t, now_ms, retry_ms, reset_ms);
                statuses[i] = Some(t.status(0, reset_ms));
                continue;
            }
            let lease = Lease {
                units: grant.granted - 1,
                expires_ms: now_ms + (t.window_ms - grant.view.elapsed_ms),
                others_remaining: grant.others_remaining,
                reset_at_ms: now_ms + reset_ms,
                refused_until_ms: 0,
            };
            statuses[i] = Some(self.counters.add_lease(t, now_ms, lease));
            reserved[i] = true;
        }
        let mut state = LimitState::EMPTY;
        for s in statuses.iter().flatten() {
            state.push(*s);
        }
        if refused {
            self.unreserve(targets, &reserved, now_ms);
            return Ok(Decision::RateLimited {
                retry_after_secs: secs_ceil(retry_after_ms).max(1),
                state,
            });
        }
        if let Some(c) = req.credits {
            let cost = u64::from(req.cost);
            let u = credits::Use {
                token: req.token,
                state: c,
                cost,
                now,
                now_ms,
            };
            let status = match self.credits.spend_leased(u) {
                Ok(Some(s)) => s,
                Err(Exhausted { status }) => {
                    self.unreserve(targets, &reserved, now_ms);
                    state.set_credits(status);
                    return Ok(Decision::UsageExceeded {
                        next_refill: status.next_refill,
                        state,
                    });
                }
                Ok(None) => {
                    let reply = match shared.take_credits(req.token, c, cost, now).await {
                        Ok(r) => r,
                        Err(e) => {
                            self.unreserve(targets, &reserved, now_ms);
                            return Err(e);
                        }
                    };
                    let hold_ms = duration_ms(shared.settings.lease_idle);
                    match self.credits.granted(u, reply, hold_ms) {
                        Ok(s) => s,
                        Err(Exhausted { status }) => {
                            self.unreserve(targets, &reserved, now_ms);
                            state.set_credits(status);
                            return Ok(Decision::UsageExceeded {
                                next_refill: status.next_refill,
                                state,
                            });
                        }
                    }
                }
            };
            state.set_credits(status);
        }
        self.counters.record(&all, now_ms);
        Ok(Decision::Allowed { state })
    }

    fn unreserve(&self, targets: &[local::Target], reserved: &[bool], now_ms: u64) {
        for (t, r) in targets.iter().zip(reserved) {
            if *r {
                self.counters.unreserve(t, now_ms);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn credits(remaining: u64) -> CreditState {
        CreditState {
            remaining,
            version: 1,
            refill: Some(Refill {
                interval: Interval::Monthly,
                amount: 100,
                day: None,
            }),
            refilled_at: at("2024-05-01T00:00:00Z"),
        }
    }

    #[test]
    fn no_limits_is_allowed_with_nothing_to_report() {
        let l = Limiter::local();
        let req = Request {
            token: TokenId::new(),
            owner: UserId::new(),
            token_limits: &[],
            owner_limits: &[],
            credits: None,
            cost: 1,
        };
        assert!(req.is_unlimited());
        let d = l.try_check(&req, Utc::now()).unwrap();
        assert_eq!(d, Decision::UNLIMITED);
        assert!(d.state().is_empty());
        assert_eq!(l.counters_held(), 0);
    }

    #[test]
    fn a_rate_refusal_spends_no_credit_and_a_credit_refusal_no_rate() {
        let l = Limiter::local();
        let now = at("2024-05-10T12:00:00Z");
        let token_limits = [RateLimit::new("burst", 60, 2)];
        let state = credits(3);
        let mut req = Request {
            token: TokenId::new(),
            owner: UserId::new(),
            token_limits: &token_limits,
            owner_limits: &[],
            credits: Some(&state),
            cost: 1,
        };
        for left in [2, 1] {
            let d = l.try_check(&req, now).unwrap();
            assert!(d.is_allowed());
            assert_eq!(d.state().credits().unwrap().remaining, left);
        }
        let d = l.try_check(&req, now).unwrap();
        let Decision::RateLimited {
            retry_after_secs,
            state: s,
        } = d
        else {
            panic!("not rate limited: {d:?}")
        };
        assert_eq!(d.code(), Some("rate_limited"));
        assert_eq!(retry_after_secs, 90, "the previous bucket weighs half then");
        assert_eq!(s.ratelimit_header().unwrap(), "\"burst\";r=0;t=120");
        assert_eq!(s.policy_header().unwrap(), "\"burst\";q=2;w=60");
        // Two and a half minutes later the window is empty, but the cost is too high.
        let later = now + chrono::Duration::seconds(150);
        req.cost = 2;
        let d = l.try_check(&req, later).unwrap();
        let Decision::UsageExceeded { next_refill, state } = d else {
            panic!("not exceeded: {d:?}")
        };
        assert_eq!(next_refill, Some(at("2024-06-01T00:00:00Z")));
        assert_eq!(state.limits()[0].remaining, 2, "the window was not charged");
        assert_eq!(state.credits().unwrap().remaining, 1);
        req.cost = 1;
        assert!(l.try_check(&req, later).unwrap().is_allowed());
        let flush = l.credits().drain();
        assert_eq!(flush[0].spent, 3);
    }

    #[test]
    fn owner_limits_are_shared_by_the_owners_tokens() {
        let l = Limiter::local();
        let now = Utc::now();
        let owner = UserId::new();
        let owner_limits = [RateLimit::new("all", 3600, 3)];
        let mut admitted = 0;
        for _ in 0..3 {
            let token = TokenId::new();
            for _ in 0..2 {
                let req = Request {
                    token,
                    owner,
                    token_limits: &[],
                    owner_limits: &owner_limits,
                    credits: None,
                    cost: 1,
                };
                if l.try_check(&req, now).unwrap().is_allowed() {
                    admitted += 1;
                }
            }
        }
        assert_eq!(admitted, 3);
    }

    #[tokio::test]
    async fn an_unreachable_redis_starts_in_fallback() {
        let settings = SharedSettings {
            timeout: std::time::Duration::from_millis(100),
            ..SharedSettings::default()
        };
        // Nothing listens on port 1.
        let l = Limiter::with_redis("redis://127.0.0.1:1", settings)
            .await
            .unwrap();
        let h = l.health();
        assert!(!h.shared && h.redis_configured);
        assert_eq!(h.replicas, 1);
        let limits = [RateLimit::new("x", 60, 1)];
        let req = Request {
            token: TokenId::new(),
            owner: UserId::new(),
            token_limits: &limits,
            owner_limits: &[],
            credits: None,
            cost: 1,
        };
        assert!(l.try_check(&req, Utc::now()).unwrap().is_allowed());
        assert!(!l.check(&req, Utc::now()).await.is_allowed());
        assert!(Limiter::with_redis("not a url", SharedSettings::default())
            .await
            .is_err());
    }
}
