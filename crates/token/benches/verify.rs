//! Verification cost: a cache hit (with and without usage limits), a miss (signature +
//! database), and minting, each next to a baseline measured in the same run (SHA-256 of
//! the credential, which every verification computes first).

// Benchmark set-up fails loudly: a broken fixture must stop the run.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use sigil_token::verifier::{Attempt, CacheSettings, Client, Target, Transport};

/// A call of `me.get` (getCurrentUser) with `secret` in a header.
fn me_get(secret: &str, ip: Option<std::net::IpAddr>) -> Attempt<'_> {
    Attempt {
        credential: Some((secret, Transport::Header)),
        client: Client::At(ip),
        target: Target::Call("me.get"),
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (f, secrets) = rt.block_on(async {
        let f = common::fixture(CacheSettings::default()).await;
        let secrets = common::store_tokens(&f, 2000).await;
        (f, secrets)
    });
    let ip = Some("127.0.0.1".parse().unwrap());
    let hot = secrets[0].clone();
    let mut group = c.benchmark_group("verification");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("baseline: sha256 of the credential", |b| {
        b.iter(|| black_box(sigil_core::crypto::sha256(black_box(hot.as_bytes()))))
    });
    // What driving one async call from the benchmark thread costs by itself (part of
    // every figure below).
    group.bench_function("baseline: block_on of a ready future", |b| {
        b.iter(|| rt.block_on(async { black_box(1) }))
    });
    rt.block_on(f.verifier.verify(me_get(&hot, ip))).unwrap();
    group.bench_function("verify: cache hit", |b| {
        b.iter(|| {
            rt.block_on(f.verifier.verify(me_get(black_box(&hot), ip)))
                .unwrap()
        })
    });
    // The same hit for a token with a rate limit and credits (never reached here), so
    // the limiter's charge is what differs.
    let limited = secrets[1].clone();
    rt.block_on(common::limit_token(&f, &limited));
    rt.block_on(f.verifier.verify(me_get(&limited, ip)))
        .unwrap();
    group.bench_function(
        "verify: cache hit, token with a rate limit and credits",
        |b| {
            b.iter(|| {
                rt.block_on(f.verifier.verify(me_get(black_box(&limited), ip)))
                    .unwrap()
            })
        },
    );
    let mut i = 0usize;
    group.bench_function("verify: cache miss (signature + database)", |b| {
        b.iter(|| {
            // Dropping this token's entry first makes every round a full verification
            // (the tenant and its keys stay cached, as they do in service).
            i = (i + 1) % secrets.len();
            f.verifier.forget(&secrets[i]);
            rt.block_on(f.verifier.verify(me_get(&secrets[i], ip)))
                .unwrap()
        })
    });
    // Minting runs in a tenant of its own, so that the 2,000 tokens above do not weigh
    // on the owner's session housekeeping.
    let m = rt.block_on(common::fixture(CacheSettings::default()));
    group.sample_size(20);
    group.bench_function("mint: session token (sign + insert)", |b| {
        b.iter(|| {
            rt.block_on(m.tokens.create_session(&m.admin, 3600))
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
