//! The fixture the token benchmarks share: an in-memory SQLite database with one tenant
//! and its admin, a small built-in registry, the token service and a verifier, and a
//! fast way to store many tokens (rows inserted in bulk, secrets signed as usual).

// Benchmark set-up fails loudly: a broken fixture must stop the run.
#![allow(clippy::unwrap_used, dead_code)]

use std::sync::Arc;

use sea_orm::{EntityTrait, Set, TransactionTrait};
use sigil_core::crypto::{sha256_hex, MasterKey};
use sigil_core::TokenId;
use sigil_scope_registry::store::{PluginStore, ScopeSetStore};
use sigil_scope_registry::{
    HttpRoute, ManifestMethod, PluginManifest, RegisteredPlugin, Registry, Snapshot,
};
use sigil_tenant::platform::PlatformKey;
use sigil_tenant::{KeyRing, NewTenant, TenantService};
use sigil_token::verifier::{CacheSettings, VerifierDeps};
use sigil_token::{entity, jwt, ChangeFeed, TokenKind, TokenService, UsageRecorder, Verifier};
use sigil_user::{PasswordHasher, PasswordParams, User, UserService};

pub struct Fixture {
    pub db: sigil_core::db::Db,
    pub keys: KeyRing,
    pub verifier: Verifier,
    pub tokens: TokenService,
    pub admin: User,
    /// The verifier's use counts, flushed as the server does.
    pub usage: UsageRecorder,
}

fn builtin() -> PluginManifest {
    let method = |id: &str, verb: &str, path: &str| ManifestMethod {
        id: id.into(),
        http: HttpRoute::new(verb, path),
        access: sigil_scope_registry::Access::for_http_method(verb),
        description: String::new(),
        docs_url: None,
        cost: 1,
    };
    PluginManifest {
        id: "sigil".into(),
        name: "Sigil".into(),
        version: "1".into(),
        description: None,
        docs_url: None,
        methods: vec![
            method("me.get", "GET", "/api/v1/users/me"),
            method("tokens.list", "GET", "/api/v1/tokens"),
            method("tokens.create", "POST", "/api/v1/tokens"),
        ],
        scope_sets: vec![],
    }
}

pub async fn fixture(cache: CacheSettings) -> Fixture {
    let db = sigil_core::db::connect("sqlite::memory:", 1).await.unwrap();
    sigil_migrations::migrate(&db).await.unwrap();
    let master = MasterKey::generate();
    let changes = Arc::new(ChangeFeed::new(db.clone()));
    let tenants = TenantService::new(db.clone(), changes.clone());
    let users = UserService::new(
        db.clone(),
        PasswordHasher::new(PasswordParams::default()).unwrap(),
        changes.clone(),
        Arc::new(sigil_token::service::sessions::SessionRevoker),
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
    let tokens = TokenService::new(
        db.clone(),
        keys.clone(),
        users.clone(),
        registry.clone(),
        sets.clone(),
        changes,
    );
    let usage = UsageRecorder::new();
    let deps = VerifierDeps {
        db: db.clone(),
        tenants,
        keys: keys.clone(),
        platform: PlatformKey::load_or_create(&db, &master).await.unwrap(),
        registry,
        sets,
        usage: usage.clone(),
        limiter: sigil_limits::Limiter::local(),
    };
    Fixture {
        usage,
        verifier: Verifier::new(deps, cache, Vec::new()),
        db,
        keys,
        tokens,
        admin: onboarded.admin,
    }
}

/// Stores `n` personal tokens of the admin (scope `me.get`, `tokens.list`) and returns
/// their secrets. Rows go in by the thousand in one transaction each; every secret is a
/// real signed JWT, as `createToken` would mint it.
pub async fn store_tokens(f: &Fixture, n: usize) -> Vec<String> {
    let key = f.keys.signing_key(f.admin.tenant_id).await.unwrap();
    let now = chrono::Utc::now();
    let expires = now + chrono::Duration::days(30);
    let mut secrets = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let mut rows = Vec::with_capacity(chunk.len());
        for i in chunk {
            let id = TokenId::new();
            let claims = jwt::Claims {
                iss: jwt::issuer(f.admin.tenant_id),
                sub: f.admin.id.to_string(),
                tid: f.admin.tenant_id,
                jti: jwt::jti(id, 1),
                iat: now.timestamp(),
                nbf: now.timestamp(),
                exp: Some(expires.timestamp()),
                typ: TokenKind::Personal.as_str().to_owned(),
            };
            let secret = jwt::sign(&key, &claims).unwrap();
            rows.push(entity::ActiveModel {
                id: Set(id),
                tenant_id: Set(f.admin.tenant_id),
                owner_id: Set(f.admin.id),
                kind: Set(TokenKind::Personal.as_str().to_owned()),
                name: Set(format!("bench-{i}")),
                description: Set(String::new()),
                scope_set: Set(None),
                scope_methods: Set(Some(r#"["me.get","tokens.list"]"#.to_owned())),
                expires_at: Set(Some(expires)),
                ip_filter: Set("[]".to_owned()),
                enabled: Set(true),
                generation: Set(1),
                secret_hash: Set(sha256_hex(secret.as_bytes())),
                prev_secret_hash: Set(None),
                prev_valid_until: Set(None),
                elevated_until: Set(None),
                created_at: Set(now),
                created_by: Set(Some(f.admin.id)),
                updated_at: Set(now),
                use_count: Set(0),
                last_used_at: Set(None),
                last_used_ip: Set(None),
                revoked_at: Set(None),
                revoked_reason: Set(None),
                ceiling: Set(None),
                self_rotated_from: Set(None),
                rate_limits: Set(None),
                credits_remaining: Set(None),
                credits_refill: Set(None),
                credits_refilled_at: Set(None),
                credits_version: Set(0),
            });
            secrets.push(secret);
        }
        let txn = f.db.begin().await.unwrap();
        entity::Entity::insert_many(rows).exec(&txn).await.unwrap();
        txn.commit().await.unwrap();
    }
    secrets
}

/// Gives the token of `secret` a rate limit and credits that the benchmark never uses up.
pub async fn limit_token(f: &Fixture, secret: &str) {
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    entity::Entity::update_many()
        .col_expr(
            entity::Column::RateLimits,
            Expr::value(r#"[{"name":"bench","window_secs":60,"limit":1000000000}]"#),
        )
        .col_expr(
            entity::Column::CreditsRemaining,
            Expr::value(1_000_000_000_000_000i64),
        )
        .filter(entity::Column::SecretHash.eq(sigil_core::crypto::sha256_hex(secret.as_bytes())))
        .exec(&f.db)
        .await
        .unwrap();
    f.verifier.forget(secret);
}
