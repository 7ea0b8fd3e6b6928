//! Usage limits through the API: credits with refill and named sliding-window rate limits
//! per token, per owner and as tenant defaults; 429 answers with Retry-After and the IETF
//! RateLimit headers; introspection and forward auth report and enforce the same state.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{Resp, Tenant, TestServer};

async fn me(s: &TestServer, secret: &str) -> Resp {
    s.get("/api/v1/users/me", secret).await
}

async fn set_policy(s: &TestServer, t: &Tenant, changes: Value) {
    let r = s.get("/api/v1/tenant", &t.admin).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let mut policy = r.body["policy"].clone();
    for (k, v) in changes.as_object().expect("object") {
        policy[k] = v.clone();
    }
    let r = s
        .call(
            Method::PUT,
            "/api/v1/tenant/policy",
            Some(&t.admin),
            Some(policy),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "updateTenantPolicy: {}", r.body);
}

/// Moves a token's last refill a day back, as if it had been idle for a day (the only
/// way to reach a refill time in a test), and lets the caches see it.
async fn backdate_refill(s: &TestServer, t: &Tenant, id: &str) {
    use sea_orm::sea_query::{Alias, Expr, Query};
    use sea_orm::ConnectionTrait;
    let db = &s.state().db;
    let day_ago = chrono::Utc::now() - chrono::Duration::days(1) - chrono::Duration::minutes(1);
    let id = uuid::Uuid::parse_str(id).expect("token id");
    let update = Query::update()
        .table(Alias::new("tokens"))
        .value(Alias::new("credits_refilled_at"), day_ago)
        .and_where(Expr::col(Alias::new("id")).eq(id))
        .to_owned();
    db.execute(db.get_database_backend().build(&update))
        .await
        .expect("backdated");
    let tenant = sigil_core::TenantId(uuid::Uuid::parse_str(&t.id).expect("tenant id"));
    s.state()
        .changes
        .publish(sigil_core::Change::Token {
            tenant,
            token: sigil_core::TokenId(id),
        })
        .await;
}

/// Seconds from a `Retry-After` header.
fn retry_after(r: &Resp) -> u64 {
    r.header("retry-after")
        .unwrap_or_else(|| panic!("Retry-After missing: {:?}", r.headers))
        .parse()
        .expect("Retry-After in seconds")
}

#[tokio::test]
async fn credits_are_spent_per_call_and_refused_at_zero() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let (token, secret) = s
        .mint(
            &t.admin,
            json!({"methods": ["me.get"], "credits": {"remaining": 3}}),
        )
        .await;
    assert_eq!(token["credits"]["remaining"], 3, "{token}");
    assert!(token["credits"]["refill"].is_null(), "{token}");
    for left in [2, 1, 0] {
        let r = me(&s, &secret).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let got = s
            .get(
                &format!("/api/v1/tokens/{}", token["id"].as_str().unwrap()),
                &t.admin,
            )
            .await;
        assert_eq!(got.body["credits"]["remaining"], left, "{}", got.body);
    }
    let r = me(&s, &secret).await;
    r.expect(429, "usage_exceeded");
    assert!(
        r.header("retry-after").is_none(),
        "no refill, so no time to retry: {:?}",
        r.headers
    );
    assert!(r.body["next_refill_at"].is_null(), "{}", r.body);

    // Whoever manages the token tops it up; the new value replaces the spent one.
    let id = token["id"].as_str().unwrap();
    let r = s
        .patch(
            &format!("/api/v1/tokens/{id}"),
            &t.admin,
            json!({"credits": {"remaining": 2}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["credits"]["remaining"], 2, "{}", r.body);
    assert_eq!(me(&s, &secret).await.status, StatusCode::OK);
    assert_eq!(me(&s, &secret).await.status, StatusCode::OK);
    me(&s, &secret).await.expect(429, "usage_exceeded");

    // Removing the credits makes the token unlimited again.
    let r = s
        .patch(
            &format!("/api/v1/tokens/{id}"),
            &t.admin,
            json!({"credits": null}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body["credits"].is_null(), "{}", r.body);
    assert_eq!(me(&s, &secret).await.status, StatusCode::OK);
}

#[tokio::test]
async fn spent_credits_survive_a_restart() {
    let mut s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let (token, secret) = s
        .mint(
            &t.admin,
            json!({"methods": ["me.get"], "credits": {"remaining": 5}}),
        )
        .await;
    for _ in 0..2 {
        assert_eq!(me(&s, &secret).await.status, StatusCode::OK);
    }
    s.flush_usage().await;
    let database_url = s.database_url.clone();
    let master = s.state().config.master_key.clone();
    s.stop().await;
    let s2 = TestServer::start_on(&database_url, &master).await;
    let admin = s2.login("acme", "admin", &t.admin_password).await;
    let got = s2
        .get(
            &format!("/api/v1/tokens/{}", token["id"].as_str().unwrap()),
            &admin,
        )
        .await;
    assert_eq!(got.body["credits"]["remaining"], 3, "{}", got.body);
    for _ in 0..3 {
        assert_eq!(me(&s2, &secret).await.status, StatusCode::OK);
    }
    me(&s2, &secret).await.expect(429, "usage_exceeded");
}

#[tokio::test]
async fn a_refill_names_its_time_and_refills_once_per_period() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let (token, secret) = s
        .mint(
            &t.admin,
            json!({
                "methods": ["me.get"],
                "credits": {"remaining": 1, "refill": {"interval": "monthly", "amount": 10, "day": 1}}
            }),
        )
        .await;
    let next: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(token["credits"]["next_refill_at"].clone())
            .unwrap_or_else(|e| panic!("next_refill_at: {e}: {token}"));
    let now = chrono::Utc::now();
    assert!(
        next > now && next - now <= chrono::Duration::days(31),
        "{next}"
    );
    assert_eq!(next.format("%d %H:%M:%S").to_string(), "01 00:00:00");
    assert_eq!(me(&s, &secret).await.status, StatusCode::OK);
    let r = me(&s, &secret).await;
    r.expect(429, "usage_exceeded");
    let wait = retry_after(&r);
    let until = (next - chrono::Utc::now()).num_seconds() as u64;
    assert!(wait.abs_diff(until) <= 2, "Retry-After {wait} vs {until}");
    assert_eq!(r.body["next_refill_at"], token["credits"]["next_refill_at"]);

    // A daily refill that fell due while the token was unused refills it on its next use
    // (the balance is read from storage on that use).
    let (daily, daily_secret) = s
        .mint(
            &t.admin,
            json!({
                "methods": ["me.get"],
                "credits": {"remaining": 0, "refill": {"interval": "daily", "amount": 2}}
            }),
        )
        .await;
    assert_eq!(daily["credits"]["remaining"], 0, "{daily}");
    backdate_refill(&s, &t, daily["id"].as_str().unwrap()).await;
    let got = s
        .get(
            &format!("/api/v1/tokens/{}", daily["id"].as_str().unwrap()),
            &t.admin,
        )
        .await;
    assert_eq!(
        got.body["credits"]["remaining"], 2,
        "due refill shown: {}",
        got.body
    );
    assert_eq!(me(&s, &daily_secret).await.status, StatusCode::OK);
    assert_eq!(me(&s, &daily_secret).await.status, StatusCode::OK);
    me(&s, &daily_secret).await.expect(429, "usage_exceeded");
}

#[tokio::test]
async fn a_token_rate_limit_answers_429_with_the_ratelimit_headers() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let (token, secret) = s
        .mint(
            &t.admin,
            json!({
                "methods": ["me.get"],
                "rate_limits": [{"name": "burst", "window_secs": 60, "limit": 2}]
            }),
        )
        .await;
    assert_eq!(
        token["rate_limits"],
        json!([{"name": "burst", "window_secs": 60, "limit": 2}])
    );
    let r = me(&s, &secret).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.header("ratelimit-policy"), Some("\"burst\";q=2;w=60"));
    let state = r.header("ratelimit").expect("RateLimit on an allowed call");
    assert!(state.starts_with("\"burst\";r=1;t="), "{state}");
    assert_eq!(me(&s, &secret).await.status, StatusCode::OK);
    let r = me(&s, &secret).await;
    r.expect(429, "rate_limited");
    let wait = retry_after(&r);
    // A sliding window weighs the previous bucket's requests: waiting may take up to two
    // windows.
    assert!((1..=120).contains(&wait), "Retry-After {wait}");
    assert_eq!(r.header("ratelimit-policy"), Some("\"burst\";q=2;w=60"));
    let state = r.header("ratelimit").expect("RateLimit on a refusal");
    assert!(state.starts_with("\"burst\";r=0;t="), "{state}");
    assert!(
        r.body["detail"].as_str().unwrap().contains("burst"),
        "{}",
        r.body
    );

    // Another token of the same owner is not affected by this token's limit.
    let (_, other) = s.mint(&t.admin, json!({"methods": ["me.get"]})).await;
    assert_eq!(me(&s, &other).await.status, StatusCode::OK);
}

#[tokio::test]
async fn owner_limits_are_shared_by_all_of_the_owners_tokens() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let bob = s.user(&t, "bob", "member", "person").await;
    let r = s
        .patch(
            &format!("/api/v1/users/{}", bob.id),
            &t.admin,
            json!({"rate_limits": [{"name": "owner", "window_secs": 3600, "limit": 3}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "updateUser: {}", r.body);
    assert_eq!(r.body["rate_limits"][0]["limit"], 3, "{}", r.body);
    let (_, one) = s.mint(&bob.token, json!({"methods": ["me.get"]})).await;
    let (_, two) = s.mint(&bob.token, json!({"methods": ["me.get"]})).await;
    assert_eq!(me(&s, &one).await.status, StatusCode::OK);
    assert_eq!(me(&s, &two).await.status, StatusCode::OK);
    assert_eq!(me(&s, &one).await.status, StatusCode::OK);
    let r = me(&s, &two).await;
    r.expect(429, "rate_limited");
    assert!(
        r.body["detail"].as_str().unwrap().contains("owner"),
        "{}",
        r.body
    );

    // The owner cannot lift a limit set on them: updateUser is for admins.
    s.patch(
        &format!("/api/v1/users/{}", bob.id),
        &bob.token,
        json!({"rate_limits": []}),
    )
    .await
    .expect(403, "user_lacks_permission");
}

#[tokio::test]
async fn tenant_defaults_apply_to_tokens_and_owners_without_their_own() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    set_policy(
        &s,
        &t,
        json!({"default_token_rate_limits": [{"name": "default", "window_secs": 60, "limit": 1}]}),
    )
    .await;
    let (_, plain) = s.mint(&t.admin, json!({"methods": ["me.get"]})).await;
    assert_eq!(me(&s, &plain).await.status, StatusCode::OK);
    me(&s, &plain).await.expect(429, "rate_limited");
    let (_, own) = s
        .mint(
            &t.admin,
            json!({
                "methods": ["me.get"],
                "rate_limits": [{"name": "mine", "window_secs": 60, "limit": 3}]
            }),
        )
        .await;
    for _ in 0..3 {
        assert_eq!(me(&s, &own).await.status, StatusCode::OK);
    }
    me(&s, &own).await.expect(429, "rate_limited");

    set_policy(
        &s,
        &t,
        json!({
            "default_token_rate_limits": [],
            "default_owner_rate_limits": [{"name": "people", "window_secs": 60, "limit": 2}]
        }),
    )
    .await;
    let carol = s.user(&t, "carol", "member", "person").await;
    let (_, a) = s.mint(&carol.token, json!({"methods": ["me.get"]})).await;
    let (_, b) = s.mint(&carol.token, json!({"methods": ["me.get"]})).await;
    assert_eq!(me(&s, &a).await.status, StatusCode::OK);
    assert_eq!(me(&s, &b).await.status, StatusCode::OK);
    me(&s, &a).await.expect(429, "rate_limited");
}

#[tokio::test]
async fn introspection_reports_the_limit_state_and_forward_auth_enforces_it() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let (_, introspector) = s
        .mint(&t.admin, json!({"methods": ["sigil.introspect"]}))
        .await;
    let (_, secret) = s
        .mint(
            &t.admin,
            json!({
                "methods": ["me.get"],
                "rate_limits": [{"name": "burst", "window_secs": 60, "limit": 2}],
                "credits": {"remaining": 10}
            }),
        )
        .await;
    let r = s
        .post(
            "/api/v1/introspect",
            &introspector,
            json!({"token": secret}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["active"], true, "{}", r.body);
    let limits = &r.body["limits"];
    assert_eq!(
        limits["credits"]["remaining"], 9,
        "introspection spends: {}",
        r.body
    );
    assert_eq!(limits["rate_limits"][0]["name"], "burst", "{}", r.body);
    assert_eq!(
        limits["rate_limits"][0]["applies_to"], "token",
        "{}",
        r.body
    );
    assert_eq!(limits["rate_limits"][0]["remaining"], 1, "{}", r.body);

    let authorize = |proxy: Option<&'static str>| {
        let mut req = s
            .client
            .get(s.url("/api/v1/authorize"))
            .bearer_auth(&secret)
            .header("X-Original-Method", "GET")
            .header("X-Original-URI", "/api/v1/users/me");
        if let Some(p) = proxy {
            req = req.header("X-Sigil-Auth-Proxy", p);
        }
        async move { Resp::from(req.send().await.expect("sent")).await }
    };
    let r = authorize(None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.header("ratelimit-policy"), Some("\"burst\";q=2;w=60"));
    // Traefik and Envoy pass the answer through: a 429 with its headers.
    let r = authorize(None).await;
    r.expect(429, "rate_limited");
    assert!(retry_after(&r) >= 1);
    assert_eq!(r.header("x-sigil-refusal"), Some("rate_limited"));
    // nginx accepts only 2xx/401/403 from auth_request: a 403 naming the refusal, which
    // deploy/nginx turns into the 429 (tests/it/nginx.rs).
    let r = authorize(Some("nginx")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(r.header("x-sigil-refusal"), Some("rate_limited"));
    assert!(retry_after(&r) >= 1);
    assert!(r.header("ratelimit").is_some(), "{:?}", r.headers);
}

#[tokio::test]
async fn limits_are_checked_values_and_changed_only_by_who_manages_the_token() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let r = s
        .post(
            "/api/v1/tokens",
            &t.admin,
            json!({
                "name": "bad",
                "expires_at": (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339(),
                "methods": ["me.get"],
                "rate_limits": [
                    {"name": "a", "window_secs": 0, "limit": 1},
                    {"name": "Not Valid", "window_secs": 60, "limit": 0}
                ],
                "credits": {"remaining": 1, "refill": {"interval": "weekly", "amount": 1}}
            }),
        )
        .await;
    r.expect(422, "validation_failed");
    let fields = r.error_fields();
    for f in [
        "rate_limits[0].window_secs",
        "rate_limits[1].name",
        "rate_limits[1].limit",
        "credits.refill.interval",
    ] {
        assert!(fields.iter().any(|x| x == f), "{f} not in {fields:?}");
    }
    let r = s
        .post(
            "/api/v1/tokens",
            &t.admin,
            json!({
                "name": "dup",
                "expires_at": (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339(),
                "methods": ["me.get"],
                "rate_limits": [
                    {"name": "a", "window_secs": 60, "limit": 1},
                    {"name": "a", "window_secs": 10, "limit": 1}
                ],
                "credits": {"remaining": 1, "refill": {"interval": "daily", "amount": 1, "day": 3}}
            }),
        )
        .await;
    r.expect(422, "invalid_limits");
    let fields = r.error_fields();
    assert!(
        fields.iter().any(|x| x == "rate_limits[1].name"),
        "{fields:?}"
    );
    assert!(
        fields.iter().any(|x| x == "credits.refill.day"),
        "{fields:?}"
    );

    // A member cannot change the limits of another user's token.
    let bob = s.user(&t, "bob", "member", "person").await;
    let (admins, _) = s
        .mint(
            &t.admin,
            json!({"methods": ["me.get"], "credits": {"remaining": 1}}),
        )
        .await;
    let r = s
        .patch(
            &format!("/api/v1/tokens/{}", admins["id"].as_str().unwrap()),
            &bob.token,
            json!({"credits": {"remaining": 1000000}}),
        )
        .await;
    assert!(
        r.status == StatusCode::FORBIDDEN || r.status == StatusCode::NOT_FOUND,
        "{} {}",
        r.status,
        r.body
    );
    let got = s
        .get(
            &format!("/api/v1/tokens/{}", admins["id"].as_str().unwrap()),
            &t.admin,
        )
        .await;
    assert_eq!(got.body["credits"]["remaining"], 1, "{}", got.body);
}

#[tokio::test]
async fn a_method_spends_the_credits_its_plugin_declares() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let manifest = json!({
        "id": "reports",
        "name": "Reports",
        "version": "1.0.0",
        "methods": [
            {"id": "reports.render", "http": {"method": "POST", "path": "/reports"}, "access": "change", "cost": 5},
            {"id": "reports.list", "http": {"method": "GET", "path": "/reports"}, "access": "read"}
        ]
    });
    let r = s
        .post("/api/v1/plugins", &t.admin, json!({"manifest": manifest}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "registerPlugin: {}", r.body);
    let methods = s.get("/api/v1/methods?plugin=reports", &t.admin).await;
    let cost = |id: &str| {
        methods.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .map(|m| m["cost"].clone())
    };
    assert_eq!(cost("reports.render"), Some(json!(5)), "{}", methods.body);
    assert_eq!(cost("reports.list"), Some(json!(1)), "{}", methods.body);

    let (_, introspector) = s
        .mint(&t.admin, json!({"methods": ["sigil.introspect"]}))
        .await;
    let (_, secret) = s
        .mint(
            &t.admin,
            json!({"methods": ["reports.*"], "credits": {"remaining": 12}}),
        )
        .await;
    let introspect = |method: &'static str| {
        let body = json!({"token": secret, "method": method});
        let s = &s;
        let introspector = &introspector;
        async move { s.post("/api/v1/introspect", introspector, body).await }
    };
    for left in [7, 2] {
        let r = introspect("reports.render").await;
        assert_eq!(r.body["active"], true, "{}", r.body);
        assert_eq!(r.body["limits"]["credits"]["remaining"], left, "{}", r.body);
    }
    // 2 left: a render (5) is refused, a list (1) still passes.
    let r = introspect("reports.render").await;
    assert_eq!(r.body["active"], false, "{}", r.body);
    assert_eq!(r.body["code"], "usage_exceeded", "{}", r.body);
    let r = introspect("reports.list").await;
    assert_eq!(r.body["active"], true, "{}", r.body);
    assert_eq!(r.body["limits"]["credits"]["remaining"], 1, "{}", r.body);
}
