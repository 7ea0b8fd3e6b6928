use reqwest::Method;
use serde_json::json;

use crate::harness::TestServer;

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
