//! The password-attempt throttle under bursts: login, changePassword and confirmPassword
//! share one per-user count that is reserved before the password is hashed, and a
//! disabled tenant answers the same whatever the password.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::{Resp, Tenant, TestServer};

async fn login_resp(s: &TestServer, tenant: &str, username: &str, password: &str) -> Resp {
    s.call(
        Method::POST,
        "/api/v1/auth/login",
        None,
        Some(json!({"tenant": tenant, "username": username, "password": password})),
    )
    .await
}

/// Sets the tenant's login limit and lockout window.
async fn set_login_policy(s: &TestServer, t: &Tenant, max_failures: u32, lockout_secs: u32) {
    let mut policy = s.get("/api/v1/tenant", &t.admin).await.body["policy"].clone();
    policy["login_max_failures"] = json!(max_failures);
    policy["login_lockout_secs"] = json!(lockout_secs);
    let r = s
        .call(
            Method::PUT,
            "/api/v1/tenant/policy",
            Some(&t.admin),
            Some(policy),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let now = s.get("/api/v1/tenant", &t.admin).await.body["policy"].clone();
    assert_eq!(now["login_max_failures"], max_failures, "{now}");
    assert_eq!(now["login_lockout_secs"], lockout_secs, "{now}");
}

/// Sends `n` copies of one request at once, each on its own task, and returns the answers.
async fn burst(
    s: &TestServer,
    n: usize,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> Vec<Resp> {
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let mut req = s.client.post(s.url(path)).json(&body);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                Resp::from(req.send().await.expect("request sent")).await
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(n);
    for task in tasks {
        answers.push(task.await.expect("task"));
    }
    answers
}

/// Counts the answers with `status` and `code`; every other answer must be a 429
/// `login_throttled` with a Retry-After within the lockout window.
fn count_past_throttle(answers: &[Resp], status: u16, code: &str, lockout_secs: u64) -> usize {
    let mut passed = 0;
    for r in answers {
        if r.status.as_u16() == status && r.code() == code {
            passed += 1;
            continue;
        }
        r.expect(429, "login_throttled");
        let retry: u64 = r
            .header("retry-after")
            .expect("Retry-After")
            .parse()
            .expect("seconds");
        assert!((1..=lockout_secs).contains(&retry), "{retry}");
    }
    passed
}

fn retry_after(r: &Resp) -> u64 {
    r.header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_wrong_logins_gets_only_the_limit_of_password_checks() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    set_login_policy(&s, &t, 4, 3600).await;
    let bob = s.user(&t, "bob", "member", "person").await;

    let body = json!({"tenant": "acme", "username": "bob", "password": "wrong-password-123"});
    let answers = burst(&s, 200, "/api/v1/auth/login", None, body).await;
    // Only the attempts that reached the password hash can answer invalid_credentials.
    let checked = count_past_throttle(&answers, 401, "invalid_credentials", 3600);
    assert_eq!(checked, 4, "attempts that reached the password hash");

    // Bob is locked out now, even with his right password.
    let r = login_resp(&s, "acme", "bob", &bob.password).await;
    r.expect(429, "login_throttled");
    assert!((1..=3600).contains(&retry_after(&r)));
    // The refused attempts did not count against the address: another user of it
    // (4 failures of 16 allowed) still signs in.
    s.login("acme", "admin", &t.admin_password).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn change_password_guesses_are_throttled_with_logins() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let lockout = 6;
    set_login_policy(&s, &t, 3, lockout).await;
    let bob = s.user(&t, "bob", "member", "person").await;
    let new_password = "a-brand-new-horse-battery";

    // A stolen session guesses the current password, many at once.
    let body = json!({"current_password": "wrong-password-123", "new_password": new_password});
    let answers = burst(&s, 40, "/api/v1/users/me/password", Some(&bob.token), body).await;
    let checked = count_past_throttle(&answers, 403, "invalid_password", u64::from(lockout));
    assert_eq!(checked, 3, "guesses that reached the password hash");

    // One more guess, one at a time: throttled.
    let wrong = json!({"current_password": "wrong-password-456", "new_password": new_password});
    s.post("/api/v1/users/me/password", &bob.token, wrong)
        .await
        .expect(429, "login_throttled");
    // Until the window passes even the right password is refused, on every path that
    // checks it (they share bob's count).
    let right = json!({"current_password": bob.password, "new_password": new_password});
    let r = s
        .post("/api/v1/users/me/password", &bob.token, right.clone())
        .await;
    r.expect(429, "login_throttled");
    let wait = retry_after(&r);
    assert!((1..=u64::from(lockout)).contains(&wait), "{wait}");
    s.post(
        "/api/v1/auth/confirm-password",
        &bob.token,
        json!({"password": bob.password}),
    )
    .await
    .expect(429, "login_throttled");
    login_resp(&s, "acme", "bob", &bob.password)
        .await
        .expect(429, "login_throttled");
    // The password did not change, and other users are not locked out.
    login_resp(&s, "acme", "bob", new_password)
        .await
        .expect(429, "login_throttled");
    s.post(
        "/api/v1/auth/confirm-password",
        &t.admin,
        json!({"password": t.admin_password}),
    )
    .await
    .expect(200, "");

    // After the window the right current password works, and a success clears the count.
    tokio::time::sleep(Duration::from_secs(wait) + Duration::from_millis(300)).await;
    s.post("/api/v1/users/me/password", &bob.token, right.clone())
        .await
        .expect(204, "");
    login_resp(&s, "acme", "bob", &bob.password)
        .await
        .expect(401, "invalid_credentials");
    s.login("acme", "bob", new_password).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_wrong_password_confirmations_gets_only_the_limit() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    set_login_policy(&s, &t, 2, 3600).await;
    let bob = s.user(&t, "bob", "member", "person").await;
    let answers = burst(
        &s,
        50,
        "/api/v1/auth/confirm-password",
        Some(&bob.token),
        json!({"password": "wrong-password-123"}),
    )
    .await;
    let checked = count_past_throttle(&answers, 403, "invalid_password", 3600);
    assert_eq!(checked, 2, "confirmations that reached the password hash");
    s.post(
        "/api/v1/auth/confirm-password",
        &bob.token,
        json!({"password": bob.password}),
    )
    .await
    .expect(429, "login_throttled");
}

#[tokio::test]
async fn a_disabled_tenant_answers_the_same_for_a_right_and_a_wrong_password() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let bob = s.user(&t, "bob", "member", "person").await;
    let max = s.get("/api/v1/tenant", &t.admin).await.body["policy"]["login_max_failures"]
        .as_u64()
        .expect("login_max_failures");
    assert_eq!(max, 5, "the default policy");
    let r = s
        .post(
            &format!("/api/v1/tenants/{}/disable", t.id),
            &s.operator_token(),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Right and wrong passwords, alternately, up to the limit: one and the same answer.
    let mut answers = Vec::new();
    for i in 0..max {
        let password = if i % 2 == 0 {
            bob.password.as_str()
        } else {
            "wrong-password-123"
        };
        let r = login_resp(&s, "acme", "bob", password).await;
        r.expect(401, "tenant_disabled");
        answers.push(r);
    }
    let right = &answers[0];
    let wrong = &answers[1];
    assert_eq!(right.body, wrong.body);
    assert_eq!(right.header("retry-after"), wrong.header("retry-after"));
    // The right passwords were not recorded as successes: both are throttled alike now.
    let right = login_resp(&s, "acme", "bob", &bob.password).await;
    let wrong = login_resp(&s, "acme", "bob", "wrong-password-123").await;
    right.expect(429, "login_throttled");
    wrong.expect(429, "login_throttled");
    assert_eq!(right.body, wrong.body);
    // An unknown user of the disabled tenant gets the same answer too.
    login_resp(&s, "acme", "nobody", "wrong-password-123")
        .await
        .expect(401, "tenant_disabled");
}
