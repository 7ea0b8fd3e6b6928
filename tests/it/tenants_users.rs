use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::{Resp, TestServer};

#[tokio::test]
async fn admin_logs_in_three_ways_and_reads_me() {
    let s = TestServer::start().await;
    let (_, password) = s.create_tenant("acme").await;
    // JSON
    let token = s.login("acme", "admin", &password).await;
    let me = s.get("/api/v1/users/me", &token).await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.body["user"]["username"], "admin");
    assert_eq!(me.body["role"], "admin");
    assert_eq!(me.body["token_kind"], "session");
    // Form
    let r = s
        .client
        .post(s.url("/api/v1/auth/login"))
        .form(&[
            ("tenant", "acme"),
            ("username", "admin"),
            ("password", password.as_str()),
        ])
        .send()
        .await
        .unwrap();
    let r = crate::harness::Resp::from(r).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["token_type"], "Bearer");
    assert!(r.body["expires_in"].as_i64().unwrap() > 3500);
    // HTTP Basic + tenant
    let r = s
        .client
        .post(s.url("/api/v1/auth/login?tenant=acme"))
        .basic_auth("admin", Some(&password))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let r = crate::harness::Resp::from(r).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn wrong_unknown_and_system_logins_are_401() {
    let s = TestServer::start().await;
    let (_, password) = s.create_tenant("acme").await;
    let login = |u: &'static str, p: String, t: &'static str| {
        let s = &s;
        async move {
            s.call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({"tenant": t, "username": u, "password": p})),
            )
            .await
        }
    };
    login("admin", "wrong-password-123".into(), "acme")
        .await
        .expect(401, "invalid_credentials");
    login("ghost", "wrong-password-123".into(), "acme")
        .await
        .expect(401, "invalid_credentials");
    login("system", "anything-at-all-1".into(), "acme")
        .await
        .expect(401, "invalid_credentials");
    login("admin", password.clone(), "nope")
        .await
        .expect(401, "invalid_credentials");
}

// ---------------------------------------------------------------------------------------
// Helpers of this module.

async fn login_resp(s: &TestServer, tenant: &str, username: &str, password: &str) -> Resp {
    s.call(
        Method::POST,
        "/api/v1/auth/login",
        None,
        Some(json!({"tenant": tenant, "username": username, "password": password})),
    )
    .await
}

async fn put(s: &TestServer, path: &str, token: &str, body: Value) -> Resp {
    s.call(Method::PUT, path, Some(token), Some(body)).await
}

/// The JSON header of a JWT, decoded without verifying anything.
fn jwt_header(token: &str) -> Value {
    let part = token.split('.').next().expect("header part");
    let bytes = URL_SAFE_NO_PAD.decode(part).expect("base64url header");
    serde_json::from_slice(&bytes).expect("header json")
}

fn kid_of(token: &str) -> String {
    jwt_header(token)["kid"].as_str().expect("kid").to_owned()
}

fn usernames(list: &Resp) -> Vec<String> {
    list.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|u| u["username"].as_str().expect("username").to_owned())
        .collect()
}

fn slugs(list: &Resp) -> Vec<String> {
    list.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|t| t["slug"].as_str().expect("slug").to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------
// Operator API.

#[tokio::test]
async fn operator_creates_lists_gets_and_updates_tenants() {
    let s = TestServer::start().await;
    let op = s.operator_token();
    let r = s
        .post(
            "/api/v1/tenants",
            &op,
            json!({"slug": "acme", "name": "Acme Corp", "admin_username": "root"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["tenant"]["slug"], "acme");
    assert_eq!(r.body["tenant"]["name"], "Acme Corp");
    assert_eq!(r.body["tenant"]["enabled"], true);
    assert_eq!(
        r.body["tenant"]["jwks_path"],
        "/api/v1/tenants/acme/jwks.json"
    );
    assert_eq!(r.body["admin_username"], "root");
    let password = r.body["admin_password"].as_str().unwrap().to_owned();
    assert!(
        password.len() >= 12,
        "generated password is strong: {password}"
    );
    let acme_id = r.body["tenant"]["id"].as_str().unwrap().to_owned();
    // The one-time password works for the named admin.
    let token = s.login("acme", "root", &password).await;
    let me = s.get("/api/v1/users/me", &token).await;
    assert_eq!(me.body["role"], "admin", "{}", me.body);
    // A chosen admin password is used as given; a weak one is refused.
    let r = s
        .post(
            "/api/v1/tenants",
            &op,
            json!({"slug": "beta", "admin_password": "Beta-chosen-pass-1"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["admin_username"], "admin");
    assert_eq!(r.body["admin_password"], "Beta-chosen-pass-1");
    assert_eq!(r.body["tenant"]["name"], "beta");
    s.login("beta", "admin", "Beta-chosen-pass-1").await;
    s.post(
        "/api/v1/tenants",
        &op,
        json!({"slug": "weak", "admin_password": "short"}),
    )
    .await
    .expect(422, "weak_password");
    // Nothing of the refused tenant was left behind.
    let r = s.get("/api/v1/tenants?q=weak", &op).await;
    assert_eq!(r.body["total"], 0, "{}", r.body);
    s.post(
        "/api/v1/tenants",
        &op,
        json!({"slug": "gamma", "name": "Gamma Industries"}),
    )
    .await;
    // Duplicate and invalid slugs.
    s.post("/api/v1/tenants", &op, json!({"slug": "acme"}))
        .await
        .expect(409, "tenant_exists");
    s.post("/api/v1/tenants", &op, json!({"slug": "Not Valid"}))
        .await
        .expect(422, "invalid_slug");

    // Pagination.
    let page1 = s.get("/api/v1/tenants?limit=2", &op).await;
    assert_eq!(page1.status, 200, "{}", page1.body);
    assert_eq!(page1.body["total"], 3);
    assert_eq!(page1.body["limit"], 2);
    assert_eq!(slugs(&page1), vec!["acme", "beta"]);
    let page2 = s.get("/api/v1/tenants?limit=2&offset=2", &op).await;
    assert_eq!(page2.body["total"], 3);
    assert_eq!(page2.body["offset"], 2);
    assert_eq!(slugs(&page2), vec!["gamma"]);
    // Search over slug and name (case-insensitive).
    let r = s.get("/api/v1/tenants?q=BET", &op).await;
    assert_eq!(slugs(&r), vec!["beta"], "{}", r.body);
    let r = s.get("/api/v1/tenants?q=industries", &op).await;
    assert_eq!(slugs(&r), vec!["gamma"], "{}", r.body);
    assert_eq!(r.body["total"], 1);
    let r = s.get("/api/v1/tenants?q=nothing-like-this", &op).await;
    assert_eq!(r.body["total"], 0);
    assert_eq!(slugs(&r), Vec::<String>::new());
    s.get("/api/v1/tenants?limit=0", &op)
        .await
        .expect(422, "validation_failed");

    // getTenant.
    let r = s.get(&format!("/api/v1/tenants/{acme_id}"), &op).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["slug"], "acme");
    assert_eq!(r.body["policy"]["session_lifetime_secs"], 3600);
    s.get(&format!("/api/v1/tenants/{}", uuid::Uuid::new_v4()), &op)
        .await
        .expect(404, "not_found");

    // updateTenant: rename, disable, enable.
    let r = s
        .patch(
            &format!("/api/v1/tenants/{acme_id}"),
            &op,
            json!({"name": "Acme Renamed"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["name"], "Acme Renamed");
    assert_eq!(r.body["enabled"], true);
    let r = s.get(&format!("/api/v1/tenants/{acme_id}"), &op).await;
    assert_eq!(r.body["name"], "Acme Renamed");
    let r = s
        .patch(
            &format!("/api/v1/tenants/{acme_id}"),
            &op,
            json!({"enabled": false}),
        )
        .await;
    assert_eq!(r.body["enabled"], false, "{}", r.body);
    login_resp(&s, "acme", "root", &password)
        .await
        .expect(401, "tenant_disabled");
    let r = s
        .patch(
            &format!("/api/v1/tenants/{acme_id}"),
            &op,
            json!({"enabled": true}),
        )
        .await;
    assert_eq!(r.body["enabled"], true, "{}", r.body);
    s.login("acme", "root", &password).await;
    s.patch(
        &format!("/api/v1/tenants/{acme_id}"),
        &op,
        json!({"name": "   "}),
    )
    .await
    .expect(422, "invalid_name");
    s.patch(
        &format!("/api/v1/tenants/{}", uuid::Uuid::new_v4()),
        &op,
        json!({"name": "x"}),
    )
    .await
    .expect(404, "not_found");
}

#[tokio::test]
async fn disabled_tenant_refuses_logins_and_existing_tokens() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let other = s.tenant_admin("other").await;
    let (_, personal) = s.mint(&t.admin, json!({"scope_set": "read-only"})).await;
    assert_eq!(s.get("/api/v1/users/me", &personal).await.status, 200);
    let op = s.operator_token();
    let r = s
        .post(&format!("/api/v1/tenants/{}/disable", t.id), &op, json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["enabled"], false);
    // Existing tokens stop at once (session and personal).
    s.get("/api/v1/users/me", &t.admin)
        .await
        .expect(401, "tenant_disabled");
    s.get("/api/v1/users/me", &personal)
        .await
        .expect(401, "tenant_disabled");
    // Logins fail the same way whatever the password (no password oracle).
    login_resp(&s, "acme", "admin", &t.admin_password)
        .await
        .expect(401, "tenant_disabled");
    login_resp(&s, "acme", "admin", "wrong-password-123")
        .await
        .expect(401, "tenant_disabled");
    // Other tenants are untouched.
    assert_eq!(s.get("/api/v1/users/me", &other.admin).await.status, 200);
    let r = s.get(&format!("/api/v1/tenants/{}", t.id), &op).await;
    assert_eq!(r.body["enabled"], false);
    // Re-enabling restores logins and tokens.
    s.patch(
        &format!("/api/v1/tenants/{}", t.id),
        &op,
        json!({"enabled": true}),
    )
    .await;
    assert_eq!(s.get("/api/v1/users/me", &personal).await.status, 200);
    s.login("acme", "admin", &t.admin_password).await;
    s.post(
        &format!("/api/v1/tenants/{}/disable", uuid::Uuid::new_v4()),
        &op,
        json!({}),
    )
    .await
    .expect(404, "not_found");
}

#[tokio::test]
async fn operator_operations_need_the_operator() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let member = s.user(&t, "bob", "member", "person").await;
    let tm = s.user(&t, "tim", "token_manager", "person").await;
    let (_, personal) = s.mint(&t.admin, json!({"scope_set": "read-change"})).await;
    let tid = t.id.clone();
    let calls: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::POST,
            "/api/v1/tenants".into(),
            Some(json!({"slug": "evil"})),
        ),
        (Method::GET, "/api/v1/tenants".into(), None),
        (Method::GET, format!("/api/v1/tenants/{tid}"), None),
        (
            Method::PATCH,
            format!("/api/v1/tenants/{tid}"),
            Some(json!({"name": "x"})),
        ),
        (
            Method::POST,
            format!("/api/v1/tenants/{tid}/disable"),
            Some(json!({})),
        ),
    ];
    for (method, path, body) in &calls {
        for token in [&t.admin, &member.token, &tm.token, &personal] {
            let r = s
                .call(method.clone(), path, Some(token), body.clone())
                .await;
            assert_eq!(r.status, 403, "{method} {path}: {}", r.body);
            assert_eq!(r.header("content-type"), Some("application/problem+json"));
        }
        s.call(method.clone(), path, None, body.clone())
            .await
            .expect(401, "credential_missing");
        let r = s
            .call(method.clone(), path, Some("not-a-token"), body.clone())
            .await;
        assert_eq!(r.status, 401, "{}", r.body);
    }
    let r = s
        .get(&format!("/api/v1/tenants/{tid}"), &s.operator_token())
        .await;
    assert_eq!(r.body["enabled"], true, "nothing was disabled: {}", r.body);
    assert_eq!(r.body["name"], "acme");
    let r = s.get("/api/v1/tenants", &s.operator_token()).await;
    assert_eq!(slugs(&r), vec!["acme"], "nothing was created: {}", r.body);
    // The operator is not a tenant user.
    s.get("/api/v1/users", &s.operator_token())
        .await
        .expect(403, "tenant_only");
}

// ---------------------------------------------------------------------------------------
// CLI.

fn sigil_cli(s: &TestServer, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sigil"));
    cmd.args(args)
        .env("SIGIL_DATABASE_URL", &s.database_url)
        .env("SIGIL_MASTER_KEY", &s.state().config.master_key)
        .env("SIGIL_DATA_DIR", &s._dir.0)
        .env("SIGIL_LOG_LEVEL", "warn")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run sigil");
    if let Some(text) = stdin {
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(text.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("sigil output")
}

#[tokio::test]
async fn cli_creates_tenants_and_operator_tokens() {
    let s = TestServer::start().await;
    // Generated password.
    let out = sigil_cli(&s, &["tenant", "create", "acme"], None);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(printed["tenant"]["slug"], "acme");
    assert_eq!(printed["admin_username"], "admin");
    let password = printed["admin_password"].as_str().expect("password");
    let token = s.login("acme", "admin", password).await;
    let me = s.get("/api/v1/users/me", &token).await;
    assert_eq!(me.body["role"], "admin", "{}", me.body);
    assert_eq!(me.body["user"]["tenant_id"], printed["tenant"]["id"]);

    // Name, admin username and password from stdin.
    let out = sigil_cli(
        &s,
        &[
            "tenant",
            "create",
            "beta",
            "--name",
            "Beta Ltd",
            "--admin-username",
            "boss",
            "--admin-password-stdin",
        ],
        Some("Stdin-chosen-pass-42\n"),
    );
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(printed["tenant"]["name"], "Beta Ltd");
    assert_eq!(printed["admin_username"], "boss");
    assert_eq!(printed["admin_password"], "Stdin-chosen-pass-42");
    s.login("beta", "boss", "Stdin-chosen-pass-42").await;

    // A refused creation exits non-zero with a message, printing no credentials.
    let out = sigil_cli(&s, &["tenant", "create", "acme"], None);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(!out.stderr.is_empty());
    let out = sigil_cli(
        &s,
        &["tenant", "create", "gamma", "--admin-password-stdin"],
        Some("short\n"),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("password"), "{stderr}");

    // Operator token.
    let out = sigil_cli(&s, &["operator", "token", "--ttl", "10m"], None);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let op = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let r = s.get("/api/v1/tenants", &op).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(slugs(&r), vec!["acme", "beta"]);
    let exp = {
        let part = op.split('.').nth(1).unwrap();
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap();
        claims["exp"].as_i64().unwrap() - chrono::Utc::now().timestamp()
    };
    assert!((500..=600).contains(&exp), "ttl 10m gives {exp}s");
    let out = sigil_cli(&s, &["operator", "token", "--ttl", "2d"], None);
    assert!(!out.status.success());
}

// ---------------------------------------------------------------------------------------
// Signing keys and JWKS.

/// Verifies a login token offline against the tenant's published JWKS.
fn verify_offline(jwks: &Value, token: &str, tenant_id: &str) -> Value {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    let kid = kid_of(token);
    let jwk = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap_or_else(|| panic!("kid {kid} is published: {jwks}"));
    let key = DecodingKey::from_ed_components(jwk["x"].as_str().expect("x")).expect("key");
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&[format!("sigil:tenant:{tenant_id}")]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .expect("token verifies offline")
        .claims
}

#[tokio::test]
async fn signing_keys_rotate_with_overlap_and_publish_jwks() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let member = s.user(&t, "bob", "member", "person").await;
    let tm = s.user(&t, "tim", "token_manager", "person").await;
    let (_, personal) = s.mint(&t.admin, json!({"scope_set": "read-only"})).await;

    let keys = s.get("/api/v1/tenant/signing-keys", &t.admin).await;
    assert_eq!(keys.status, 200, "{}", keys.body);
    let list = keys.body["items"].as_array().expect("array");
    assert_eq!(list.len(), 1, "{}", keys.body);
    assert_eq!(list[0]["state"], "active");
    assert_eq!(list[0]["algorithm"], "EdDSA");
    let old_kid = list[0]["kid"].as_str().unwrap().to_owned();
    assert_eq!(kid_of(&t.admin), old_kid);
    assert!(keys.body.to_string().find("private").is_none());
    // A token manager may read the keys; a member may not; neither may rotate.
    assert_eq!(
        s.get("/api/v1/tenant/signing-keys", &tm.token).await.status,
        200
    );
    s.get("/api/v1/tenant/signing-keys", &member.token)
        .await
        .expect(403, "user_lacks_permission");
    s.post(
        "/api/v1/tenant/signing-keys/rotate",
        &member.token,
        json!({}),
    )
    .await
    .expect(403, "user_lacks_permission");
    s.post("/api/v1/tenant/signing-keys/rotate", &tm.token, json!({}))
        .await
        .expect(403, "user_lacks_permission");

    // JWKS: public, cacheable, OKP/Ed25519; verifies a login token offline.
    let jwks = s
        .call(Method::GET, "/api/v1/tenants/acme/jwks.json", None, None)
        .await;
    assert_eq!(jwks.status, 200, "{}", jwks.body);
    let cache = jwks.header("cache-control").expect("Cache-Control");
    assert!(cache.contains("max-age"), "{cache}");
    let k = &jwks.body["keys"][0];
    assert_eq!(jwks.body["keys"].as_array().unwrap().len(), 1);
    assert_eq!(k["kty"], "OKP");
    assert_eq!(k["crv"], "Ed25519");
    assert_eq!(k["use"], "sig");
    assert_eq!(k["alg"], "EdDSA");
    assert_eq!(k["kid"], old_kid.as_str());
    assert!(k.get("d").is_none(), "no private part: {k}");
    let claims = verify_offline(&jwks.body, &member.token, &t.id);
    assert_eq!(claims["sub"], member.id.as_str());
    assert_eq!(claims["tid"], t.id.as_str());
    verify_offline(&jwks.body, &personal, &t.id);
    s.call(Method::GET, "/api/v1/tenants/nope/jwks.json", None, None)
        .await
        .expect(404, "not_found");

    // Rotate.
    let r = s
        .post("/api/v1/tenant/signing-keys/rotate", &t.admin, json!({}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let new_kid = r.body["kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);
    assert_eq!(r.body["state"], "active");
    let keys = s.get("/api/v1/tenant/signing-keys", &t.admin).await;
    let states: Vec<(String, String)> = keys.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["kid"].as_str().unwrap().to_owned(),
                k["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(states.len(), 2, "{}", keys.body);
    assert!(
        states.contains(&(new_kid.clone(), "active".into())),
        "{states:?}"
    );
    assert!(
        states.contains(&(old_kid.clone(), "retiring".into())),
        "{states:?}"
    );
    let old_entry = keys.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == old_kid.as_str())
        .unwrap();
    assert!(old_entry["retire_after"].is_string(), "{old_entry}");

    // Tokens minted before still verify, on the server and offline.
    let me = s.get("/api/v1/users/me", &member.token).await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(s.get("/api/v1/users/me", &personal).await.status, 200);
    // New logins and new tokens carry the new kid.
    let fresh = s.login("acme", "bob", &member.password).await;
    assert_eq!(kid_of(&fresh), new_kid);
    let (_, fresh_personal) = s.mint(&t.admin, json!({"scope_set": "read-only"})).await;
    assert_eq!(kid_of(&fresh_personal), new_kid);
    assert_eq!(s.get("/api/v1/users/me", &fresh).await.status, 200);
    let jwks = s
        .call(Method::GET, "/api/v1/tenants/acme/jwks.json", None, None)
        .await;
    let kids: Vec<&str> = jwks.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids.len(), 2, "{}", jwks.body);
    assert!(kids.contains(&old_kid.as_str()) && kids.contains(&new_kid.as_str()));
    verify_offline(&jwks.body, &member.token, &t.id);
    verify_offline(&jwks.body, &fresh, &t.id);

    // A rotation without overlap retires the previous key at once: its tokens stop.
    let r = s
        .post(
            "/api/v1/tenant/signing-keys/rotate",
            &t.admin,
            json!({"overlap_secs": 0}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let newest = r.body["kid"].as_str().unwrap().to_owned();
    let r = s.get("/api/v1/users/me", &fresh).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.code(), "token_invalid_signature", "{}", r.body);
    let keys = s.get("/api/v1/tenant/signing-keys", &t.admin).await;
    let state_of = |kid: &str| {
        keys.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid)
            .map(|k| k["state"].as_str().unwrap().to_owned())
    };
    assert_eq!(
        state_of(&newest).as_deref(),
        Some("active"),
        "{}",
        keys.body
    );
    assert_eq!(
        state_of(&new_kid).as_deref(),
        Some("retired"),
        "{}",
        keys.body
    );
    let jwks = s
        .call(Method::GET, "/api/v1/tenants/acme/jwks.json", None, None)
        .await;
    assert!(
        !jwks.body.to_string().contains(&new_kid),
        "retired keys are not published: {}",
        jwks.body
    );
    // The admin logs in again and keeps working with the newest key.
    let admin = s.login("acme", "admin", &t.admin_password).await;
    assert_eq!(kid_of(&admin), newest);
    assert_eq!(s.get("/api/v1/users/me", &admin).await.status, 200);
}

#[tokio::test]
async fn tenant_keys_are_separate() {
    let s = TestServer::start().await;
    let a = s.tenant_admin("acme").await;
    let b = s.tenant_admin("beta").await;
    assert_ne!(kid_of(&a.admin), kid_of(&b.admin));
    let jwks_b = s
        .call(Method::GET, "/api/v1/tenants/beta/jwks.json", None, None)
        .await;
    assert!(!jwks_b.body.to_string().contains(&kid_of(&a.admin)));
    let keys_a = s.get("/api/v1/tenant/signing-keys", &a.admin).await;
    assert_eq!(keys_a.body["items"].as_array().unwrap().len(), 1);
    assert!(!keys_a.body.to_string().contains(&kid_of(&b.admin)));
    // Rotating B's key leaves A's alone.
    s.post(
        "/api/v1/tenant/signing-keys/rotate",
        &b.admin,
        json!({"overlap_secs": 0}),
    )
    .await;
    assert_eq!(s.get("/api/v1/users/me", &a.admin).await.status, 200);
    let fresh_a = s.login("acme", "admin", &a.admin_password).await;
    assert_eq!(kid_of(&fresh_a), kid_of(&a.admin));
    s.get("/api/v1/users/me", &b.admin)
        .await
        .expect(401, "token_invalid_signature");
}

// ---------------------------------------------------------------------------------------
// Users.

#[tokio::test]
async fn admin_creates_lists_gets_updates_and_deletes_users() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    // Every role and kind.
    let cases = [
        ("alice", "admin", "person"),
        ("tim", "token_manager", "person"),
        ("bob", "member", "person"),
        ("ci-bot", "member", "api"),
        ("deployer", "token_manager", "api"),
    ];
    let mut ids = std::collections::HashMap::new();
    let password = "Correct-horse-battery-9";
    for (username, role, kind) in cases {
        let r = s
            .post(
                "/api/v1/users",
                &t.admin,
                json!({
                    "username": username, "role": role, "kind": kind,
                    "display_name": format!("{username} Display"),
                    "email": format!("{username}@example.com"),
                    "password": password,
                }),
            )
            .await;
        assert_eq!(r.status, 201, "{username}: {}", r.body);
        assert_eq!(r.body["username"], username);
        assert_eq!(r.body["role"], role);
        assert_eq!(r.body["kind"], kind);
        assert_eq!(r.body["active"], true);
        assert_eq!(r.body["api_access"], true);
        assert_eq!(r.body["is_system"], false);
        assert_eq!(r.body["has_password"], true);
        assert_eq!(r.body["tenant_id"], t.id.as_str());
        assert!(r.body.get("password").is_none() && r.body.get("password_hash").is_none());
        ids.insert(username, r.body["id"].as_str().unwrap().to_owned());
        // Each can log in with their role.
        let token = s.login("acme", username, password).await;
        let me = s.get("/api/v1/users/me", &token).await;
        assert_eq!(me.body["role"], role, "{}", me.body);
    }
    // Defaults: member, person, api access; without a password nobody can log in.
    let r = s
        .post("/api/v1/users", &t.admin, json!({"username": "nopass"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["role"], "member");
    assert_eq!(r.body["kind"], "person");
    assert_eq!(r.body["display_name"], "nopass");
    assert_eq!(r.body["has_password"], false);
    login_resp(&s, "acme", "nopass", "anything-long-enough")
        .await
        .expect(401, "invalid_credentials");

    // Duplicates, weak passwords, bad fields.
    s.post(
        "/api/v1/users",
        &t.admin,
        json!({"username": "bob", "password": "another-Pass-word-1"}),
    )
    .await
    .expect(409, "user_exists");
    s.post("/api/v1/users", &t.admin, json!({"username": "system"}))
        .await
        .expect(409, "user_exists");
    s.post(
        "/api/v1/users",
        &t.admin,
        json!({"username": "carol", "password": "Sh0rt-pw"}),
    )
    .await
    .expect(422, "weak_password");
    s.post(
        "/api/v1/users",
        &t.admin,
        json!({"username": "carol", "password": "xx-CAROL-password-xx"}),
    )
    .await
    .expect(422, "weak_password");
    s.post("/api/v1/users", &t.admin, json!({"username": "bad name"}))
        .await
        .expect(422, "invalid_username");
    s.post(
        "/api/v1/users",
        &t.admin,
        json!({"username": "carol", "email": "not-an-email"}),
    )
    .await
    .expect(422, "invalid_user");
    let r = s
        .post(
            "/api/v1/users",
            &t.admin,
            json!({"username": "carol", "role": "owner"}),
        )
        .await;
    r.expect(422, "validation_failed");
    assert_eq!(
        r.errors(),
        vec![r#"role: must be one of "admin", "token_manager", "member""#]
    );

    // listUsers: admin, alice, bob, ci-bot, deployer, nopass, system, tim.
    let all = s.get("/api/v1/users", &t.admin).await;
    assert_eq!(all.status, 200, "{}", all.body);
    assert_eq!(all.body["total"], 8, "{}", all.body);
    assert_eq!(
        usernames(&all),
        vec!["admin", "alice", "bob", "ci-bot", "deployer", "nopass", "system", "tim"]
    );
    let page = s.get("/api/v1/users?limit=3&offset=3", &t.admin).await;
    assert_eq!(page.body["total"], 8);
    assert_eq!(page.body["offset"], 3);
    assert_eq!(page.body["limit"], 3);
    assert_eq!(usernames(&page), vec!["ci-bot", "deployer", "nopass"]);
    let last = s.get("/api/v1/users?limit=3&offset=6", &t.admin).await;
    assert_eq!(usernames(&last), vec!["system", "tim"]);
    // Search over username, display name and email.
    let r = s.get("/api/v1/users?q=BOT", &t.admin).await;
    assert_eq!(usernames(&r), vec!["ci-bot"], "{}", r.body);
    let r = s.get("/api/v1/users?q=tim%20display", &t.admin).await;
    assert_eq!(usernames(&r), vec!["tim"], "{}", r.body);
    let r = s.get("/api/v1/users?q=alice%40example", &t.admin).await;
    assert_eq!(usernames(&r), vec!["alice"], "{}", r.body);
    // Filters.
    let r = s.get("/api/v1/users?role=token_manager", &t.admin).await;
    assert_eq!(usernames(&r), vec!["deployer", "tim"], "{}", r.body);
    let r = s.get("/api/v1/users?role=admin", &t.admin).await;
    assert_eq!(usernames(&r), vec!["admin", "alice"], "{}", r.body);
    let r = s.get("/api/v1/users?kind=api", &t.admin).await;
    assert_eq!(
        usernames(&r),
        vec!["ci-bot", "deployer", "system"],
        "{}",
        r.body
    );
    let r = s.get("/api/v1/users?kind=api&role=member", &t.admin).await;
    assert_eq!(usernames(&r), vec!["ci-bot", "system"], "{}", r.body);
    let r = s.get("/api/v1/users?active=false", &t.admin).await;
    assert_eq!(r.body["total"], 0, "{}", r.body);

    // getUser.
    let bob = &ids["bob"];
    let r = s.get(&format!("/api/v1/users/{bob}"), &t.admin).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["username"], "bob");
    assert_eq!(r.body["email"], "bob@example.com");
    s.get(&format!("/api/v1/users/{}", uuid::Uuid::new_v4()), &t.admin)
        .await
        .expect(404, "not_found");

    // updateUser: role, contact, api_access, active, password.
    let r = s
        .patch(
            &format!("/api/v1/users/{bob}"),
            &t.admin,
            json!({"role": "token_manager", "display_name": "Robert", "email": "robert@example.org"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["role"], "token_manager");
    assert_eq!(r.body["display_name"], "Robert");
    assert_eq!(r.body["email"], "robert@example.org");
    let r = s.get(&format!("/api/v1/users/{bob}"), &t.admin).await;
    assert_eq!(r.body["role"], "token_manager");
    assert_eq!(r.body["display_name"], "Robert");
    // An empty email clears it; an invalid one is refused.
    let r = s
        .patch(
            &format!("/api/v1/users/{bob}"),
            &t.admin,
            json!({"email": ""}),
        )
        .await;
    assert_eq!(r.body["email"], Value::Null, "{}", r.body);
    s.patch(
        &format!("/api/v1/users/{bob}"),
        &t.admin,
        json!({"email": "no at sign"}),
    )
    .await
    .expect(422, "invalid_user");
    let r = s
        .patch(
            &format!("/api/v1/users/{bob}"),
            &t.admin,
            json!({"api_access": false, "active": false}),
        )
        .await;
    assert_eq!(r.body["api_access"], false, "{}", r.body);
    assert_eq!(r.body["active"], false);
    let r = s.get("/api/v1/users?active=false", &t.admin).await;
    assert_eq!(usernames(&r), vec!["bob"], "{}", r.body);
    let r = s
        .patch(
            &format!("/api/v1/users/{bob}"),
            &t.admin,
            json!({"api_access": true, "active": true, "password": "Brand-new-secret-77"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["active"], true);
    login_resp(&s, "acme", "bob", password)
        .await
        .expect(401, "invalid_credentials");
    let token = s.login("acme", "bob", "Brand-new-secret-77").await;
    assert_eq!(
        s.get("/api/v1/users/me", &token).await.body["role"],
        "token_manager"
    );
    s.patch(
        &format!("/api/v1/users/{bob}"),
        &t.admin,
        json!({"password": "short"}),
    )
    .await
    .expect(422, "weak_password");
    s.patch(
        &format!("/api/v1/users/{bob}"),
        &t.admin,
        json!({"password": "my-BOB-password-123"}),
    )
    .await
    .expect(422, "weak_password");
    s.patch(
        &format!("/api/v1/users/{}", uuid::Uuid::new_v4()),
        &t.admin,
        json!({"display_name": "x"}),
    )
    .await
    .expect(404, "not_found");

    // deleteUser.
    let r = s.delete(&format!("/api/v1/users/{bob}"), &t.admin).await;
    assert_eq!(r.status, 204, "{}", r.body);
    s.get(&format!("/api/v1/users/{bob}"), &t.admin)
        .await
        .expect(404, "not_found");
    s.delete(&format!("/api/v1/users/{bob}"), &t.admin)
        .await
        .expect(404, "not_found");
    s.get("/api/v1/users/me", &token)
        .await
        .expect(401, "token_unknown");
    login_resp(&s, "acme", "bob", "Brand-new-secret-77")
        .await
        .expect(401, "invalid_credentials");
    let all = s.get("/api/v1/users", &t.admin).await;
    assert_eq!(all.body["total"], 7);
    // The username is free again.
    let r = s
        .post("/api/v1/users", &t.admin, json!({"username": "bob"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_ne!(r.body["id"], bob.as_str());
}

#[tokio::test]
async fn admin_password_reset_ends_the_users_sessions() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let bob = s.user(&t, "bob", "member", "person").await;
    let (_, personal) = s.mint(&bob.token, json!({"scope_set": "read-only"})).await;
    let r = s
        .patch(
            &format!("/api/v1/users/{}", bob.id),
            &t.admin,
            json!({"password": "Reset-by-admin-2024"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    s.get("/api/v1/users/me", &bob.token)
        .await
        .expect(401, "token_revoked");
    // Personal tokens are not login sessions: they keep working.
    assert_eq!(s.get("/api/v1/users/me", &personal).await.status, 200);
    s.login("acme", "bob", "Reset-by-admin-2024").await;
}

#[tokio::test]
async fn system_user_is_listed_but_untouchable() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let r = s.get("/api/v1/users?q=system", &t.admin).await;
    assert_eq!(usernames(&r), vec!["system"], "{}", r.body);
    let system = &r.body["items"][0];
    assert_eq!(system["is_system"], true);
    assert_eq!(system["api_access"], false);
    assert_eq!(system["has_password"], false);
    let sid = system["id"].as_str().unwrap().to_owned();
    let r = s.get(&format!("/api/v1/users/{sid}"), &t.admin).await;
    assert_eq!(r.body["is_system"], true, "{}", r.body);
    // Admin listing marks only the system user.
    let all = s.get("/api/v1/users", &t.admin).await;
    for u in all.body["items"].as_array().unwrap() {
        assert_eq!(u["is_system"], u["username"] == "system", "{u}");
    }
    for body in [
        json!({"display_name": "Hacked"}),
        json!({"role": "admin"}),
        json!({"api_access": true}),
        json!({"active": false}),
        json!({"password": "System-password-123"}),
    ] {
        s.patch(&format!("/api/v1/users/{sid}"), &t.admin, body)
            .await
            .expect(403, "system_user");
    }
    s.post(
        &format!("/api/v1/users/{sid}/deactivate"),
        &t.admin,
        json!({}),
    )
    .await
    .expect(403, "system_user");
    s.delete(&format!("/api/v1/users/{sid}"), &t.admin)
        .await
        .expect(403, "system_user");
    let r = s.get(&format!("/api/v1/users/{sid}"), &t.admin).await;
    assert_eq!(r.body["display_name"], "System");
    assert_eq!(r.body["active"], true);
    assert_eq!(r.body["has_password"], false);
    login_resp(&s, "acme", "system", "System-password-123")
        .await
        .expect(401, "invalid_credentials");
    login_resp(&s, "acme", "system", "")
        .await
        .expect(401, "invalid_credentials");
}

#[tokio::test]
async fn only_admins_manage_users() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let member = s.user(&t, "bob", "member", "person").await;
    let tm = s.user(&t, "tim", "token_manager", "person").await;
    let victim = s.user(&t, "vic", "member", "person").await;
    let vid = &victim.id;
    for who in [&member, &tm] {
        s.post(
            "/api/v1/users",
            &who.token,
            json!({"username": "intruder", "role": "admin", "password": "Intruder-pass-123"}),
        )
        .await
        .expect(403, "user_lacks_permission");
        s.patch(
            &format!("/api/v1/users/{vid}"),
            &who.token,
            json!({"display_name": "Owned"}),
        )
        .await
        .expect(403, "user_lacks_permission");
        s.post(
            &format!("/api/v1/users/{vid}/deactivate"),
            &who.token,
            json!({}),
        )
        .await
        .expect(403, "user_lacks_permission");
        s.delete(&format!("/api/v1/users/{vid}"), &who.token)
            .await
            .expect(403, "user_lacks_permission");
        // Nobody raises their own role.
        s.patch(
            &format!("/api/v1/users/{}", who.id),
            &who.token,
            json!({"role": "admin"}),
        )
        .await
        .expect(403, "user_lacks_permission");
        let mine = s.get("/api/v1/tenant", &who.token).await;
        assert_eq!(mine.status, 200, "{}", mine.body);
        put(
            &s,
            "/api/v1/tenant/policy",
            &who.token,
            mine.body["policy"].clone(),
        )
        .await
        .expect(403, "user_lacks_permission");
    }
    // A member cannot read the user list or other users; a token manager can.
    s.get("/api/v1/users", &member.token)
        .await
        .expect(403, "user_lacks_permission");
    s.get(&format!("/api/v1/users/{vid}"), &member.token)
        .await
        .expect(403, "user_lacks_permission");
    let r = s.get("/api/v1/users", &tm.token).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        s.get(&format!("/api/v1/users/{vid}"), &tm.token)
            .await
            .status,
        200
    );
    // updateCurrentUser has no role: a role in the body is refused and changes nothing.
    let r = s
        .patch(
            "/api/v1/users/me",
            &member.token,
            json!({"role": "admin", "display_name": "Bobby"}),
        )
        .await;
    r.expect(422, "unknown_field");
    assert_eq!(r.errors(), vec!["role: is not taken by this operation"]);
    let me = s.get("/api/v1/users/me", &member.token).await;
    assert_eq!(me.body["role"], "member");
    assert_ne!(me.body["display_name"], "Bobby");
    let r = s
        .patch(
            "/api/v1/users/me",
            &member.token,
            json!({"display_name": "Bobby"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["role"], "member");
    assert_eq!(r.body["display_name"], "Bobby");
    let me = s.get("/api/v1/users/me", &member.token).await;
    assert_eq!(me.body["role"], "member");
    assert_eq!(me.body["user"]["role"], "member");
    // Nothing changed for the victim, nobody was created.
    let r = s.get(&format!("/api/v1/users/{vid}"), &t.admin).await;
    assert_eq!(r.body["display_name"], "vic");
    assert_eq!(r.body["active"], true);
    let r = s.get("/api/v1/users?q=intruder", &t.admin).await;
    assert_eq!(r.body["total"], 0);
    // Personal tokens of admins carry the same rule: a read-only token cannot create users.
    let (_, read_only) = s.mint(&t.admin, json!({"scope_set": "read-only"})).await;
    let r = s
        .post(
            "/api/v1/users",
            &read_only,
            json!({"username": "viaro", "password": "Via-read-only-123"}),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
}

#[tokio::test]
async fn the_last_active_admin_stays() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let me = s.get("/api/v1/users/me", &t.admin).await;
    let admin_id = me.body["user"]["id"].as_str().unwrap().to_owned();
    for body in [
        json!({"role": "member"}),
        json!({"role": "token_manager"}),
        json!({"active": false}),
    ] {
        s.patch(&format!("/api/v1/users/{admin_id}"), &t.admin, body)
            .await
            .expect(409, "last_admin");
    }
    s.post(
        &format!("/api/v1/users/{admin_id}/deactivate"),
        &t.admin,
        json!({}),
    )
    .await
    .expect(409, "cannot_deactivate_self");
    s.delete(&format!("/api/v1/users/{admin_id}"), &t.admin)
        .await
        .expect(409, "cannot_delete_self");
    // More admins make demotion possible; a deactivated admin does not count as one
    // that stays.
    let second = s.user(&t, "alice", "admin", "person").await;
    let third = s.user(&t, "carl", "admin", "person").await;
    let r = s
        .patch(
            &format!("/api/v1/users/{admin_id}"),
            &second.token,
            json!({"role": "member"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["role"], "member");
    let r = s
        .post(
            &format!("/api/v1/users/{}/deactivate", third.id),
            &second.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["active"], false);
    for body in [
        json!({"role": "member"}),
        json!({"role": "token_manager"}),
        json!({"active": false}),
    ] {
        s.patch(&format!("/api/v1/users/{}", second.id), &second.token, body)
            .await
            .expect(409, "last_admin");
    }
    let r = s
        .get(&format!("/api/v1/users/{}", second.id), &second.token)
        .await;
    assert_eq!(r.body["role"], "admin");
    assert_eq!(r.body["active"], true);
    // Reactivating the third admin lets the second step down.
    let r = s
        .patch(
            &format!("/api/v1/users/{}", third.id),
            &second.token,
            json!({"active": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s
        .patch(
            &format!("/api/v1/users/{}", second.id),
            &second.token,
            json!({"role": "member"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

// ---------------------------------------------------------------------------------------
// Login.

#[tokio::test]
async fn login_answers_a_bearer_token_and_follows_the_session_lifetime() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let r = login_resp(&s, "acme", "admin", &t.admin_password).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(r.body["tenant"], "acme");
    assert_eq!(r.body["user"]["username"], "admin");
    let expires_in = r.body["expires_in"].as_i64().expect("expires_in");
    assert!((3590..=3600).contains(&expires_in), "{expires_in}");
    let expires_at: chrono::DateTime<chrono::Utc> =
        r.body["expires_at"].as_str().unwrap().parse().unwrap();
    let left = (expires_at - chrono::Utc::now()).num_seconds();
    assert!((3580..=3600).contains(&left), "{left}");
    let token = r.body["token"].as_str().unwrap();
    assert_eq!(jwt_header(token)["alg"], "EdDSA");
    // Missing parts.
    s.call(
        Method::POST,
        "/api/v1/auth/login",
        None,
        Some(json!({"tenant": "acme", "username": "admin"})),
    )
    .await
    .expect(401, "credentials_required")
    .header("www-authenticate")
    .filter(|c| c.starts_with("Basic realm=\"sigil\""))
    .expect("a Basic challenge");
    s.call(
        Method::POST,
        "/api/v1/auth/login",
        None,
        Some(json!({"username": "admin", "password": t.admin_password})),
    )
    .await
    .expect(401, "tenant_required");
    // Basic with a wrong password.
    let r = s
        .client
        .post(s.url("/api/v1/auth/login?tenant=acme"))
        .basic_auth("admin", Some("wrong-password-123"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    Resp::from(r).await.expect(401, "invalid_credentials");

    // A shorter session lifetime in the policy.
    let mine = s.get("/api/v1/tenant", &t.admin).await;
    assert_eq!(mine.status, 200, "{}", mine.body);
    let mut policy = mine.body["policy"].clone();
    assert_eq!(policy["session_lifetime_secs"], 3600);
    policy["session_lifetime_secs"] = json!(600);
    let r = put(&s, "/api/v1/tenant/policy", &t.admin, policy.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["policy"]["session_lifetime_secs"], 600);
    let r = login_resp(&s, "acme", "admin", &t.admin_password).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let expires_in = r.body["expires_in"].as_i64().unwrap();
    assert!((590..=600).contains(&expires_in), "{expires_in}");
    let token = r.body["token"].as_str().unwrap().to_owned();
    let me = s.get("/api/v1/users/me", &token).await;
    let token_exp: chrono::DateTime<chrono::Utc> = me.body["token_expires_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((token_exp - chrono::Utc::now()).num_seconds() <= 600);
    // Out-of-range values are refused.
    policy["session_lifetime_secs"] = json!(10);
    let r = put(&s, "/api/v1/tenant/policy", &t.admin, policy).await;
    r.expect(422, "validation_failed");
    assert_eq!(
        r.errors(),
        vec!["session_lifetime_secs: must be between 60 and 3600"]
    );
    let mine = s.get("/api/v1/tenant", &t.admin).await;
    assert_eq!(mine.body["policy"]["session_lifetime_secs"], 600);
}

#[tokio::test]
async fn deactivated_users_cannot_log_in_or_use_their_tokens() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let bob = s.user(&t, "bob", "member", "person").await;
    let (_, personal) = s.mint(&bob.token, json!({"scope_set": "read-only"})).await;
    let r = s
        .post(
            &format!("/api/v1/users/{}/deactivate", bob.id),
            &t.admin,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["active"], false);
    let r = s.get("/api/v1/users/me", &bob.token).await;
    r.expect(401, "user_deactivated");
    assert!(r.header("www-authenticate").is_some());
    s.get("/api/v1/users/me", &personal)
        .await
        .expect(401, "user_deactivated");
    // The right password names the state; a wrong one says nothing more.
    login_resp(&s, "acme", "bob", &bob.password)
        .await
        .expect(401, "user_deactivated");
    login_resp(&s, "acme", "bob", "wrong-password-123")
        .await
        .expect(401, "invalid_credentials");
    let r = s.get("/api/v1/users?active=false", &t.admin).await;
    assert_eq!(usernames(&r), vec!["bob"]);
    // Reactivation lets them in again.
    let r = s
        .patch(
            &format!("/api/v1/users/{}", bob.id),
            &t.admin,
            json!({"active": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let token = s.login("acme", "bob", &bob.password).await;
    assert_eq!(s.get("/api/v1/users/me", &token).await.status, 200);
    s.post(
        &format!("/api/v1/users/{}/deactivate", uuid::Uuid::new_v4()),
        &t.admin,
        json!({}),
    )
    .await
    .expect(404, "not_found");
}

#[tokio::test]
async fn api_access_is_required_to_log_in_and_to_call() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let r = s
        .post(
            "/api/v1/users",
            &t.admin,
            json!({"username": "noapi", "api_access": false, "password": "Correct-horse-battery-9"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["api_access"], false);
    login_resp(&s, "acme", "noapi", "Correct-horse-battery-9")
        .await
        .expect(403, "api_access_denied");
    login_resp(&s, "acme", "noapi", "wrong-password-123")
        .await
        .expect(401, "invalid_credentials");
    // Withdrawing the permission stops existing tokens at once.
    let bob = s.user(&t, "bob", "member", "person").await;
    let (_, personal) = s.mint(&bob.token, json!({"scope_set": "read-only"})).await;
    let r = s
        .patch(
            &format!("/api/v1/users/{}", bob.id),
            &t.admin,
            json!({"api_access": false}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    s.get("/api/v1/users/me", &bob.token)
        .await
        .expect(403, "api_access_denied");
    s.get("/api/v1/users/me", &personal)
        .await
        .expect(403, "api_access_denied");
    login_resp(&s, "acme", "bob", &bob.password)
        .await
        .expect(403, "api_access_denied");
    // Granting it back restores them.
    s.patch(
        &format!("/api/v1/users/{}", bob.id),
        &t.admin,
        json!({"api_access": true}),
    )
    .await;
    assert_eq!(s.get("/api/v1/users/me", &bob.token).await.status, 200);
    assert_eq!(s.get("/api/v1/users/me", &personal).await.status, 200);
}

#[tokio::test]
async fn repeated_failures_throttle_logins() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let bob = s.user(&t, "bob", "member", "person").await;
    for _ in 0..5 {
        login_resp(&s, "acme", "bob", "wrong-password-123")
            .await
            .expect(401, "invalid_credentials");
    }
    for password in [bob.password.as_str(), "wrong-password-123"] {
        let r = login_resp(&s, "acme", "bob", password).await;
        r.expect(429, "login_throttled");
        let retry: u64 = r
            .header("retry-after")
            .expect("Retry-After")
            .parse()
            .expect("seconds");
        assert!((1..=300).contains(&retry), "{retry}");
    }
    // Another user of the tenant is not locked out by bob's failures.
    s.login("acme", "admin", &t.admin_password).await;
    // A lower limit in the policy applies to the next attempts.
    let mut policy = s.get("/api/v1/tenant", &t.admin).await.body["policy"].clone();
    assert_eq!(policy["login_max_failures"], 5);
    policy["login_max_failures"] = json!(2);
    let r = put(&s, "/api/v1/tenant/policy", &t.admin, policy).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let carl = s.user(&t, "carl", "member", "person").await;
    for _ in 0..2 {
        login_resp(&s, "acme", "carl", "wrong-password-123")
            .await
            .expect(401, "invalid_credentials");
    }
    login_resp(&s, "acme", "carl", &carl.password)
        .await
        .expect(429, "login_throttled");
}

// ---------------------------------------------------------------------------------------
// The current user.

#[tokio::test]
async fn current_user_reads_and_updates_their_contact() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let bob = s.user(&t, "bob", "member", "person").await;
    let me = s.get("/api/v1/users/me", &bob.token).await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.body["user"]["id"], bob.id.as_str());
    assert_eq!(me.body["tenant"], "acme");
    assert_eq!(me.body["role"], "member");
    assert_eq!(me.body["token_kind"], "session");
    let methods: Vec<&str> = me.body["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert!(methods.contains(&"me.update"));
    assert!(!methods.contains(&"users.create"), "{methods:?}");
    let r = s
        .patch(
            "/api/v1/users/me",
            &bob.token,
            json!({"display_name": "Bob Builder", "email": "bob@example.com"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["display_name"], "Bob Builder");
    assert_eq!(r.body["email"], "bob@example.com");
    let me = s.get("/api/v1/users/me", &bob.token).await;
    assert_eq!(me.body["user"]["display_name"], "Bob Builder");
    assert_eq!(me.body["user"]["email"], "bob@example.com");
    // Only what is given changes.
    let r = s
        .patch("/api/v1/users/me", &bob.token, json!({"display_name": "B"}))
        .await;
    assert_eq!(r.body["email"], "bob@example.com", "{}", r.body);
    for bad in ["no-at-sign", "a@b", "two words@example.com", "@example.com"] {
        s.patch("/api/v1/users/me", &bob.token, json!({"email": bad}))
            .await
            .expect(422, "invalid_user");
    }
    s.patch(
        "/api/v1/users/me",
        &bob.token,
        json!({"display_name": "   "}),
    )
    .await
    .expect(422, "invalid_user");
    let me = s.get("/api/v1/users/me", &bob.token).await;
    assert_eq!(me.body["user"]["email"], "bob@example.com");
    assert_eq!(me.body["user"]["display_name"], "B");
    // The admin sees the change.
    let r = s.get(&format!("/api/v1/users/{}", bob.id), &t.admin).await;
    assert_eq!(r.body["email"], "bob@example.com");
    // Unauthenticated.
    s.call(Method::GET, "/api/v1/users/me", None, None)
        .await
        .expect(401, "credential_missing");
}

#[tokio::test]
async fn changing_the_password_ends_the_other_sessions() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let bob = s.user(&t, "bob", "member", "person").await;
    let other_session = s.login("acme", "bob", &bob.password).await;
    let (_, personal) = s.mint(&bob.token, json!({"scope_set": "read-only"})).await;
    s.post(
        "/api/v1/users/me/password",
        &bob.token,
        json!({"current_password": "wrong-password-123", "new_password": "Fresh-secret-2024"}),
    )
    .await
    .expect(403, "invalid_password");
    s.post(
        "/api/v1/users/me/password",
        &bob.token,
        json!({"current_password": bob.password, "new_password": "short"}),
    )
    .await
    .expect(422, "weak_password");
    s.post(
        "/api/v1/users/me/password",
        &bob.token,
        json!({"current_password": bob.password, "new_password": "Not-BOB-at-all-1"}),
    )
    .await
    .expect(422, "weak_password");
    // Nothing happened so far.
    assert_eq!(s.get("/api/v1/users/me", &other_session).await.status, 200);
    let r = s
        .post(
            "/api/v1/users/me/password",
            &bob.token,
            json!({"current_password": bob.password, "new_password": "Fresh-secret-2024"}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    s.get("/api/v1/users/me", &other_session)
        .await
        .expect(401, "token_revoked");
    assert_eq!(s.get("/api/v1/users/me", &bob.token).await.status, 200);
    assert_eq!(s.get("/api/v1/users/me", &personal).await.status, 200);
    login_resp(&s, "acme", "bob", &bob.password)
        .await
        .expect(401, "invalid_credentials");
    let fresh = s.login("acme", "bob", "Fresh-secret-2024").await;
    assert_eq!(s.get("/api/v1/users/me", &fresh).await.status, 200);
    // The other users' sessions are untouched.
    assert_eq!(s.get("/api/v1/users/me", &t.admin).await.status, 200);
}

// ---------------------------------------------------------------------------------------
// Isolation.

#[tokio::test]
async fn tenants_cannot_see_each_other() {
    let s = TestServer::start().await;
    let a = s.tenant_admin("acme").await;
    let b = s.tenant_admin("beta").await;
    let b_user = s.user(&b, "bob", "member", "person").await;
    let bid = &b_user.id;
    s.get(&format!("/api/v1/users/{bid}"), &a.admin)
        .await
        .expect(404, "not_found");
    s.patch(
        &format!("/api/v1/users/{bid}"),
        &a.admin,
        json!({"display_name": "Owned", "role": "admin"}),
    )
    .await
    .expect(404, "not_found");
    s.post(
        &format!("/api/v1/users/{bid}/deactivate"),
        &a.admin,
        json!({}),
    )
    .await
    .expect(404, "not_found");
    s.delete(&format!("/api/v1/users/{bid}"), &a.admin)
        .await
        .expect(404, "not_found");
    // B's user is untouched and still works.
    let r = s.get(&format!("/api/v1/users/{bid}"), &b.admin).await;
    assert_eq!(r.body["display_name"], "bob", "{}", r.body);
    assert_eq!(r.body["role"], "member");
    assert_eq!(r.body["active"], true);
    assert_eq!(s.get("/api/v1/users/me", &b_user.token).await.status, 200);
    // Lists and searches stay within the tenant.
    let r = s.get("/api/v1/users", &a.admin).await;
    assert_eq!(usernames(&r), vec!["admin", "system"], "{}", r.body);
    let r = s.get("/api/v1/users?q=bob", &a.admin).await;
    assert_eq!(r.body["total"], 0);
    let r = s.get("/api/v1/tenant", &a.admin).await;
    assert_eq!(r.body["slug"], "acme");
    // Same username in two tenants are two users.
    let a_bob = s.user(&a, "bob", "member", "person").await;
    assert_ne!(a_bob.id, b_user.id);
    login_resp(&s, "beta", "bob", &a_bob.password)
        .await
        .expect(401, "invalid_credentials");
    // Tokens of B are invisible to A.
    let (b_token, _) = s
        .mint(&b_user.token, json!({"scope_set": "read-only"}))
        .await;
    let b_token_id = b_token["id"].as_str().unwrap();
    s.get(&format!("/api/v1/tokens/{b_token_id}"), &a.admin)
        .await
        .expect(404, "not_found");
    let r = s.get("/api/v1/tokens", &a.admin).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.body.to_string().contains(b_token_id), "{}", r.body);
    // A's policy change does not touch B.
    let mut policy = s.get("/api/v1/tenant", &a.admin).await.body["policy"].clone();
    policy["session_lifetime_secs"] = json!(600);
    put(&s, "/api/v1/tenant/policy", &a.admin, policy).await;
    let r = s.get("/api/v1/tenant", &b.admin).await;
    assert_eq!(r.body["policy"]["session_lifetime_secs"], 3600);
    // An admin of A cannot log in to B with A's password.
    login_resp(&s, "beta", "admin", &a.admin_password)
        .await
        .expect(401, "invalid_credentials");
}

#[tokio::test]
async fn concurrent_demotions_keep_one_admin() {
    let s = TestServer::start().await;
    for round in 0..4 {
        let t = s.tenant_admin(&format!("race{round}")).await;
        let me = s.get("/api/v1/users/me", &t.admin).await;
        let first_id = me.body["user"]["id"].as_str().unwrap().to_owned();
        let second = s.user(&t, "alice", "admin", "person").await;
        // Both admins step down at the same time (one by demotion, one by deactivation):
        // at most one may succeed.
        let first_path = format!("/api/v1/users/{first_id}");
        let second_path = format!("/api/v1/users/{}", second.id);
        let (r1, r2) = futures::join!(
            s.patch(&first_path, &t.admin, json!({"role": "member"})),
            s.patch(&second_path, &second.token, json!({"active": false})),
        );
        let ok = [r1.status, r2.status].iter().filter(|s| **s == 200).count();
        assert_eq!(ok, 1, "round {round}: {} / {}", r1.body, r2.body);
        for r in [&r1, &r2] {
            if r.status != 200 {
                r.expect(409, "last_admin");
            }
        }
        let lister = if r1.status == 200 {
            &second.token
        } else {
            &t.admin
        };
        let admins = s.get("/api/v1/users?role=admin&active=true", lister).await;
        assert_eq!(admins.body["total"], 1, "round {round}: {}", admins.body);
    }
}

#[tokio::test]
async fn concurrent_delete_and_demotion_keep_one_admin() {
    let s = TestServer::start().await;
    for round in 0..4 {
        let t = s.tenant_admin(&format!("race{round}")).await;
        let me = s.get("/api/v1/users/me", &t.admin).await;
        let first_id = me.body["user"]["id"].as_str().unwrap().to_owned();
        let second = s.user(&t, "alice", "admin", "person").await;
        // The first admin deletes the second while stepping down: at most one may succeed.
        let first_path = format!("/api/v1/users/{first_id}");
        let second_path = format!("/api/v1/users/{}", second.id);
        let (r1, r2) = futures::join!(
            s.patch(&first_path, &t.admin, json!({"role": "token_manager"})),
            s.delete(&second_path, &t.admin),
        );
        let ok = [r1.status.as_u16(), r2.status.as_u16()]
            .iter()
            .filter(|s| **s == 200 || **s == 204)
            .count();
        assert_eq!(ok, 1, "round {round}: {} / {}", r1.body, r2.body);
        // The delete is refused either by the count, or (when the demotion came first)
        // because its caller is no longer an admin.
        if !r2.status.is_success() && r2.code() != "user_lacks_permission" {
            r2.expect(409, "last_admin");
        }
        if !r1.status.is_success() {
            r1.expect(409, "last_admin");
        }
        let login = s.login(&t.slug, "admin", &t.admin_password).await;
        let admins = s.get("/api/v1/users?role=admin&active=true", &login).await;
        if admins.status == 200 {
            assert_eq!(admins.body["total"], 1, "round {round}: {}", admins.body);
        } else {
            // The first admin stepped down, so the second one remains.
            assert_eq!(r1.status, 200, "round {round}: {}", admins.body);
            let login = s.login(&t.slug, "alice", &second.password).await;
            let admins = s.get("/api/v1/users?role=admin&active=true", &login).await;
            assert_eq!(admins.body["total"], 1, "round {round}: {}", admins.body);
        }
    }
}

#[tokio::test]
async fn concurrent_rotations_leave_one_active_key() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    for round in 0..3 {
        let (r1, r2) = futures::join!(
            s.post("/api/v1/tenant/signing-keys/rotate", &t.admin, json!({})),
            s.post("/api/v1/tenant/signing-keys/rotate", &t.admin, json!({})),
        );
        assert_eq!(r1.status, 201, "round {round}: {}", r1.body);
        assert_eq!(r2.status, 201, "round {round}: {}", r2.body);
        let keys = s.get("/api/v1/tenant/signing-keys", &t.admin).await;
        let active: Vec<&Value> = keys.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["state"] == "active")
            .collect();
        assert_eq!(active.len(), 1, "round {round}: {}", keys.body);
        let fresh = s.login("acme", "admin", &t.admin_password).await;
        assert_eq!(kid_of(&fresh), active[0]["kid"].as_str().unwrap());
    }
    // The admin's session from before all rotations still works during the overlap.
    assert_eq!(s.get("/api/v1/users/me", &t.admin).await.status, 200);
}

#[tokio::test]
async fn searches_take_wildcards_literally() {
    let s = TestServer::start().await;
    let op = s.operator_token();
    for (slug, name) in [("half", "50% Off"), ("most", "500 Off")] {
        let r = s
            .post("/api/v1/tenants", &op, json!({"slug": slug, "name": name}))
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let r = s.get("/api/v1/tenants?q=50%25", &op).await;
    assert_eq!(slugs(&r), vec!["half"], "{}", r.body);
    let r = s.get("/api/v1/tenants?q=_", &op).await;
    assert_eq!(r.body["total"], 0, "{}", r.body);

    let t = s.tenant_admin("acme").await;
    for username in ["a_b", "axb", "back\\slash"] {
        let name = username.replace('\\', "");
        let r = s
            .post(
                "/api/v1/users",
                &t.admin,
                json!({"username": name, "display_name": username}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let r = s.get("/api/v1/users?q=a_b", &t.admin).await;
    assert_eq!(usernames(&r), vec!["a_b"], "{}", r.body);
    let r = s.get("/api/v1/users?q=%25", &t.admin).await;
    assert_eq!(r.body["total"], 0, "{}", r.body);
    let r = s.get("/api/v1/users?q=k%5Cs", &t.admin).await;
    assert_eq!(usernames(&r), vec!["backslash"], "{}", r.body);
}

#[tokio::test]
async fn many_failures_from_one_address_throttle_every_login_from_it() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    // Four times the per-user limit, spread over usernames (known or not).
    for i in 0..20 {
        login_resp(&s, "acme", &format!("guess{i}"), "wrong-password-123")
            .await
            .expect(401, "invalid_credentials");
    }
    let r = login_resp(&s, "acme", "admin", &t.admin_password).await;
    r.expect(429, "login_throttled");
    assert!(r.header("retry-after").is_some());
    // Existing sessions are not affected.
    assert_eq!(s.get("/api/v1/users/me", &t.admin).await.status, 200);
}
