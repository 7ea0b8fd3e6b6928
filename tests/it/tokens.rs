use chrono::{Duration, Utc};
use serde_json::json;

use crate::harness::TestServer;

fn days(n: i64) -> String {
    (Utc::now() + Duration::days(n)).to_rfc3339()
}

#[tokio::test]
async fn secret_is_shown_once_and_authenticates() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let (token, secret) = s
        .mint(
            &t.admin,
            json!({"name": "ci", "scope_set": "read-only", "description": "for CI"}),
        )
        .await;
    assert_eq!(token["scope"]["set"], "read-only");
    assert_eq!(token["use_count"], 0);
    let id = token["id"].as_str().unwrap();
    let me = s.get("/api/v1/users/me", &secret).await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.body["token_kind"], "personal");
    // Never again: not in get or list.
    let got = s.get(&format!("/api/v1/tokens/{id}"), &t.admin).await;
    assert_eq!(got.status, 200);
    assert!(!got.body.to_string().contains(&secret));
    assert!(got.body.get("secret").is_none());
    let list = s.get("/api/v1/tokens", &t.admin).await;
    assert!(!list.body.to_string().contains(&secret));
    assert_eq!(list.body["total"], 1);
}

#[tokio::test]
async fn use_count_and_last_use_are_recorded() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let (token, secret) = s.mint(&t.admin, json!({"scope_set": "read-only"})).await;
    let id = token["id"].as_str().unwrap().to_owned();
    let calls = (0..1000).map(|_| {
        let s = &s;
        let secret = secret.clone();
        async move { s.get("/api/v1/users/me", &secret).await.status.as_u16() }
    });
    let statuses = futures::future::join_all(calls).await;
    assert!(statuses.iter().all(|st| *st == 200), "all uses succeed");
    s.flush_usage().await;
    let got = s.get(&format!("/api/v1/tokens/{id}"), &t.admin).await;
    assert_eq!(got.body["use_count"], 1000, "{}", got.body);
    assert!(got.body["last_used_at"].is_string());
    assert_eq!(got.body["last_used_ip"], "127.0.0.1");
}

#[tokio::test]
async fn regenerate_kills_the_old_secret_at_once() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let (token, old) = s.mint(&t.admin, json!({"scope_set": "read-only"})).await;
    let id = token["id"].as_str().unwrap();
    assert_eq!(s.get("/api/v1/users/me", &old).await.status, 200);
    let r = s
        .post(
            &format!("/api/v1/tokens/{id}/regenerate"),
            &t.admin,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let new = r.body["secret"].as_str().unwrap();
    assert_eq!(r.body["token"]["generation"], 2);
    s.get("/api/v1/users/me", &old)
        .await
        .expect(401, "token_replaced");
    assert_eq!(s.get("/api/v1/users/me", new).await.status, 200);
}

#[tokio::test]
async fn regenerate_with_grace_keeps_the_old_secret_briefly() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let (token, old) = s.mint(&t.admin, json!({"scope_set": "read-only"})).await;
    let id = token["id"].as_str().unwrap();
    let r = s
        .post(
            &format!("/api/v1/tokens/{id}/regenerate?grace_period_secs=60"),
            &t.admin,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let new = r.body["secret"].as_str().unwrap();
    assert_eq!(
        s.get("/api/v1/users/me", &old).await.status,
        200,
        "old secret in grace"
    );
    assert_eq!(s.get("/api/v1/users/me", new).await.status, 200);
    // A second regeneration ends the first one's grace.
    let r = s
        .post(
            &format!("/api/v1/tokens/{id}/regenerate"),
            &t.admin,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200);
    s.get("/api/v1/users/me", &old)
        .await
        .expect(401, "token_replaced");
    s.get("/api/v1/users/me", new)
        .await
        .expect(401, "token_replaced");
}

#[tokio::test]
async fn copy_yields_an_independent_token() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let (token, secret) = s
        .mint(&t.admin, json!({"name": "deploy", "methods": ["me.get", "tokens.list"], "ip_filter": ["127.0.0.0/8", "::1"]}))
        .await;
    let id = token["id"].as_str().unwrap();
    let r = s
        .post(&format!("/api/v1/tokens/{id}/copy"), &t.admin, json!({}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let copy = &r.body["token"];
    assert_ne!(copy["id"], token["id"]);
    assert_eq!(copy["name"], "deploy (copy)");
    assert_eq!(copy["scope"]["methods"], token["scope"]["methods"]);
    assert_eq!(copy["ip_filter"], token["ip_filter"]);
    let copy_secret = r.body["secret"].as_str().unwrap();
    assert_ne!(copy_secret, secret);
    let copy_id = copy["id"].as_str().unwrap();
    assert_eq!(
        s.delete(&format!("/api/v1/tokens/{copy_id}"), &t.admin)
            .await
            .status,
        204
    );
    s.get("/api/v1/users/me", copy_secret)
        .await
        .expect(401, "token_unknown");
    assert_eq!(
        s.get("/api/v1/users/me", &secret).await.status,
        200,
        "original unaffected"
    );
}

#[tokio::test]
async fn bulk_delete_is_all_or_nothing() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let (a, sa) = s.mint(&t.admin, json!({"scope_set": "read-only"})).await;
    let (b, sb) = s.mint(&t.admin, json!({"scope_set": "read-only"})).await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let r = s
        .post(
            "/api/v1/tokens/bulk-delete",
            &t.admin,
            json!({"ids": [a["id"], b["id"], unknown]}),
        )
        .await;
    r.expect(422, "unknown_tokens");
    assert_eq!(
        r.errors(),
        vec![format!("ids: there is no token {unknown}")]
    );
    assert_eq!(
        s.get("/api/v1/users/me", &sa).await.status,
        200,
        "nothing removed"
    );
    let r = s
        .post(
            "/api/v1/tokens/bulk-delete",
            &t.admin,
            json!({"ids": [a["id"], b["id"]]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["count"], 2);
    s.get("/api/v1/users/me", &sa)
        .await
        .expect(401, "token_unknown");
    s.get("/api/v1/users/me", &sb)
        .await
        .expect(401, "token_unknown");
}

#[tokio::test]
async fn expired_disabled_and_deleted_tokens_stop_working() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let (token, secret) = s.mint(&t.admin, json!({"scope_set": "read-only"})).await;
    let path = format!("/api/v1/tokens/{}", token["id"].as_str().unwrap());
    assert_eq!(s.get("/api/v1/users/me", &secret).await.status, 200);
    let r = s.patch(&path, &t.admin, json!({"enabled": false})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    s.get("/api/v1/users/me", &secret)
        .await
        .expect(401, "token_disabled");
    s.patch(&path, &t.admin, json!({"enabled": true})).await;
    assert_eq!(
        s.get("/api/v1/users/me", &secret).await.status,
        200,
        "re-enabled"
    );
    let r = s
        .patch(
            &path,
            &t.admin,
            json!({"expires_at": Utc::now().to_rfc3339()}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["expired"], true);
    s.get("/api/v1/users/me", &secret)
        .await
        .expect(401, "token_expired");
    assert_eq!(s.delete(&path, &t.admin).await.status, 204);
    s.get("/api/v1/users/me", &secret)
        .await
        .expect(401, "token_unknown");
    s.get(&path, &t.admin).await.expect(404, "not_found");
}

#[tokio::test]
async fn members_touch_only_their_own_tokens() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let alice = s.user(&t, "alice", "member", "person").await;
    let bob = s.user(&t, "bob", "member", "person").await;
    let manager = s.user(&t, "tm", "token_manager", "person").await;
    let (alices, _) = s
        .mint(&alice.token, json!({"scope_set": "read-only"}))
        .await;
    let path = format!("/api/v1/tokens/{}", alices["id"].as_str().unwrap());
    s.get(&path, &bob.token).await.expect(404, "not_found");
    s.patch(&path, &bob.token, json!({"name": "mine"}))
        .await
        .expect(404, "not_found");
    s.delete(&path, &bob.token).await.expect(404, "not_found");
    let r = s
        .post(
            "/api/v1/tokens/bulk-delete",
            &bob.token,
            json!({"ids": [alices["id"]]}),
        )
        .await;
    r.expect(422, "unknown_tokens");
    assert_eq!(s.get("/api/v1/tokens", &bob.token).await.body["total"], 0);
    // Token managers and admins see and manage all of them.
    assert_eq!(s.get(&path, &manager.token).await.status, 200);
    assert_eq!(s.get("/api/v1/tokens", &t.admin).await.body["total"], 1);
    // A member cannot mint for someone else; an admin can.
    let r = s.post("/api/v1/tokens", &bob.token, json!({"name": "x", "owner_id": alice.id, "scope_set": "read-only", "expires_at": days(5)})).await;
    r.expect(403, "user_lacks_permission");
    let (for_alice, _) = s
        .mint(
            &t.admin,
            json!({"owner_id": alice.id, "scope_set": "read-only"}),
        )
        .await;
    assert_eq!(for_alice["owner_id"], alice.id.as_str());
}

#[tokio::test]
async fn policy_caps_and_validation() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let create = |body: serde_json::Value| s.post("/api/v1/tokens", &t.admin, body);
    create(json!({"name": "x", "scope_set": "read-only", "expires_at": days(400)}))
        .await
        .expect(422, "expiry_exceeds_policy");
    create(json!({"name": "x", "scope_set": "read-only"}))
        .await
        .expect(422, "expiry_required");
    create(json!({"name": "x", "scope_set": "read-only", "expires_at": days(-1)}))
        .await
        .expect(422, "expiry_in_past");
    let r = create(json!({"name": "x", "scope_set": "read-only", "expires_at": days(5), "ip_filter": ["10.0.0.0/8", "nonsense", "300.1.1.1"]})).await;
    r.expect(422, "invalid_ip_filter");
    assert_eq!(
        r.errors(),
        vec![
            "ip_filter[1]: must be an IP address or a CIDR block, such as 203.0.113.7 or 10.0.0.0/8",
            "ip_filter[2]: must be an IP address or a CIDR block, such as 203.0.113.7 or 10.0.0.0/8"
        ]
    );
    create(json!({"name": "x", "scope_set": "no-such-set", "expires_at": days(5)}))
        .await
        .expect(422, "unknown_scope_set");
    let r = create(
        json!({"name": "x", "methods": ["tokens.list", "nope.nothing"], "expires_at": days(5)}),
    )
    .await;
    r.expect(422, "unknown_methods");
    assert_eq!(
        r.errors(),
        vec![
            r#"methods[1]: "nope.nothing" matches no method of the registry; listMethods shows them"#
        ]
    );
    create(json!({"name": "x", "expires_at": days(5)}))
        .await
        .expect(422, "scope_required");
    // Seed 002's read/change shorthand.
    let (tok, _) = s
        .mint(&t.admin, json!({"read": true, "change": false}))
        .await;
    assert_eq!(tok["scope"]["set"], "read-only");
    let (tok, _) = s
        .mint(&t.admin, json!({"read": true, "change": true}))
        .await;
    assert_eq!(tok["scope"]["set"], "read-change");
}

#[tokio::test]
async fn application_tokens_belong_to_api_users() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let r = s
        .post(
            "/api/v1/users",
            &t.admin,
            json!({"username": "ci-bot", "kind": "api", "role": "member"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let bot = r.body["id"].as_str().unwrap().to_owned();
    let (tok, secret) = s
        .mint(
            &t.admin,
            json!({"kind": "application", "owner_id": bot, "scope_set": "read-only"}),
        )
        .await;
    assert_eq!(tok["kind"], "application");
    let me = s.get("/api/v1/users/me", &secret).await;
    assert_eq!(me.body["user"]["username"], "ci-bot");
    let admin_id = s.get("/api/v1/users/me", &t.admin).await.body["user"]["id"].clone();
    let r = s.post("/api/v1/tokens", &t.admin, json!({"kind": "application", "owner_id": admin_id, "name": "x", "scope_set": "read-only", "expires_at": days(3)})).await;
    r.expect(422, "owner_not_api_user");
}

#[tokio::test]
async fn password_confirmation_guards_session_changes_only() {
    let s = TestServer::start().await;
    let (_, password) = s.create_tenant("acme").await;
    let session = s.login("acme", "admin", &password).await;
    let body = json!({"name": "x", "scope_set": "read-only", "expires_at": days(3)});
    s.post("/api/v1/tokens", &session, body.clone())
        .await
        .expect(403, "password_confirmation_required");
    s.post(
        "/api/v1/auth/confirm-password",
        &session,
        json!({"password": "wrong-password-1"}),
    )
    .await
    .expect(403, "invalid_password");
    assert_eq!(
        s.post(
            "/api/v1/auth/confirm-password",
            &session,
            json!({"password": password})
        )
        .await
        .status,
        200
    );
    let r = s
        .post(
            "/api/v1/tokens",
            &session,
            json!({"name": "auto", "methods": ["tokens.*", "me.get"], "expires_at": days(30)}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let automation = r.body["secret"].as_str().unwrap().to_owned();
    // Automation tokens are not asked to confirm, but need tokens.* in scope.
    let r = s
        .post(
            "/api/v1/tokens",
            &automation,
            json!({"name": "child", "methods": ["me.get"], "expires_at": days(10)}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let (_, read_only) = s.mint(&session, json!({"scope_set": "read-only"})).await;
    s.post("/api/v1/tokens", &read_only, body)
        .await
        .expect(403, "method_not_in_scope");
}

#[tokio::test]
async fn tokens_cannot_escalate_rights_or_lifetime() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let (_, narrow) = s
        .mint(
            &t.admin,
            json!({"methods": ["tokens.create", "me.get"], "expires_at": days(10)}),
        )
        .await;
    let r = s
        .post(
            "/api/v1/tokens",
            &narrow,
            json!({"name": "wider", "scope_set": "read-change", "expires_at": days(5)}),
        )
        .await;
    r.expect(403, "scope_exceeds_credential");
    let r = s
        .post(
            "/api/v1/tokens",
            &narrow,
            json!({"name": "longer", "methods": ["me.get"], "expires_at": days(20)}),
        )
        .await;
    r.expect(403, "expiry_exceeds_credential");
    let r = s
        .post(
            "/api/v1/tokens",
            &narrow,
            json!({"name": "ok", "methods": ["me.get"], "expires_at": days(5)}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    // A member's read-change token still cannot do admin things: scope ∩ role.
    let bob = s.user(&t, "bob", "member", "person").await;
    let (_, bobs) = s
        .mint(&bob.token, json!({"scope_set": "read-change"}))
        .await;
    s.get("/api/v1/users", &bobs)
        .await
        .expect(403, "user_lacks_permission");
}

#[tokio::test]
async fn list_filters_search_and_pages() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    for i in 0..5 {
        s.mint(
            &t.admin,
            json!({"name": format!("build-{i}"), "scope_set": "read-only"}),
        )
        .await;
    }
    s.mint(
        &t.admin,
        json!({"name": "deploy", "description": "Production deploys", "scope_set": "read-change"}),
    )
    .await;
    let list = s.get("/api/v1/tokens?q=production", &t.admin).await;
    assert_eq!(list.body["total"], 1);
    assert_eq!(list.body["items"][0]["name"], "deploy");
    assert_eq!(list.body["items"][0]["scope"]["name"], "Read & Change");
    let list = s
        .get(
            "/api/v1/tokens?scope_set=read-only&limit=2&offset=2&sort=name",
            &t.admin,
        )
        .await;
    assert_eq!(list.body["total"], 5);
    assert_eq!(list.body["items"].as_array().unwrap().len(), 2);
    assert_eq!(list.body["items"][0]["name"], "build-2");
    let r = s.get("/api/v1/tokens?limit=1000", &t.admin).await;
    r.expect(422, "validation_failed");
    assert_eq!(r.errors(), vec!["limit: must be between 1 and 200"]);
    let list = s.get("/api/v1/tokens?expired=true", &t.admin).await;
    assert_eq!(list.body["total"], 0);
}
