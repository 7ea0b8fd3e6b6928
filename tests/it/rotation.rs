//! Self-rotation and reuse detection: a token rotates itself (`rotateCurrentToken`), its
//! old secret works through the grace period, and a secret replaced by self-rotation that
//! comes back after it revokes the token (`token_reuse_detected`, audited with the client
//! address). The tenant policy turns detection off, or extends it to `regenerateToken`.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{Tenant, TestServer};

const ROTATE: &str = "/api/v1/tokens/current/rotate";
const ME: &str = "/api/v1/users/me";

/// A personal token of the admin that may call everything.
async fn token(s: &TestServer, t: &Tenant) -> (String, String) {
    let (tok, secret) = s.mint(&t.admin, json!({"methods": ["*"]})).await;
    (tok["id"].as_str().expect("id").to_owned(), secret)
}

/// Rotates the token of `secret`; returns the new secret.
async fn rotate(s: &TestServer, secret: &str, grace: u32) -> String {
    let r = s
        .post(ROTATE, secret, json!({"grace_period_secs": grace}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "rotateCurrentToken: {}", r.body);
    r.body["secret"].as_str().expect("secret").to_owned()
}

async fn regenerate(s: &TestServer, t: &Tenant, id: &str) -> String {
    let r = s
        .post(
            &format!("/api/v1/tokens/{id}/regenerate"),
            &t.admin,
            json!({"grace_period_secs": 0}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "regenerateToken: {}", r.body);
    r.body["secret"].as_str().expect("secret").to_owned()
}

/// Replaces the tenant's policy with the current one and `changes`.
async fn set_policy(s: &TestServer, t: &Tenant, changes: Value) {
    let r = s.get("/api/v1/tenant", &t.admin).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let mut policy = r.body["policy"].clone();
    assert_eq!(policy["detect_reuse_after_rotation"], json!(true));
    assert_eq!(policy["detect_reuse_after_regeneration"], json!(false));
    for (k, v) in changes.as_object().expect("object") {
        policy[k] = v.clone();
    }
    let r = s
        .call(
            reqwest::Method::PUT,
            "/api/v1/tenant/policy",
            Some(&t.admin),
            Some(policy),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "updateTenantPolicy: {}", r.body);
}

async fn reuse_events(s: &TestServer, t: &Tenant, id: &str) -> Vec<Value> {
    let r = s
        .get(
            &format!("/api/v1/audit-events?action=token.reuse_detected&target_id={id}"),
            &t.admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["items"].as_array().expect("items").clone()
}

#[tokio::test]
async fn a_token_rotates_itself_and_a_reused_old_secret_revokes_it() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("rot").await;
    let (id, old) = token(&s, &t).await;

    // A login session does not rotate itself.
    s.post(ROTATE, &t.admin, json!({}))
        .await
        .expect(403, "session_not_rotatable");

    let r = s.post(ROTATE, &old, json!({"grace_period_secs": 2})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["token"]["id"], json!(id), "the same token");
    assert_eq!(r.body["token"]["generation"], json!(2));
    let new = r.body["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);

    // Both work through the grace period; only the newest secret rotates again.
    s.get(ME, &new).await.expect(200, "");
    s.get(ME, &old).await.expect(200, "");
    s.post(ROTATE, &old, json!({}))
        .await
        .expect(409, "token_replaced");

    // After the grace period the old secret is a stolen copy: the token is revoked.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    s.get(ME, &old).await.expect(401, "token_reuse_detected");
    s.get(ME, &new).await.expect(401, "token_reuse_detected");
    s.get(ME, &old).await.expect(401, "token_reuse_detected");
    s.post(ROTATE, &new, json!({}))
        .await
        .expect(401, "token_reuse_detected");

    let got = s.get(&format!("/api/v1/tokens/{id}"), &t.admin).await;
    assert!(got.body["revoked_at"].is_string(), "{}", got.body);
    let events = reuse_events(&s, &t, &id).await;
    assert_eq!(events.len(), 1, "recorded once: {events:?}");
    assert_eq!(events[0]["client_ip"], json!("127.0.0.1"), "{}", events[0]);
    assert_eq!(events[0]["after"]["reason"], json!("reuse_detected"));

    // Introspection and forward auth answer the same.
    let r = s
        .post("/api/v1/introspect", &t.admin, json!({"token": new}))
        .await;
    assert_eq!(r.body["active"], json!(false), "{}", r.body);
    assert_eq!(r.body["code"], json!("token_reuse_detected"), "{}", r.body);
    // A revoked token is not regenerated.
    s.post(
        &format!("/api/v1/tokens/{id}/regenerate"),
        &t.admin,
        json!({}),
    )
    .await
    .expect(409, "token_revoked");
}

#[tokio::test]
async fn any_secret_replaced_by_self_rotation_is_recognised() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("rot2").await;
    let (id, first) = token(&s, &t).await;
    let second = rotate(&s, &first, 0).await;
    let third = rotate(&s, &second, 0).await;
    s.get(ME, &third).await.expect(200, "");
    // Two rotations back, and no grace period at all.
    s.get(ME, &first).await.expect(401, "token_reuse_detected");
    s.get(ME, &third).await.expect(401, "token_reuse_detected");
    assert_eq!(reuse_events(&s, &t, &id).await.len(), 1);
}

#[tokio::test]
async fn with_detection_off_a_rotated_secret_is_only_replaced() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("rot3").await;
    set_policy(&s, &t, json!({"detect_reuse_after_rotation": false})).await;
    let (id, old) = token(&s, &t).await;
    let new = rotate(&s, &old, 0).await;
    s.get(ME, &old).await.expect(401, "token_replaced");
    s.get(ME, &new).await.expect(200, "");
    s.get(ME, &old).await.expect(401, "token_replaced");
    assert!(reuse_events(&s, &t, &id).await.is_empty());
}

#[tokio::test]
async fn a_secret_replaced_by_regeneration_is_only_replaced() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("rot4").await;
    let (id, old) = token(&s, &t).await;
    let new = regenerate(&s, &t, &id).await;
    s.get(ME, &old).await.expect(401, "token_replaced");
    s.get(ME, &new).await.expect(200, "");

    // A person's regeneration ends the chain of self-rotations: the secrets before it are
    // merely replaced.
    let rotated = rotate(&s, &new, 0).await;
    let regenerated = regenerate(&s, &t, &id).await;
    for stale in [&old, &new, &rotated] {
        s.get(ME, stale).await.expect(401, "token_replaced");
    }
    s.get(ME, &regenerated).await.expect(200, "");
    assert!(reuse_events(&s, &t, &id).await.is_empty());
}

#[tokio::test]
async fn the_policy_extends_detection_to_regeneration() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("rot5").await;
    set_policy(&s, &t, json!({"detect_reuse_after_regeneration": true})).await;
    let r = s.get("/api/v1/tenant", &t.admin).await;
    assert_eq!(
        r.body["policy"]["detect_reuse_after_regeneration"],
        json!(true)
    );
    let (id, old) = token(&s, &t).await;
    let new = regenerate(&s, &t, &id).await;
    s.get(ME, &new).await.expect(200, "");
    s.get(ME, &old).await.expect(401, "token_reuse_detected");
    s.get(ME, &new).await.expect(401, "token_reuse_detected");
    let events = reuse_events(&s, &t, &id).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["client_ip"], json!("127.0.0.1"));
}
