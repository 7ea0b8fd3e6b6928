//! Verification cost: a cache hit (with and without usage limits), a miss (signature +
//! database), and minting, each next to a baseline measured in the same run (SHA-256 of
//! the credential, which every verification computes first). The signature alone is
//! measured too: the raw Ed25519 sign and verify of ed25519-dalek (the limit on this
//! machine), `jwt::sign` and `jwt::verify` (that plus JSON and base64), and the same
//! through `jsonwebtoken`, as tokens were signed and verified before.

// Benchmark set-up fails loudly: a broken fixture must stop the run.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ed25519_dalek::{Signature, Signer, Verifier};
use sigil_token::verifier::{Attempt, CacheSettings, Client, Target, Transport};

/// A call of `me.get` (getCurrentUser) with `secret` in a header.
fn me_get(secret: &str, ip: Option<std::net::IpAddr>) -> Attempt<'_> {
    Attempt {
        credential: Some((secret, Transport::Header)),
        client: Client::At(ip),
        user_agent: None,
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
    signatures(&mut group, &rt, &f, &hot);
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

/// The signature alone: raw Ed25519 (the limit), the JWT helpers, and `jsonwebtoken`.
fn signatures(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    f: &common::Fixture,
    secret: &str,
) {
    use jsonwebtoken::{Algorithm, Header, Validation};
    use sigil_token::jwt;
    let tenant = f.admin.tenant_id;
    let key = rt.block_on(f.keys.signing_key(tenant)).unwrap();
    let signing = key.signing.as_ref().unwrap();
    let (message, _) = secret.rsplit_once('.').unwrap();
    let signature: Signature = signing.sign(message.as_bytes());
    group.bench_function("baseline: ed25519 sign (ed25519-dalek alone)", |b| {
        b.iter(|| black_box(signing.sign(black_box(message.as_bytes()))))
    });
    group.bench_function(
        "baseline: ed25519 verify (ed25519-dalek verify_strict alone)",
        |b| {
            b.iter(|| {
                key.verifying
                    .verify_strict(black_box(message.as_bytes()), black_box(&signature))
                    .unwrap()
            })
        },
    );
    // The same without the small-order checks (what jwt::verify runs, with those checks
    // made on the encodings).
    group.bench_function(
        "baseline: ed25519 verify (ed25519-dalek verify alone)",
        |b| {
            b.iter(|| {
                key.verifying
                    .verify(black_box(message.as_bytes()), black_box(&signature))
                    .unwrap()
            })
        },
    );
    let claims = jwt::verify(secret, &key, tenant).unwrap();
    group.bench_function("jwt: sign, ed25519 key decoded once (jwt::sign)", |b| {
        b.iter(|| jwt::sign(&key, black_box(&claims)).unwrap())
    });
    group.bench_function("jwt: verify, ed25519 key decoded once (jwt::verify)", |b| {
        b.iter(|| jwt::verify(black_box(secret), &key, tenant).unwrap())
    });
    // As before: jsonwebtoken parses the PKCS#8 key for every signature and decompresses
    // the public key for every verification.
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(key.kid.clone());
    header.typ = Some(jwt::TOKEN_TYP.into());
    let encoding = key.encoding.as_ref().unwrap();
    group.bench_function("jwt: sign, ed25519 through jsonwebtoken (before)", |b| {
        b.iter(|| jsonwebtoken::encode(&header, black_box(&claims), encoding).unwrap())
    });
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.leeway = jwt::LEEWAY_SECS;
    validation.validate_nbf = true;
    validation.validate_exp = false;
    validation.set_issuer(&[jwt::issuer(tenant)]);
    validation.set_required_spec_claims(&["iss", "sub", "jti"]);
    group.bench_function("jwt: verify, ed25519 through jsonwebtoken (before)", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<jwt::Claims>(black_box(secret), &key.decoding, &validation)
                .unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
