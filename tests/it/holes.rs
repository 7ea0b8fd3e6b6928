//! Smaller holes: signing-key caches that ignored the configured TTL, a last use that could
//! move backwards, operator tokens that could not be revoked, and introspection that told
//! one tenant about another tenant's tokens.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sigil_core::{TenantId, TokenId};
use sigil_token::UsageRecorder;

use crate::harness::{tempdir::TempDir, test_config, Resp, TestServer};

/// Another replica on `a`'s database and master key, with the configuration tweaked.
async fn replica_of(a: &TestServer, tweak: impl FnOnce(&mut sigil_server::Config)) -> TestServer {
    let dir = TempDir::new();
    let mut config = test_config(&dir.0, &a.database_url);
    config.master_key = a.state().config.master_key.clone();
    tweak(&mut config);
    let prepared = sigil_server::prepare(config)
        .await
        .expect("replica prepares");
    let running = sigil_server::spawn(prepared).await.expect("replica starts");
    TestServer {
        base: format!("http://{}", running.addr),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
        running: Some(running),
        database_url: a.database_url.clone(),
        _dir: dir,
    }
}

fn part(token: &str, index: usize) -> Value {
    let text = token.split('.').nth(index).expect("a JWT part");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(text).expect("base64")).expect("JSON")
}

fn kid(token: &str) -> String {
    part(token, 0)["kid"].as_str().expect("kid").to_owned()
}

/// A replica that never hears of a key rotation (the rotation is written behind the change
/// feed, as when a notification is lost) stops signing with, and accepting, the rotated-out
/// key once the configured cache TTL has passed (it used to keep it for 300 s).
#[tokio::test]
async fn signing_key_caches_follow_the_configured_ttl() {
    const TTL: u64 = 3;
    let a = TestServer::start_with(|c| c.cache_ttl_secs = TTL).await;
    let b = replica_of(&a, |c| c.cache_ttl_secs = TTL).await;
    let t = a.tenant_admin("acme").await;
    let tenant = TenantId(t.id.parse().expect("tenant id"));
    let old_kid = kid(&t.admin);
    // Tokens signed with the current key that replica B has not seen yet.
    let (_, unseen_early) = a.mint(&t.admin, json!({"methods": ["me.get"]})).await;
    let (_, unseen_late) = a.mint(&t.admin, json!({"methods": ["me.get"]})).await;
    // B loads the key for signing (a mint) and for verification (the admin's session).
    let warmed = Instant::now();
    let (_, signed_by_b) = b.mint(&t.admin, json!({"methods": ["me.get"]})).await;
    assert_eq!(kid(&signed_by_b), old_kid);
    // Rotate with no overlap, without telling the other replica.
    let rotated = a
        .state()
        .keys
        .rotate(tenant, Duration::ZERO)
        .await
        .expect("rotation");
    assert_ne!(rotated.kid, old_kid);
    // Within the TTL B still trusts its cached key (so the check below is not vacuous).
    if warmed.elapsed() < Duration::from_millis(TTL * 1000 - 500) {
        assert_eq!(b.get("/api/v1/users/me", &unseen_early).await.status, 200);
    }
    // Once the TTL has passed B reads the keys again: the retired key no longer verifies
    // and new credentials are signed with the new key.
    tokio::time::sleep(Duration::from_secs(TTL + 1)).await;
    b.get("/api/v1/users/me", &unseen_late)
        .await
        .expect(401, "token_invalid_signature");
    let session = b.login("acme", "admin", &t.admin_password).await;
    assert_eq!(kid(&session), rotated.kid);
    assert_eq!(a.get("/api/v1/users/me", &session).await.status, 200);
}

/// Two replicas flush their tallies of the same token in the "wrong" order: the row keeps
/// the later use (time and IP) and counts both.
#[tokio::test]
async fn the_last_use_never_moves_backwards() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let (tok, _) = s.mint(&t.admin, json!({"methods": ["me.get"]})).await;
    let id = tok["id"].as_str().expect("id").to_owned();
    let token_id = TokenId(id.parse().expect("token id"));
    let early = UsageRecorder::new();
    let late = UsageRecorder::new();
    early.record(token_id, Some("192.0.2.1".parse().expect("ip")));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before_late = Utc::now();
    late.record(token_id, Some("192.0.2.2".parse().expect("ip")));
    let db = &s.state().db;
    late.flush(db).await.expect("late flush");
    early.flush(db).await.expect("early flush");
    let read = |r: Resp| {
        let at: DateTime<Utc> = r.body["last_used_at"]
            .as_str()
            .expect("last_used_at")
            .parse()
            .expect("RFC 3339");
        (
            r.body["use_count"].as_i64(),
            at,
            r.body["last_used_ip"].clone(),
        )
    };
    let path = format!("/api/v1/tokens/{id}");
    let (count, at, ip) = read(s.get(&path, &t.admin).await);
    assert_eq!(count, Some(2));
    assert!(at >= before_late, "last use moved back to {at}");
    assert_eq!(ip, "192.0.2.2");
    // A later use without an address moves the time and keeps the stored address; an
    // earlier one with an address changes nothing but the count.
    let stale = UsageRecorder::new();
    stale.record(token_id, Some("192.0.2.3".parse().expect("ip")));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before_latest = Utc::now();
    let latest = UsageRecorder::new();
    latest.record(token_id, None);
    latest.flush(db).await.expect("latest flush");
    stale.flush(db).await.expect("stale flush");
    let (count, at, ip) = read(s.get(&path, &t.admin).await);
    assert_eq!(count, Some(4));
    assert!(at >= before_latest, "last use moved back to {at}");
    assert_eq!(ip, "192.0.2.2");
}

/// Runs `sigil operator revoke ARGS` against the server's database.
async fn sigil_revoke(s: &TestServer, args: &[&str]) -> std::process::Output {
    let dir = TempDir::new();
    tokio::process::Command::new(env!("CARGO_BIN_EXE_sigil"))
        .env("SIGIL_DATABASE_URL", &s.database_url)
        .env("SIGIL_MASTER_KEY", &s.state().config.master_key)
        .env("SIGIL_DATA_DIR", &dir.0)
        .env("SIGIL_LOG_LEVEL", "warn")
        .args(["operator", "revoke"])
        .args(args)
        .output()
        .await
        .expect("sigil operator revoke runs")
}

/// Runs `sigil operator revoke ARGS`, which must succeed; returns its stdout.
async fn cli_revoke(s: &TestServer, args: &[&str]) -> String {
    let out = sigil_revoke(s, args).await;
    assert!(
        out.status.success(),
        "sigil operator revoke {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// The refusal of a revoked operator token (it used to be refused like a forged one).
fn is_operator_refusal(r: &Resp) -> bool {
    r.status == 401 && matches!(r.code(), "token_invalid_signature" | "token_revoked")
}

/// Waits (bounded) until the operator token is refused by the server.
async fn until_refused(s: &TestServer, token: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = s.get("/api/v1/tenants", token).await;
        if r.status == 401 {
            assert!(is_operator_refusal(&r), "body: {}", r.body);
            return;
        }
        assert_eq!(r.status, 200, "body: {}", r.body);
        assert!(
            Instant::now() < deadline,
            "the revoked operator token still works"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Operator tokens carry an id; `sigil operator revoke` (another process, like a second
/// replica) refuses one of them, or all issued so far, on the running server, while the
/// others and new ones keep working.
#[tokio::test]
async fn operator_tokens_revoked_with_the_cli_are_refused() {
    let s = TestServer::start().await;
    let first = s.operator_token();
    let second = s.operator_token();
    let third = s.operator_token();
    let jti = |t: &str| part(t, 1)["jti"].as_str().expect("jti").to_owned();
    assert_ne!(jti(&first), jti(&second));
    for token in [&first, &second, &third] {
        assert_eq!(s.get("/api/v1/tenants", token).await.status, 200);
    }
    // One token, given in full.
    let out = cli_revoke(&s, &["--token", &first]).await;
    let out: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(out["revoked"], jti(&first));
    until_refused(&s, &first).await;
    assert_eq!(s.get("/api/v1/tenants", &second).await.status, 200);
    // One token, by id.
    cli_revoke(&s, &["--jti", &jti(&second)]).await;
    until_refused(&s, &second).await;
    assert_eq!(s.get("/api/v1/tenants", &third).await.status, 200);
    // Every token issued so far; one issued after the command returns works.
    let out = cli_revoke(&s, &["--all"]).await;
    let out: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(out["revoked"], "all");
    let fresh = s.operator_token();
    until_refused(&s, &third).await;
    assert_eq!(s.get("/api/v1/tenants", &fresh).await.status, 200);
    // The command refuses a token that is not the platform's.
    let t = s.tenant_admin("acme").await;
    let refused = sigil_revoke(&s, &["--token", &t.admin]).await;
    assert!(!refused.status.success());
    assert_eq!(s.get("/api/v1/tenants", &fresh).await.status, 200);
}

/// A revocation made on one replica reaches another replica on the same database.
#[tokio::test]
async fn operator_revocations_reach_other_replicas() {
    let a = TestServer::start().await;
    let b = replica_of(&a, |_| {}).await;
    let old = a.operator_token();
    assert_eq!(b.get("/api/v1/tenants", &old).await.status, 200);
    let from = a.state().platform.revoke_all().await.expect("revoke");
    // The replica that revokes refuses at once.
    let r = a.get("/api/v1/tenants", &old).await;
    assert!(is_operator_refusal(&r), "body: {}", r.body);
    until_refused(&b, &old).await;
    let wait = from * 1000 - Utc::now().timestamp_millis();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait.unsigned_abs())).await;
    }
    let fresh = b.operator_token();
    assert_eq!(a.get("/api/v1/tenants", &fresh).await.status, 200);
    assert_eq!(b.get("/api/v1/tenants", &fresh).await.status, 200);
}

/// Introspecting another tenant's token answers exactly like an unknown token, whatever
/// state that token is in, and records nothing in the other tenant.
#[tokio::test]
async fn introspection_tells_nothing_about_other_tenants_tokens() {
    let s = TestServer::start().await;
    let acme = s.tenant_admin("acme").await;
    let other = s.tenant_admin("other").await;
    let (_, introspector) = s
        .mint(&acme.admin, json!({"methods": ["sigil.introspect"]}))
        .await;
    // What an unknown token looks like: one of acme's, deleted.
    let (gone, gone_secret) = s.mint(&acme.admin, json!({"methods": ["me.get"]})).await;
    let gone_path = format!("/api/v1/tokens/{}", gone["id"].as_str().expect("id"));
    assert_eq!(s.delete(&gone_path, &acme.admin).await.status, 204);
    // Another tenant's tokens: a valid one and a disabled one.
    let (valid, valid_secret) = s.mint(&other.admin, json!({"methods": ["me.get"]})).await;
    let (disabled, disabled_secret) = s.mint(&other.admin, json!({"methods": ["me.get"]})).await;
    let disabled_path = format!("/api/v1/tokens/{}", disabled["id"].as_str().expect("id"));
    s.patch(&disabled_path, &other.admin, json!({"enabled": false}))
        .await;
    let bodies = [
        json!({}),
        json!({"method": "me.get"}),
        json!({"method": "me.get", "client_ip": "192.0.2.7"}),
    ];
    for caller in [&introspector, &acme.admin] {
        for extra in &bodies {
            let ask = |token: &str| {
                let mut body = extra.clone();
                body["token"] = json!(token);
                s.post("/api/v1/introspect", caller, body)
            };
            let unknown = ask(&gone_secret).await;
            assert_eq!(unknown.status, 200, "body: {}", unknown.body);
            assert_eq!(unknown.body["active"], false);
            assert_eq!(unknown.body["code"], "token_unknown");
            for secret in [&valid_secret, &disabled_secret] {
                let r = ask(secret).await;
                assert_eq!(r.status, 200, "body: {}", r.body);
                assert_eq!(r.body, unknown.body, "{extra}");
            }
        }
    }
    // Nothing was recorded for the other tenant's token.
    s.flush_usage().await;
    let path = format!("/api/v1/tokens/{}", valid["id"].as_str().expect("id"));
    let r = s.get(&path, &other.admin).await;
    assert_eq!(r.status, 200, "body: {}", r.body);
    assert_eq!(r.body["use_count"], 0);
    assert_eq!(r.body["last_used_at"], Value::Null);
    // Its own tenant still learns everything about it.
    let own = s
        .post(
            "/api/v1/introspect",
            &other.admin,
            json!({"token": valid_secret}),
        )
        .await;
    assert_eq!(own.body["active"], true, "body: {}", own.body);
    let own = s
        .post(
            "/api/v1/introspect",
            &other.admin,
            json!({"token": disabled_secret}),
        )
        .await;
    assert_eq!(own.body["code"], "token_disabled", "body: {}", own.body);
}
