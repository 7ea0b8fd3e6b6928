//! Verification cost: a cache hit, a miss (signature + database), and minting, each next
//! to a baseline measured in the same run (SHA-256 of the credential, which every
//! verification computes first).

// Benchmark set-up fails loudly: a broken fixture must stop the run.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use sigil_core::crypto::MasterKey;
use sigil_scope_registry::store::{PluginStore, ScopeSetStore};
use sigil_scope_registry::{
    HttpRoute, ManifestMethod, PluginManifest, RegisteredPlugin, Registry, Snapshot,
};
use sigil_tenant::platform::PlatformKey;
use sigil_tenant::{KeyRing, NewTenant, TenantService};
use sigil_token::verifier::{CacheSettings, Transport, VerifierDeps};
use sigil_token::{ChangeFeed, TokenService, UsageRecorder, Verifier};
use sigil_user::{PasswordHasher, PasswordParams, User, UserService};

struct Fixture {
    rt: tokio::runtime::Runtime,
    verifier: Verifier,
    tokens: TokenService,
    admin: User,
    secrets: Vec<String>,
}

fn builtin() -> PluginManifest {
    let method = |id: &str, verb: &str, path: &str| ManifestMethod {
        id: id.into(),
        http: HttpRoute::new(verb, path),
        access: sigil_scope_registry::Access::for_http_method(verb),
        description: String::new(),
        docs_url: None,
    };
    PluginManifest {
        id: "sigil".into(),
        name: "Sigil".into(),
        version: "1".into(),
        description: None,
        docs_url: None,
        methods: vec![
            method("me.get", "GET", "/api/v1/users/me"),
            method("tokens.create", "POST", "/api/v1/tokens"),
        ],
        scope_sets: vec![],
    }
}

fn fixture() -> Fixture {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (verifier, tokens, admin, secrets) = rt.block_on(async {
        let db = sigil_core::db::connect("sqlite::memory:", 1).await.unwrap();
        sigil_migrations::migrate(&db).await.unwrap();
        let master = MasterKey::generate();
        let tenants = TenantService::new(db.clone());
        let users = UserService::new(
            db.clone(),
            PasswordHasher::new(PasswordParams::default()).unwrap(),
        );
        let keys = KeyRing::new(db.clone(), master.clone());
        let onboarded = sigil_user::onboard_tenant(
            &db,
            &tenants,
            &keys,
            &users,
            NewTenant {
                slug: "bench".into(),
                name: None,
                policy: None,
            },
            None,
            None,
        )
        .await
        .unwrap();
        let registry = Arc::new(Registry::new(
            Snapshot::build(vec![RegisteredPlugin::global(builtin())]).unwrap(),
        ));
        let sets = ScopeSetStore::new(db.clone());
        let _ = PluginStore::new(db.clone());
        let changes = Arc::new(ChangeFeed::new(db.clone()));
        let tokens = TokenService::new(
            db.clone(),
            keys.clone(),
            users.clone(),
            registry.clone(),
            sets.clone(),
            changes,
        );
        let deps = VerifierDeps {
            db: db.clone(),
            tenants,
            users,
            keys,
            platform: PlatformKey::load_or_create(&db, &master).await.unwrap(),
            registry,
            sets,
            usage: UsageRecorder::new(),
        };
        let verifier = Verifier::new(deps, CacheSettings::default(), Vec::new());
        let mut secrets = Vec::new();
        for _ in 0..200 {
            secrets.push(
                tokens
                    .create_session(&onboarded.admin, 3600)
                    .await
                    .unwrap()
                    .secret,
            );
        }
        (verifier, tokens, onboarded.admin, secrets)
    });
    Fixture {
        rt,
        verifier,
        tokens,
        admin,
        secrets,
    }
}

fn bench(c: &mut Criterion) {
    let f = fixture();
    let ip = Some("127.0.0.1".parse().unwrap());
    let hot = f.secrets[0].clone();
    let mut group = c.benchmark_group("verification");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("baseline: sha256 of the credential", |b| {
        b.iter(|| black_box(sigil_core::crypto::sha256(black_box(hot.as_bytes()))))
    });
    f.rt.block_on(
        f.verifier
            .verify(&hot, Transport::Header, ip, Some("me.get")),
    )
    .unwrap();
    group.bench_function("verify: cache hit", |b| {
        b.iter(|| {
            f.rt.block_on(
                f.verifier
                    .verify(black_box(&hot), Transport::Header, ip, Some("me.get")),
            )
            .unwrap()
        })
    });
    let mut i = 0usize;
    group.bench_function("verify: cache miss (signature + database)", |b| {
        b.iter(|| {
            // Dropping the cache first makes every round a full verification.
            f.verifier.apply(&sigil_token::Change::All);
            i = (i + 1) % f.secrets.len();
            f.rt.block_on(
                f.verifier
                    .verify(&f.secrets[i], Transport::Header, ip, Some("me.get")),
            )
            .unwrap()
        })
    });
    group.sample_size(20);
    group.bench_function("mint: session token (sign + insert)", |b| {
        b.iter(|| {
            f.rt.block_on(f.tokens.create_session(&f.admin, 3600))
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
