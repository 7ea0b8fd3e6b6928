use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::Utc;
use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::{Resp, TestServer};

async fn send(s: &TestServer, req: reqwest::RequestBuilder) -> Resp {
    let _ = s;
    Resp::from(req.send().await.unwrap()).await
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn parts(token: &str) -> (Value, Value, String) {
    let mut it = token.split('.');
    let h = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap()).unwrap();
    let c = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap()).unwrap();
    (h, c, it.next().unwrap().to_owned())
}

#[tokio::test]
async fn every_credential_style_is_accepted() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let (_, secret) = s.mint(&t.admin, json!({"scope_set": "read-only"})).await;
    let me = s.url("/api/v1/users/me");
    let c = &s.client;
    for req in [
        c.get(&me)
            .header("Authorization", format!("Bearer {secret}")),
        c.get(&me)
            .header("Authorization", format!("authToken {secret}")),
        c.get(&me).header("Auth-Token", secret.as_str()),
        c.get(format!("{me}?auth_token={secret}")),
        c.get(format!("{me}?session={secret}")),
    ] {
        let r = send(&s, req).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    // Two different credentials in one request are refused.
    let (_, other) = s.mint(&t.admin, json!({"scope_set": "read-only"})).await;
    let r = send(
        &s,
        c.get(format!("{me}?session={other}"))
            .header("Auth-Token", secret.as_str()),
    )
    .await;
    r.expect(400, "multiple_credentials");
    // The same one twice is fine.
    let r = send(
        &s,
        c.get(format!("{me}?session={secret}"))
            .header("Auth-Token", secret.as_str()),
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn policy_can_forbid_query_transports() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let (_, secret) = s.mint(&t.admin, json!({"scope_set": "read-only"})).await;
    let mut policy = s.get("/api/v1/tenant", &t.admin).await.body["policy"].clone();
    policy["allow_query_credentials"] = json!(false);
    let r = s
        .call(
            Method::PUT,
            "/api/v1/tenant/policy",
            Some(&t.admin),
            Some(policy),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = send(
        &s,
        s.client
            .get(s.url(&format!("/api/v1/users/me?session={secret}"))),
    )
    .await;
    r.expect(401, "transport_not_allowed");
    assert_eq!(
        s.get("/api/v1/users/me", &secret).await.status,
        200,
        "headers still work"
    );
}

#[tokio::test]
async fn each_refusal_has_its_code() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let bob = s.user(&t, "bob", "admin", "person").await;
    let (_, bobs) = s
        .mint(&bob.token, json!({"scope_set": "read-change"}))
        .await;
    assert_eq!(s.get("/api/v1/users", &bobs).await.status, 200);
    // Out of scope.
    let (_, narrow) = s.mint(&t.admin, json!({"methods": ["me.get"]})).await;
    let r = s.get("/api/v1/tokens", &narrow).await;
    r.expect(403, "method_not_in_scope");
    // The user lost rights: downgrade takes effect on the next request.
    let r = s
        .patch(
            &format!("/api/v1/users/{}", bob.id),
            &t.admin,
            json!({"role": "member"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    s.get("/api/v1/users", &bobs)
        .await
        .expect(403, "user_lacks_permission");
    // The user lost api_access, then was deactivated.
    s.patch(
        &format!("/api/v1/users/{}", bob.id),
        &t.admin,
        json!({"api_access": false}),
    )
    .await;
    s.get("/api/v1/users/me", &bobs)
        .await
        .expect(403, "api_access_denied");
    s.patch(
        &format!("/api/v1/users/{}", bob.id),
        &t.admin,
        json!({"api_access": true}),
    )
    .await;
    assert_eq!(s.get("/api/v1/users/me", &bobs).await.status, 200);
    let r = s
        .post(
            &format!("/api/v1/users/{}/deactivate", bob.id),
            &t.admin,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    s.get("/api/v1/users/me", &bobs)
        .await
        .expect(401, "user_deactivated");
    // IP filter.
    let (_, filtered) = s
        .mint(
            &t.admin,
            json!({"scope_set": "read-only", "ip_filter": ["10.0.0.0/8"]}),
        )
        .await;
    s.get("/api/v1/users/me", &filtered)
        .await
        .expect(401, "ip_not_allowed");
    let (_, local) = s
        .mint(
            &t.admin,
            json!({"scope_set": "read-only", "ip_filter": ["127.0.0.1", "::1/128"]}),
        )
        .await;
    assert_eq!(s.get("/api/v1/users/me", &local).await.status, 200);
    // Tenant disabled.
    let r = s
        .post(
            &format!("/api/v1/tenants/{}/disable", t.id),
            &s.operator_token(),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    s.get("/api/v1/users/me", &local)
        .await
        .expect(401, "tenant_disabled");
}

/// Signs arbitrary claims with the tenant's real key, to test claim checks.
async fn forge(s: &TestServer, tenant_id: &str, claims: Value, header_extra: Value) -> String {
    let tid: sigil_core::TenantId = tenant_id.parse().unwrap();
    let key = s.state().keys.signing_key(tid).await.unwrap();
    let mut header = json!({"alg": "EdDSA", "typ": "JWT", "kid": key.kid});
    for (k, v) in header_extra.as_object().unwrap() {
        header[k] = v.clone();
    }
    let signing_input = format!("{}.{}", b64(&header), b64(&claims));
    // Re-sign through jsonwebtoken to get a valid EdDSA signature over our header.
    let std_token = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            kid: Some(key.kid.clone()),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA)
        },
        &claims,
        key.encoding.as_ref().unwrap(),
    )
    .unwrap();
    if header_extra.as_object().unwrap().is_empty() {
        return std_token;
    }
    // With extra header fields the signature no longer matches; the header check must
    // refuse before the signature is even considered.
    let sig = std_token.rsplit('.').next().unwrap();
    format!("{signing_input}.{sig}")
}

#[tokio::test]
async fn jwt_attacks_are_refused() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let other = s.tenant_admin("other").await;
    let (_, secret) = s.mint(&t.admin, json!({"scope_set": "read-only"})).await;
    let (header, claims, signature) = parts(&secret);
    let me = |tok: String| {
        let s = &s;
        async move { s.get("/api/v1/users/me", &tok).await }
    };
    // alg none, in any case.
    for alg in ["none", "None", "NONE"] {
        let mut h = header.clone();
        h["alg"] = json!(alg);
        me(format!("{}.{}.", b64(&h), b64(&claims)))
            .await
            .expect(401, "token_malformed");
    }
    // HS256 signed with the tenant's public key.
    let jwks = s
        .call(Method::GET, "/api/v1/tenants/acme/jwks.json", None, None)
        .await;
    let x = jwks.body["keys"][0]["x"].as_str().unwrap();
    let public = URL_SAFE_NO_PAD.decode(x).unwrap();
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            kid: header["kid"].as_str().map(str::to_owned),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
        },
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&public),
    )
    .unwrap();
    me(hs).await.expect(401, "token_malformed");
    // RS256 header.
    let mut h = header.clone();
    h["alg"] = json!("RS256");
    me(format!("{}.{}.{}", b64(&h), b64(&claims), signature))
        .await
        .expect(401, "token_malformed");
    // jku / x5u / jwk headers.
    for (k, v) in [
        ("jku", json!("https://evil.example/jwks")),
        ("x5u", json!("https://evil.example/x")),
        ("jwk", json!({"kty": "OKP", "crv": "Ed25519", "x": x})),
    ] {
        let mut h = header.clone();
        h[k] = v;
        me(format!("{}.{}.{}", b64(&h), b64(&claims), signature))
            .await
            .expect(401, "token_malformed");
    }
    // Unknown kid, path-traversal and SQL-looking kids.
    for kid in ["nope", "../../etc/passwd", "' OR 1=1 --"] {
        let mut h = header.clone();
        h["kid"] = json!(kid);
        me(format!("{}.{}.{}", b64(&h), b64(&claims), signature))
            .await
            .expect(401, "token_invalid_signature");
    }
    // Another tenant's key with this tenant's id.
    let forged_claims = claims.clone();
    let other_signed = forge(&s, &other.id, forged_claims, json!({})).await;
    me(other_signed)
        .await
        .expect(401, "token_invalid_signature");
    // Stripped and empty signatures, tampered claims.
    me(format!("{}.{}", b64(&header), b64(&claims)))
        .await
        .expect(401, "token_malformed");
    me(format!("{}.{}.", b64(&header), b64(&claims)))
        .await
        .expect(401, "token_invalid_signature");
    let mut tampered = claims.clone();
    tampered["sub"] = json!(uuid::Uuid::new_v4().to_string());
    me(format!("{}.{}.{}", b64(&header), b64(&tampered), signature))
        .await
        .expect(401, "token_invalid_signature");
    // Not-yet-valid JWTs and altered expiries, signed with the real key. Online, the stored
    // expiry is the truth, and only the stored secret itself verifies: a JWT re-signed with
    // another `exp` is not the token's current secret.
    let now = Utc::now().timestamp();
    let mut expired = claims.clone();
    expired["exp"] = json!(now - 600);
    me(forge(&s, &t.id, expired, json!({})).await)
        .await
        .expect(401, "token_replaced");
    let mut early = claims.clone();
    early["nbf"] = json!(now + 600);
    me(forge(&s, &t.id, early, json!({})).await)
        .await
        .expect(401, "token_not_yet_valid");
    // A huge credential is refused before parsing.
    me("a".repeat(10_000)).await.expect(401, "token_malformed");
    // The genuine one still works.
    assert_eq!(me(secret).await.status, 200);
}

#[tokio::test]
async fn forward_auth_maps_routes_to_methods() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/plugins/platform.json"
    );
    let s = TestServer::start_with(|c| c.plugins = vec![path.into()]).await;
    let t = s.tenant_admin("acme").await;
    let (_, extended) = s
        .mint(&t.admin, json!({"scope_set": "platform.extended-access"}))
        .await;
    let (_, read_only) = s.mint(&t.admin, json!({"scope_set": "read-only"})).await;
    let authorize = |uri: String, headers: Vec<(&'static str, String)>| {
        let s = &s;
        async move {
            let mut req = s
                .client
                .get(s.url("/api/v1/authorize"))
                .header("X-Original-Method", "GET")
                .header("X-Original-URI", uri);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            Resp::from(req.send().await.unwrap()).await
        }
    };
    let r = authorize(
        format!("/1.0/environment/control/rest/stopenv?envName=x&session={extended}"),
        vec![],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-sigil-tenant"), Some("acme"));
    assert_eq!(r.header("x-sigil-user"), Some("admin"));
    assert_eq!(r.body["method"], "platform.environment.control.stopenv");
    let r = authorize(
        format!("/1.0/environment/control/rest/stopenv?envName=x&session={read_only}"),
        vec![],
    )
    .await;
    r.expect(403, "method_not_in_scope");
    let r = authorize(
        "/1.0/environment/control/rest/stopenv?envName=x".into(),
        vec![("Authorization", format!("Bearer {extended}"))],
    )
    .await;
    assert_eq!(r.status, 200);
    authorize(
        "/1.0/nowhere".into(),
        vec![("Auth-Token", extended.clone())],
    )
    .await
    .expect(403, "route_not_registered");
    authorize("/1.0/environment/control/rest/stopenv".into(), vec![])
        .await
        .expect(401, "credential_missing");
}

#[tokio::test]
async fn introspection_reports_activity_and_reasons() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let (tok, secret) = s
        .mint(
            &t.admin,
            json!({"methods": ["me.get", "tokens.list"], "ip_filter": ["192.0.2.0/24"]}),
        )
        .await;
    let r = s
        .post(
            "/api/v1/introspect",
            &t.admin,
            json!({"token": secret, "method": "tokens.list", "client_ip": "192.0.2.7"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["active"], true);
    assert_eq!(r.body["token_id"], tok["id"]);
    assert_eq!(r.body["tenant"], "acme");
    let mut scope: Vec<&str> = r.body["scope"].as_str().unwrap().split(' ').collect();
    scope.sort();
    assert_eq!(scope, ["me.get", "tokens.list"]);
    let r = s
        .post(
            "/api/v1/introspect",
            &t.admin,
            json!({"token": secret, "method": "tokens.create"}),
        )
        .await;
    // The token is valid but may not call the method: inactive for it, with whose token it
    // is, what it may call, and why the method is refused (naming it).
    assert_eq!(r.body["active"], false, "{}", r.body);
    assert_eq!(r.body["username"], "admin");
    assert!(r.body["scope"].as_str().unwrap().contains("tokens.list"));
    assert_eq!(r.body["method_allowed"], false);
    assert_eq!(r.body["code"], "method_not_in_scope");
    assert!(r.body["detail"].as_str().unwrap().contains("tokens.create"));
    assert_eq!(r.body["token_id"], tok["id"]);
    let r = s
        .post(
            "/api/v1/introspect",
            &t.admin,
            json!({"token": secret, "client_ip": "198.51.100.1"}),
        )
        .await;
    assert_eq!(r.body["code"], "ip_not_allowed");
    assert_eq!(r.body["client_ip_allowed"], false);
    let r = s
        .post("/api/v1/introspect", &t.admin, json!({"token": "garbage"}))
        .await;
    assert_eq!(r.body["active"], false);
    assert_eq!(r.body["code"], "token_malformed");
    // RFC 7662 form body.
    let r = s
        .client
        .post(s.url("/api/v1/introspect"))
        .bearer_auth(&t.admin)
        .form(&[("token", secret.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(Resp::from(r).await.body["active"], true);
    // Another tenant's introspection sees nothing.
    let other = s.tenant_admin("other").await;
    let r = s
        .post("/api/v1/introspect", &other.admin, json!({"token": secret}))
        .await;
    assert_eq!(r.body["active"], false);
    assert_eq!(r.body["code"], "token_unknown");
    // The caller needs sigil.introspect.
    let (_, no_introspect) = s.mint(&t.admin, json!({"methods": ["me.get"]})).await;
    s.post(
        "/api/v1/introspect",
        &no_introspect,
        json!({"token": secret}),
    )
    .await
    .expect(403, "method_not_in_scope");
}

#[tokio::test]
async fn cached_verifications_follow_every_change() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let (tok, secret) = s
        .mint(&t.admin, json!({"methods": ["me.get", "tokens.list"]}))
        .await;
    let path = format!("/api/v1/tokens/{}", tok["id"].as_str().unwrap());
    // Warm the cache, then change the scope: the next call sees it.
    assert_eq!(s.get("/api/v1/tokens", &secret).await.status, 200);
    s.patch(&path, &t.admin, json!({"methods": ["me.get"]}))
        .await;
    s.get("/api/v1/tokens", &secret)
        .await
        .expect(403, "method_not_in_scope");
    s.patch(
        &path,
        &t.admin,
        json!({"methods": ["me.get", "tokens.list"]}),
    )
    .await;
    assert_eq!(s.get("/api/v1/tokens", &secret).await.status, 200);
    // A refused garbage credential does not stick to a later valid state either.
    s.patch(&path, &t.admin, json!({"enabled": false})).await;
    s.get("/api/v1/users/me", &secret)
        .await
        .expect(401, "token_disabled");
    s.get("/api/v1/users/me", &secret)
        .await
        .expect(401, "token_disabled");
    s.patch(&path, &t.admin, json!({"enabled": true})).await;
    assert_eq!(s.get("/api/v1/users/me", &secret).await.status, 200);
    // Key rotation: existing tokens keep verifying.
    let r = s
        .post("/api/v1/tenant/signing-keys/rotate", &t.admin, json!({}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(s.get("/api/v1/users/me", &secret).await.status, 200);
}

#[tokio::test]
async fn revocation_reaches_another_replica_within_a_second() {
    if crate::harness::pg_base_url().is_none() {
        eprintln!("two-replica revocation needs PostgreSQL (SIGIL_TEST_DATABASE_URL); covered in the PostgreSQL run");
        return;
    }
    let a = TestServer::start().await;
    let master = a.state().config.master_key.clone();
    let url = a.database_url.clone();
    let b = TestServer::start_on(&url, &master).await;
    let t = a.tenant_admin("acme").await;
    let (tok, secret) = a.mint(&t.admin, json!({"scope_set": "read-only"})).await;
    assert_eq!(
        b.get("/api/v1/users/me", &secret).await.status,
        200,
        "replica B verifies and caches"
    );
    let started = Instant::now();
    assert_eq!(
        a.delete(
            &format!("/api/v1/tokens/{}", tok["id"].as_str().unwrap()),
            &t.admin
        )
        .await
        .status,
        204
    );
    loop {
        let r = b.get("/api/v1/users/me", &secret).await;
        if r.status == 401 {
            assert_eq!(r.code(), "token_unknown");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "replica B still accepts the revoked token after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "revocation reached the other replica after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn usage_counts_from_replicas_add_up_exactly() {
    if crate::harness::pg_base_url().is_none() {
        eprintln!("usage across replicas needs PostgreSQL; covered in the PostgreSQL run");
        return;
    }
    let a = TestServer::start().await;
    let b = TestServer::start_on(&a.database_url, &a.state().config.master_key).await;
    let t = a.tenant_admin("acme").await;
    let (tok, secret) = a.mint(&t.admin, json!({"scope_set": "read-only"})).await;
    let calls = (0..300).map(|i| {
        let (a, b, secret) = (&a, &b, secret.clone());
        async move {
            let s = if i % 2 == 0 { a } else { b };
            s.get("/api/v1/users/me", &secret).await.status.as_u16()
        }
    });
    assert!(futures::future::join_all(calls)
        .await
        .iter()
        .all(|s| *s == 200));
    a.flush_usage().await;
    b.flush_usage().await;
    let got = a
        .get(
            &format!("/api/v1/tokens/{}", tok["id"].as_str().unwrap()),
            &t.admin,
        )
        .await;
    assert_eq!(got.body["use_count"], 300, "{}", got.body);
}

#[tokio::test]
async fn auth_token_form_parameter_is_a_credential() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let (_, caller) = s
        .mint(&t.admin, json!({"methods": ["sigil.introspect"]}))
        .await;
    let (_, target) = s.mint(&t.admin, json!({"scope_set": "read-only"})).await;
    let r = s
        .client
        .post(s.url("/api/v1/introspect"))
        .form(&[("auth_token", caller.as_str()), ("token", target.as_str())])
        .send()
        .await
        .unwrap();
    let r = Resp::from(r).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["active"], true);
    // The same form with a caller token lacking sigil.introspect is refused.
    let (_, narrow) = s.mint(&t.admin, json!({"methods": ["me.get"]})).await;
    let r = s
        .client
        .post(s.url("/api/v1/introspect"))
        .form(&[("auth_token", narrow.as_str()), ("token", target.as_str())])
        .send()
        .await
        .unwrap();
    Resp::from(r).await.expect(403, "method_not_in_scope");
}

#[tokio::test]
async fn hygiene_lists_expiring_and_unused_tokens() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let soon = (Utc::now() + chrono::Duration::days(3)).to_rfc3339();
    let (expiring, _) = s
        .mint(
            &t.admin,
            json!({"name": "soon", "scope_set": "read-only", "expires_at": soon}),
        )
        .await;
    let (later, secret) = s
        .mint(&t.admin, json!({"name": "later", "scope_set": "read-only"}))
        .await;
    assert_eq!(s.get("/api/v1/users/me", &secret).await.status, 200);
    s.flush_usage().await;
    let r = s
        .get("/api/v1/tokens/hygiene?expiring_within_days=7", &t.admin)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let ids = |v: &Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&r.body["expiring"]), vec![expiring["id"].clone()]);
    // Nothing is 90 days old yet.
    assert!(r.body["unused"].as_array().unwrap().is_empty());
    let _ = later;
}

/// First uses that arrive together are read from storage together; each must still get
/// exactly its own token, owner and tenant, and a deleted or disabled token among them
/// its own refusal.
#[tokio::test]
async fn concurrent_first_uses_each_get_their_own_identity() {
    let s = TestServer::start().await;
    let acme = s.tenant_admin("acme").await;
    let globex = s.tenant_admin("globex").await;
    let dev = s.user(&acme, "dev", "member", "person").await;
    let mut expected = Vec::new();
    for i in 0..12 {
        let (t, who, tenant) = match i % 3 {
            0 => (&acme.admin, "admin", "acme"),
            1 => (&dev.token, "dev", "acme"),
            _ => (&globex.admin, "admin", "globex"),
        };
        let (tok, secret) = s.mint(t, json!({"scope_set": "read-only"})).await;
        expected.push((
            secret,
            Ok((tok["id"].as_str().unwrap().to_owned(), who, tenant)),
        ));
    }
    let (deleted, secret) = s.mint(&acme.admin, json!({"scope_set": "read-only"})).await;
    let id = deleted["id"].as_str().unwrap();
    s.delete(&format!("/api/v1/tokens/{id}"), &acme.admin).await;
    expected.push((secret, Err("token_unknown")));
    let (disabled, secret) = s
        .mint(&globex.admin, json!({"scope_set": "read-only"}))
        .await;
    let id = disabled["id"].as_str().unwrap();
    let r = s
        .patch(
            &format!("/api/v1/tokens/{id}"),
            &globex.admin,
            json!({"enabled": false}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    expected.push((secret, Err("token_disabled")));

    // The first round reads every token from storage at once; the second answers from
    // the cache, identically.
    for _round in 0..2 {
        let calls = expected.iter().map(|(secret, _)| {
            let s = &s;
            async move {
                let req = s
                    .client
                    .get(s.url("/api/v1/authorize"))
                    .header("X-Original-Method", "GET")
                    .header("X-Original-URI", "/api/v1/users/me")
                    .bearer_auth(secret);
                Resp::from(req.send().await.unwrap()).await
            }
        });
        let answers = futures::future::join_all(calls).await;
        for ((_, want), r) in expected.iter().zip(&answers) {
            match want {
                Ok((token_id, user, tenant)) => {
                    assert_eq!(r.status, 200, "{}", r.body);
                    assert_eq!(r.header("x-sigil-token-id"), Some(token_id.as_str()));
                    assert_eq!(r.header("x-sigil-user"), Some(*user));
                    assert_eq!(r.header("x-sigil-tenant"), Some(*tenant));
                }
                Err(code) => {
                    r.expect(401, code);
                }
            }
        }
    }
}
