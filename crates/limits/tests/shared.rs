//! Limiters sharing one Redis, as replicas do. Needs Redis at 127.0.0.1:6379 (these tests
//! fail, with what to do, when it is not there).

// Test set-up fails loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use redis::AsyncCommands;
use sigil_core::{TokenId, UserId};
use sigil_limits::spec::MAX_WINDOW_SECS;
use sigil_limits::{CreditState, Decision, Interval, Limiter, RateLimit, Refill, Request};

use common::{cleanup, eventually, limiter, prefix, redis, Proxy, REDIS_ADDR};

/// What one check asks for.
#[derive(Clone)]
struct Ask {
    token: TokenId,
    owner: UserId,
    token_limits: Vec<RateLimit>,
    owner_limits: Vec<RateLimit>,
    credits: Option<CreditState>,
}

impl Ask {
    fn new() -> Self {
        Self {
            token: TokenId::new(),
            owner: UserId::new(),
            token_limits: Vec::new(),
            owner_limits: Vec::new(),
            credits: None,
        }
    }

    async fn check(&self, limiter: &Limiter, now: DateTime<Utc>) -> Decision {
        let req = Request {
            token: self.token,
            owner: self.owner,
            token_limits: &self.token_limits,
            owner_limits: &self.owner_limits,
            credits: self.credits.as_ref(),
            cost: 1,
        };
        limiter.check(&req, now).await
    }
}

/// Fires `per_limiter` checks through each limiter, from `tasks` concurrent tasks per
/// limiter; returns how many each limiter allowed.
async fn burst(
    limiters: &[Limiter],
    ask: &Ask,
    per_limiter: u64,
    tasks: u64,
    now: fn() -> DateTime<Utc>,
) -> Vec<u64> {
    let counts: Vec<Arc<AtomicU64>> = limiters.iter().map(|_| Arc::default()).collect();
    let mut set = tokio::task::JoinSet::new();
    for (limiter, count) in limiters.iter().zip(&counts) {
        for _ in 0..tasks {
            let (limiter, count, ask) = (limiter.clone(), count.clone(), ask.clone());
            set.spawn(async move {
                for _ in 0..per_limiter / tasks {
                    if ask.check(&limiter, now()).await.is_allowed() {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    counts.iter().map(|c| c.load(Ordering::Relaxed)).collect()
}

async fn three(prefix: &str) -> Vec<Limiter> {
    let mut out = Vec::new();
    for _ in 0..3 {
        out.push(limiter(REDIS_ADDR, prefix).await);
    }
    for l in &out {
        l.tick().await;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_together_stay_within_the_limit() {
    redis().await;
    let prefix = prefix();
    let limiters = three(&prefix).await;
    assert!(limiters.iter().all(|l| l.health().shared));
    assert_eq!(limiters[0].health().replicas, 3);

    // A long window: the burst stays inside one bucket of Redis's clock.
    let limit = 1_000;
    let mut ask = Ask::new();
    ask.token_limits = vec![RateLimit::new("burst", MAX_WINDOW_SECS, limit)];
    ask.owner_limits = vec![RateLimit::new("owner", MAX_WINDOW_SECS, 50_000)];
    let trips_before: u64 = limiters.iter().map(Limiter::round_trips).sum();
    let counts = burst(&limiters, &ask, 900, 6, Utc::now).await;
    let admitted: u64 = counts.iter().sum();
    let trips = limiters.iter().map(Limiter::round_trips).sum::<u64>() - trips_before;
    // Leases of 10 (token) and 100 (owner) units, and refusals answered locally once
    // Redis has refused: a few hundred round trips for 2,700 checks, health ticks included.
    assert!(trips < 250, "{trips} Redis round trips for 2,700 checks");
    // Leases of limit / 100 = 10: at most 3 × 10 units may be left unspent.
    assert!(
        admitted <= u64::from(limit) && admitted >= u64::from(limit) - 30,
        "admitted {admitted} ({counts:?}) of {limit}"
    );
    assert!(
        counts.iter().all(|c| *c > 0),
        "every replica served: {counts:?}"
    );

    // A refusal carries the headers' state and a retry time.
    let d = ask.check(&limiters[0], Utc::now()).await;
    let Decision::RateLimited {
        retry_after_secs,
        state,
    } = d
    else {
        panic!("not refused: {d:?}")
    };
    assert!(retry_after_secs >= 1);
    assert!(state
        .ratelimit_header()
        .unwrap()
        .starts_with("\"burst\";r=0;t="));
    assert!(state
        .policy_header()
        .unwrap()
        .contains("\"owner:owner\";q=50000;w="));

    // The owner's limit is shared by its tokens across replicas.
    let owner = UserId::new();
    let mut admitted = 0;
    for i in 0..30 {
        let mut ask = Ask::new();
        ask.owner = owner;
        ask.owner_limits = vec![RateLimit::new("all", MAX_WINDOW_SECS, 20)];
        if ask.check(&limiters[i % 3], Utc::now()).await.is_allowed() {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 20, "limits up to 100 lease one unit at a time");

    for l in &limiters {
        l.close().await;
    }
    cleanup(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_answered_locally_until_the_window_admits() {
    redis().await;
    let prefix = prefix();
    let a = limiter(REDIS_ADDR, &prefix).await;
    let mut ask = Ask::new();
    ask.token_limits = vec![RateLimit::new("short", 2, 3)];
    assert_eq!(
        burst(std::slice::from_ref(&a), &ask, 3, 1, Utc::now).await,
        [3]
    );
    let d = ask.check(&a, Utc::now()).await;
    let Decision::RateLimited {
        retry_after_secs, ..
    } = d
    else {
        panic!("not refused: {d:?}")
    };
    assert!((1..=4).contains(&retry_after_secs), "{retry_after_secs}");
    // Further refusals need no Redis (the health task's ticks aside).
    let trips = a.round_trips();
    for _ in 0..50 {
        if let Some(d) = a.try_check(
            &Request {
                token: ask.token,
                owner: ask.owner,
                token_limits: &ask.token_limits,
                owner_limits: &[],
                credits: None,
                cost: 1,
            },
            Utc::now(),
        ) {
            assert!(!d.is_allowed());
        }
    }
    assert!(a.round_trips() - trips <= 2);
    // The window admits again no later than it said.
    tokio::time::sleep(std::time::Duration::from_secs(u64::from(retry_after_secs))).await;
    assert!(ask.check(&a, Utc::now()).await.is_allowed());
    a.close().await;
    cleanup(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_falls_back_to_shares_and_comes_back() {
    redis().await;
    let prefix = prefix();
    let proxy = Proxy::start(0).await;
    let a = limiter(&proxy.addr(), &prefix).await;
    let b = limiter(REDIS_ADDR, &prefix).await;
    let c = limiter(REDIS_ADDR, &prefix).await;
    for l in [&a, &b, &c] {
        l.tick().await;
    }
    eventually(3, "a counts three replicas", || a.health().replicas == 3).await;
    assert!(a.health().shared);

    let limit = 300;
    let mut rate = Ask::new();
    rate.token_limits = vec![RateLimit::new("hourly", MAX_WINDOW_SECS, limit)];
    let mut paid = Ask::new();
    paid.credits = Some(CreditState {
        remaining: 90,
        version: 1,
        refill: None,
        refilled_at: Utc::now(),
    });

    // Shared counting: b takes 60 requests and 15 uses.
    assert_eq!(
        burst(std::slice::from_ref(&b), &rate, 60, 1, Utc::now).await,
        [60]
    );
    assert_eq!(
        burst(std::slice::from_ref(&b), &paid, 15, 1, Utc::now).await,
        [15]
    );

    // Redis becomes unreachable for a only.
    proxy.stop().await;
    eventually(5, "a falls back", || !a.health().shared).await;
    let health = a.health();
    assert_eq!((health.fallbacks, health.replicas), (1, 3));
    assert!(b.health().shared);

    // a enforces its share, ceil(300 / 3), without waiting for Redis.
    let started = std::time::Instant::now();
    assert_eq!(
        burst(std::slice::from_ref(&a), &rate, 200, 2, Utc::now).await,
        [100]
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    // And spends a third of the balance it knows (90) from its credits.
    assert_eq!(
        burst(std::slice::from_ref(&a), &paid, 50, 1, Utc::now).await,
        [30]
    );
    // b keeps counting in Redis.
    assert_eq!(
        burst(std::slice::from_ref(&b), &rate, 100, 1, Utc::now).await,
        [100]
    );

    // Redis is back: a counts in Redis again, where 160 of 300 are taken (b may hold up
    // to two leased units it has not spent).
    let proxy = Proxy::start(proxy.port).await;
    eventually(5, "a uses Redis again", || a.health().shared).await;
    assert_eq!(a.health().fallbacks, 1);
    let after = burst(std::slice::from_ref(&a), &rate, 300, 2, Utc::now).await[0];
    assert!(
        (138..=140).contains(&after),
        "a admitted {after} after the outage, expected 140 less b's leftovers"
    );

    // a's fallback spends were charged to the shared balance: 90 - 15 - 30 are left,
    // once every lease is back.
    for l in [&a, &b, &c] {
        l.close().await;
    }
    let mut conn = redis().await;
    let left: u64 = conn
        .hget(format!("{prefix}:cr:{}", paid.token), "r")
        .await
        .unwrap();
    assert_eq!(left, 45);
    proxy.stop().await;
    cleanup(&prefix).await;
}

fn day1() -> DateTime<Utc> {
    "2024-02-28T10:00:00Z".parse().unwrap()
}

fn day2() -> DateTime<Utc> {
    "2024-02-29T10:00:00Z".parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credits_are_never_overspent_and_refill_once() {
    redis().await;
    let prefix = prefix();
    let limiters = three(&prefix).await;
    let mut ask = Ask::new();
    let state = CreditState {
        remaining: 100,
        version: 1,
        refill: Some(Refill {
            interval: Interval::Daily,
            amount: 100,
            day: None,
        }),
        refilled_at: "2024-02-28T00:00:00Z".parse().unwrap(),
    };
    ask.credits = Some(state);
    let key = format!("{prefix}:cr:{}", ask.token);
    let balance = |conn: &mut redis::aio::MultiplexedConnection| {
        let mut conn = conn.clone();
        let key = key.clone();
        async move {
            let r: u64 = conn.hget(&key, "r").await.unwrap();
            let p: i64 = conn.hget(&key, "p").await.unwrap();
            (r, p)
        }
    };
    let mut conn = redis().await;

    for (day, period) in [(day1 as fn() -> _, "2024-02-28"), (day2, "2024-02-29")] {
        let counts = burst(&limiters, &ask, 80, 4, day).await;
        let allowed: u64 = counts.iter().sum();
        assert!(
            allowed <= 100,
            "{period}: spent {allowed} ({counts:?}) of 100"
        );
        // Every unspent lease goes back; nothing is lost or spent twice.
        for l in &limiters {
            l.close().await;
        }
        let (left, p) = balance(&mut conn).await;
        assert_eq!(
            allowed + left,
            100,
            "{period}: {allowed} spent, {left} left"
        );
        let start: DateTime<Utc> = format!("{period}T00:00:00Z").parse().unwrap();
        assert_eq!(
            p,
            start.timestamp_millis(),
            "one refill, at the period's start"
        );
        // The spends to write: all in this period, adding up to what was allowed.
        let flush: Vec<_> = limiters.iter().flat_map(|l| l.credits().drain()).collect();
        assert!(flush
            .iter()
            .all(|f| f.refilled_at == start && f.version == 1));
        assert_eq!(flush.iter().map(|f| f.spent).sum::<u64>(), allowed);
    }

    // An admin's new value (a new version) replaces the live balance everywhere.
    ask.credits = Some(CreditState {
        remaining: 7,
        version: 2,
        refilled_at: "2024-02-29T00:00:00Z".parse().unwrap(),
        ..state
    });
    let counts = burst(&limiters, &ask, 30, 3, day2).await;
    assert_eq!(counts.iter().sum::<u64>(), 7, "{counts:?}");
    let d = ask.check(&limiters[0], day2()).await;
    let Decision::UsageExceeded { next_refill, .. } = d else {
        panic!("not exceeded: {d:?}")
    };
    assert_eq!(next_refill, Some("2024-03-01T00:00:00Z".parse().unwrap()));
    cleanup(&prefix).await;
}
