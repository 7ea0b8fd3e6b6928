//! Cost of a limit check on the verification path, answered from memory (one replica, or
//! a replica holding leases): no limit at all, one token limit, and token and owner
//! limits with credits.
//!
//! Run: `cargo bench -p sigil-limits --bench limits`.

// Benchmark set-up fails loudly: a broken fixture must stop the run.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use chrono::Utc;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use sigil_core::{TokenId, UserId};
use sigil_limits::{CreditState, Interval, Limiter, RateLimit, Refill, Request};

fn bench(c: &mut Criterion) {
    let limiter = Limiter::local();
    let (token, owner) = (TokenId::new(), UserId::new());
    // Limits no run can reach, so every check is admitted and charged.
    let token_limits = [RateLimit::new("per-minute", 60, 1_000_000_000)];
    let owner_limits = [
        RateLimit::new("per-hour", 3600, 1_000_000_000),
        RateLimit::new("per-day", 86_400, 1_000_000_000),
    ];
    let credits = CreditState {
        remaining: 1_000_000_000_000_000,
        version: 1,
        refill: Some(Refill {
            interval: Interval::Monthly,
            amount: 1_000_000_000_000_000,
            day: None,
        }),
        refilled_at: Utc::now(),
    };
    // Many other holders, so the maps are not trivially small.
    for _ in 0..10_000 {
        let req = Request {
            token: TokenId::new(),
            owner: UserId::new(),
            token_limits: &token_limits,
            owner_limits: &owner_limits,
            credits: Some(&credits),
            cost: 1,
        };
        limiter.try_check(&req, Utc::now()).unwrap();
    }
    let now = Utc::now();

    let mut group = c.benchmark_group("limits");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("baseline: Utc::now()", |b| b.iter(|| black_box(Utc::now())));
    let none = Request {
        token,
        owner,
        token_limits: &[],
        owner_limits: &[],
        credits: None,
        cost: 1,
    };
    group.bench_function("local check: no limits", |b| {
        b.iter(|| limiter.try_check(black_box(&none), now).unwrap())
    });
    let one = Request {
        token_limits: &token_limits,
        ..none
    };
    group.bench_function("local check: one token limit", |b| {
        b.iter(|| limiter.try_check(black_box(&one), now).unwrap())
    });
    let all = Request {
        token_limits: &token_limits,
        owner_limits: &owner_limits,
        credits: Some(&credits),
        ..none
    };
    group.bench_function("local check: token + 2 owner limits + credits", |b| {
        b.iter(|| limiter.try_check(black_box(&all), now).unwrap())
    });
    let one_state = limiter.try_check(&one, now).unwrap();
    group.bench_function("render: RateLimit-Policy and RateLimit", |b| {
        b.iter(|| {
            let s = black_box(&one_state).state();
            (s.policy_header(), s.ratelimit_header())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
