//! Issue 21: two-factor sign-in with TOTP. Codes are computed here from the enrolment's
//! secret, as an authenticator app would. A code is accepted once per time step, so each
//! user here signs in with at most the enrolment code's step and the next one; further
//! sign-ins use recovery codes.

use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde_json::{json, Value};
use totp_rs::{Algorithm, Secret, TOTP};

use crate::harness::{Resp, Tenant, TestServer, User};

/// The code of the time step `offset` steps from now.
pub fn code_at(secret: &str, offset: i64) -> String {
    let bytes = Secret::Encoded(secret.to_owned())
        .to_bytes()
        .expect("base32 secret");
    let totp = TOTP::new(Algorithm::SHA1, 6, 1, 30, bytes, None, "test".to_owned()).expect("totp");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    totp.generate((now + offset * 30) as u64)
}

/// A six-digit code that is none of the currently valid ones.
fn wrong_code(secret: &str) -> String {
    let valid: Vec<String> = (-2..=2).map(|o| code_at(secret, o)).collect();
    (0..10u32)
        .map(|i| format!("{:06}", 100_000 + i * 7_919))
        .find(|c| !valid.contains(c))
        .expect("a wrong code")
}

struct Enrolled {
    secret: String,
    /// The code the enrolment was confirmed with (its time step is used).
    used: String,
    recovery: Vec<String>,
}

/// Enrols TOTP for the session's user; checks what the enrolment answers.
async fn enrol(s: &TestServer, session: &str, password: &str) -> Enrolled {
    let r = s
        .post("/api/v1/users/me/two-factor/totp", session, json!({}))
        .await;
    assert_eq!(r.status, 200, "beginTotpEnrolment: {}", r.body);
    let secret = r.body["secret"].as_str().expect("secret").to_owned();
    let uri = r.body["otpauth_uri"].as_str().expect("uri");
    assert!(uri.starts_with("otpauth://totp/Sigil:"), "{uri}");
    assert!(uri.contains(&format!("secret={secret}")), "{uri}");
    assert!(r.body["qr_code_svg"]
        .as_str()
        .expect("svg")
        .contains("<svg"));
    assert_eq!(r.body["digits"], 6);
    assert_eq!(r.body["period_secs"], 30);
    let used = code_at(&secret, 0);
    let r = s
        .post(
            "/api/v1/users/me/two-factor/totp/confirm",
            session,
            json!({"code": used, "password": password}),
        )
        .await;
    assert_eq!(r.status, 200, "confirmTotpEnrolment: {}", r.body);
    let recovery: Vec<String> = r.body["recovery_codes"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|c| c.as_str().expect("code").to_owned())
        .collect();
    assert_eq!(recovery.len(), 10);
    Enrolled {
        secret,
        used,
        recovery,
    }
}

async fn login(s: &TestServer, tenant: &str, username: &str, password: &str) -> Resp {
    s.call(
        Method::POST,
        "/api/v1/auth/login",
        None,
        Some(json!({"tenant": tenant, "username": username, "password": password})),
    )
    .await
}

/// Signs in up to the challenge.
async fn challenge(s: &TestServer, tenant: &str, username: &str, password: &str) -> String {
    let r = login(s, tenant, username, password).await;
    assert_eq!(r.status, 202, "login with a second factor: {}", r.body);
    assert!(r.body.get("token").is_none(), "{}", r.body);
    assert_eq!(r.body["second_factor"], "totp");
    assert!(r.body["challenge_expires_at"].is_string());
    r.body["challenge"].as_str().expect("challenge").to_owned()
}

async fn complete(s: &TestServer, body: Value) -> Resp {
    s.call(
        Method::POST,
        "/api/v1/auth/login/complete",
        None,
        Some(body),
    )
    .await
}

async fn set_policy(s: &TestServer, t: &Tenant, changes: Value) -> Resp {
    let mut policy = s.get("/api/v1/tenant", &t.admin).await.body["policy"].clone();
    for (k, v) in changes.as_object().expect("object") {
        policy[k] = v.clone();
    }
    s.call(
        Method::PUT,
        "/api/v1/tenant/policy",
        Some(&t.admin),
        Some(policy),
    )
    .await
}

async fn audit_actions(s: &TestServer, t: &Tenant, action: &str) -> Vec<Value> {
    let r = s
        .get(&format!("/api/v1/audit-events?action={action}"), &t.admin)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["items"].as_array().expect("items").clone()
}

async fn person(s: &TestServer, t: &Tenant, name: &str) -> User {
    s.user(t, name, "member", "person").await
}

#[tokio::test]
async fn enrolment_then_login_with_a_challenge_and_a_code() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("tf-enrol").await;
    let bob = person(&s, &t, "bob").await;

    // Confirming needs a pending enrolment, a right code and the password.
    s.post(
        "/api/v1/users/me/two-factor/totp/confirm",
        &bob.token,
        json!({"code": "123456", "password": bob.password}),
    )
    .await
    .expect(409, "no_pending_enrolment");
    let r = s
        .post("/api/v1/users/me/two-factor/totp", &bob.token, json!({}))
        .await;
    let secret = r.body["secret"].as_str().expect("secret").to_owned();
    s.post(
        "/api/v1/users/me/two-factor/totp/confirm",
        &bob.token,
        json!({"code": wrong_code(&secret), "password": bob.password}),
    )
    .await
    .expect(403, "invalid_code");
    s.post(
        "/api/v1/users/me/two-factor/totp/confirm",
        &bob.token,
        json!({"code": code_at(&secret, 0), "password": "not-the-password"}),
    )
    .await
    .expect(403, "invalid_password");
    // Until confirmed, sign-in is unchanged.
    assert_eq!(login(&s, &t.slug, "bob", &bob.password).await.status, 200);

    let e = enrol(&s, &bob.token, &bob.password).await;
    assert_ne!(e.secret, secret, "beginning again replaces the secret");
    s.post("/api/v1/users/me/two-factor/totp", &bob.token, json!({}))
        .await
        .expect(409, "two_factor_already_enabled");
    let me = s.get("/api/v1/users/me", &bob.token).await;
    assert_eq!(me.body["user"]["two_factor"], true, "{}", me.body);
    assert_eq!(me.body["recovery_codes_left"], 10);
    assert_eq!(me.body["two_factor_enrolment_required"], false);
    let listed = s.get("/api/v1/users?two_factor=true", &t.admin).await;
    let names: Vec<&str> = listed.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|u| u["username"].as_str())
        .collect();
    assert_eq!(names, ["bob"], "{}", listed.body);

    // The password alone answers a challenge, not a session.
    let c = challenge(&s, &t.slug, "bob", &bob.password).await;
    // The enrolment's code was used: refused within its window.
    complete(&s, json!({"challenge": c, "code": e.used}))
        .await
        .expect(401, "code_already_used");
    complete(&s, json!({"challenge": c, "code": wrong_code(&e.secret)}))
        .await
        .expect(401, "invalid_code");
    let next = code_at(&e.secret, 1);
    let r = complete(&s, json!({"challenge": c, "code": next})).await;
    assert_eq!(r.status, 200, "completeLogin: {}", r.body);
    let session = r.body["token"].as_str().expect("token").to_owned();
    assert_eq!(r.body["user"]["username"], "bob");
    assert_eq!(s.get("/api/v1/users/me", &session).await.status, 200);
    // The same code cannot sign in twice, with a new challenge either.
    let c2 = challenge(&s, &t.slug, "bob", &bob.password).await;
    complete(&s, json!({"challenge": c2, "code": next}))
        .await
        .expect(401, "code_already_used");
    // A wrong password still answers as before.
    login(&s, &t.slug, "bob", "wrong-password-123")
        .await
        .expect(401, "invalid_credentials");

    let events = audit_actions(&s, &t, "user.two_factor.enable").await;
    assert_eq!(events.len(), 1, "{events:?}");
    let metrics = s
        .client
        .get(s.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("sigil_second_factor_checks_total{outcome=\"reused\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn wrong_codes_count_with_passwords_and_a_burst_is_throttled() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("tf-burst").await;
    let r = set_policy(
        &s,
        &t,
        json!({"login_max_failures": 3, "login_lockout_secs": 3600}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let ann = person(&s, &t, "ann").await;
    let e = enrol(&s, &ann.token, &ann.password).await;
    let wrong = wrong_code(&e.secret);

    // Two wrong codes, then the right password again: the failures stay counted.
    let c = challenge(&s, &t.slug, "ann", &ann.password).await;
    for _ in 0..2 {
        complete(&s, json!({"challenge": c, "code": wrong}))
            .await
            .expect(401, "invalid_code");
    }
    let c = challenge(&s, &t.slug, "ann", &ann.password).await;
    complete(&s, json!({"challenge": c, "code": wrong}))
        .await
        .expect(401, "invalid_code");
    // Three failures: the right code and the right password are both throttled now.
    complete(&s, json!({"challenge": c, "code": code_at(&e.secret, 1)}))
        .await
        .expect(429, "login_throttled");
    login(&s, &t.slug, "ann", &ann.password)
        .await
        .expect(429, "login_throttled");

    // A burst of wrong codes for another user gets exactly the limit of checks.
    let cy = person(&s, &t, "cy").await;
    let e = enrol(&s, &cy.token, &cy.password).await;
    let c = challenge(&s, &t.slug, "cy", &cy.password).await;
    let body = json!({"challenge": c, "code": wrong_code(&e.secret)});
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let req = s
                .client
                .post(s.url("/api/v1/auth/login/complete"))
                .json(&body);
            tokio::spawn(async move { Resp::from(req.send().await.expect("sent")).await })
        })
        .collect();
    let mut checked = 0;
    for task in tasks {
        let r = task.await.expect("task");
        match r.code() {
            "invalid_code" => checked += 1,
            _ => {
                r.expect(429, "login_throttled");
            }
        }
    }
    assert_eq!(checked, 3, "a burst gets exactly login_max_failures checks");
}

#[tokio::test]
async fn recovery_codes_sign_in_once_each() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("tf-recovery").await;
    let dee = person(&s, &t, "dee").await;
    let e = enrol(&s, &dee.token, &dee.password).await;
    let eve = person(&s, &t, "eve").await;
    let other = enrol(&s, &eve.token, &eve.password).await;

    let c = challenge(&s, &t.slug, "dee", &dee.password).await;
    complete(&s, json!({"challenge": c}))
        .await
        .expect(422, "code_required");
    complete(
        &s,
        json!({"challenge": c, "code": "123456", "recovery_code": e.recovery[0]}),
    )
    .await
    .expect(422, "code_required");
    complete(
        &s,
        json!({"challenge": "not-a-challenge", "code": "123456"}),
    )
    .await
    .expect(401, "challenge_invalid");
    // Another user's recovery code is no code of this one.
    complete(
        &s,
        json!({"challenge": c, "recovery_code": other.recovery[0]}),
    )
    .await
    .expect(401, "invalid_code");
    // Typed in capitals: still the code.
    let r = complete(
        &s,
        json!({"challenge": c, "recovery_code": e.recovery[0].to_uppercase()}),
    )
    .await;
    assert_eq!(
        r.status, 200,
        "completeLogin with a recovery code: {}",
        r.body
    );
    let session = r.body["token"].as_str().expect("token").to_owned();
    let me = s.get("/api/v1/users/me", &session).await;
    assert_eq!(me.body["recovery_codes_left"], 9, "{}", me.body);
    let c = challenge(&s, &t.slug, "dee", &dee.password).await;
    complete(&s, json!({"challenge": c, "recovery_code": e.recovery[0]}))
        .await
        .expect(401, "code_already_used");
    let r = complete(&s, json!({"challenge": c, "recovery_code": e.recovery[1]})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let events = audit_actions(&s, &t, "user.two_factor.recovery_code_used").await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["after"]["recovery_codes_left"], 8, "{events:?}");

    // Nothing stored reads as a secret or a recovery code.
    use sea_orm::{ConnectionTrait, Statement};
    let db = &s.state().db;
    let backend = db.get_database_backend();
    let mut stored = String::new();
    for table in ["user_totp", "user_recovery_codes"] {
        for row in db
            .query_all(Statement::from_string(
                backend,
                format!("SELECT * FROM {table}"),
            ))
            .await
            .expect("rows")
        {
            stored.push_str(&format!("{row:?}"));
        }
    }
    assert!(stored.contains("user_id") || !stored.is_empty());
    assert!(!stored.contains(&e.secret), "the TOTP secret is sealed");
    for code in e.recovery.iter().chain(&other.recovery) {
        assert!(!stored.contains(code.as_str()));
        assert!(!stored.contains(&code.replace('-', "")));
    }
}

#[tokio::test]
async fn basic_login_is_refused_and_tokens_keep_working() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("tf-basic").await;
    let fay = person(&s, &t, "fay").await;
    let (_, token) = s.mint(&fay.token, json!({"methods": ["*"]})).await;
    enrol(&s, &fay.token, &fay.password).await;

    let basic = |password: &str| {
        s.client
            .post(s.url(&format!("/api/v1/auth/login?tenant={}", t.slug)))
            .basic_auth("fay", Some(password))
            .send()
    };
    let r = Resp::from(basic(&fay.password).await.expect("sent")).await;
    r.expect(403, "basic_login_refused");
    assert!(r.body["detail"].as_str().expect("detail").contains("token"));
    // A wrong password tells nothing about the second factor.
    Resp::from(basic("wrong-password-123").await.expect("sent"))
        .await
        .expect(401, "invalid_credentials");
    // Personal tokens need no code.
    let me = s.get("/api/v1/users/me", &token).await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.body["token_kind"], "personal");
}

#[tokio::test]
async fn confirm_password_needs_a_code_with_two_factor() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("tf-confirm").await;
    let gus = person(&s, &t, "gus").await;
    let e = enrol(&s, &gus.token, &gus.password).await;
    let confirm = |body: Value| s.post("/api/v1/auth/confirm-password", &gus.token, body);

    confirm(json!({"password": gus.password}))
        .await
        .expect(403, "two_factor_code_required");
    confirm(json!({"password": gus.password, "code": wrong_code(&e.secret)}))
        .await
        .expect(403, "invalid_code");
    confirm(json!({"password": "wrong-password-123", "code": code_at(&e.secret, 1)}))
        .await
        .expect(403, "invalid_password");
    let r = confirm(json!({"password": gus.password, "code": code_at(&e.secret, 1)})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = confirm(json!({"password": gus.password, "recovery_code": e.recovery[3]})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Without two-factor sign-in, the password alone still confirms.
    let r = s
        .post(
            "/api/v1/auth/confirm-password",
            &t.admin,
            json!({"password": t.admin_password}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn disable_needs_password_and_code() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("tf-disable").await;
    let hal = person(&s, &t, "hal").await;
    let e = enrol(&s, &hal.token, &hal.password).await;
    let disable =
        |body: Value| s.post("/api/v1/users/me/two-factor/totp/disable", &hal.token, body);
    disable(json!({"password": hal.password}))
        .await
        .expect(422, "code_required");
    disable(json!({"password": "wrong-password-123", "recovery_code": e.recovery[0]}))
        .await
        .expect(403, "invalid_password");
    let r = disable(json!({"password": hal.password, "recovery_code": e.recovery[0]})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["two_factor"], false);
    disable(json!({"password": hal.password, "recovery_code": e.recovery[1]}))
        .await
        .expect(409, "two_factor_not_enabled");
    assert_eq!(login(&s, &t.slug, "hal", &hal.password).await.status, 200);
    assert_eq!(
        audit_actions(&s, &t, "user.two_factor.disable").await.len(),
        1
    );
}

#[tokio::test]
async fn required_two_factor_lets_people_only_enrol_until_they_do() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("tf-policy").await;
    let mona = person(&s, &t, "mona").await;
    let carl = person(&s, &t, "carl").await;
    let robot = s.user(&t, "robot", "member", "api").await;

    // Requiring it needs the admin to have it.
    set_policy(&s, &t, json!({"require_two_factor": true}))
        .await
        .expect(409, "enrol_two_factor_first");
    // Refused as a whole: the policy and everyone's sessions are as they were.
    let tenant = s.get("/api/v1/tenant", &t.admin).await;
    assert_eq!(tenant.body["policy"]["require_two_factor"], false);
    assert_eq!(s.get("/api/v1/users/me", &mona.token).await.status, 200);
    enrol(&s, &t.admin, &t.admin_password).await;
    let r = set_policy(&s, &t, json!({"require_two_factor": true})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["policy"]["require_two_factor"], true);

    // Sessions of people without a second factor ended; the admin's did not.
    s.get("/api/v1/users/me", &mona.token)
        .await
        .expect(401, "token_revoked");
    assert_eq!(s.get("/api/v1/users/me", &t.admin).await.status, 200);

    // Mona signs in to a session that can only enrol.
    let r = login(&s, &t.slug, "mona", &mona.password).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["two_factor_enrolment_required"], true);
    let session = r.body["token"].as_str().expect("token").to_owned();
    let me = s.get("/api/v1/users/me", &session).await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.body["two_factor_enrolment_required"], true);
    s.get("/api/v1/tokens", &session)
        .await
        .expect(403, "two_factor_enrolment_required");
    s.post(
        "/api/v1/auth/confirm-password",
        &session,
        json!({"password": mona.password}),
    )
    .await
    .expect(403, "two_factor_enrolment_required");

    // The admin's hygiene report and the user list name who has none.
    let h = s.get("/api/v1/tokens/hygiene", &t.admin).await;
    assert_eq!(h.status, 200, "{}", h.body);
    let without: Vec<&str> = h.body["without_two_factor"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|u| u["username"].as_str())
        .collect();
    assert_eq!(without, ["carl", "mona"], "{}", h.body);

    // Enrolling turns the same session into a full one.
    enrol(&s, &session, &mona.password).await;
    let r = s.get("/api/v1/tokens", &session).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let me = s.get("/api/v1/users/me", &session).await;
    assert_eq!(me.body["two_factor_enrolment_required"], false);
    // Turning it off is refused while the policy requires it.
    s.post(
        "/api/v1/users/me/two-factor/totp/disable",
        &session,
        json!({"password": mona.password, "code": "123456"}),
    )
    .await
    .expect(409, "two_factor_required_by_policy");
    let listed = s
        .get("/api/v1/users?two_factor=false&kind=person", &t.admin)
        .await;
    let names: Vec<&str> = listed.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|u| u["username"].as_str())
        .collect();
    assert_eq!(names, ["carl"], "{}", listed.body);

    // api users and tokens are not affected.
    let r = login(&s, &t.slug, "robot", &robot.password).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.get("two_factor_enrolment_required").is_none());
    let robot_session = r.body["token"].as_str().expect("token").to_owned();
    assert_eq!(s.get("/api/v1/tokens", &robot_session).await.status, 200);
    drop(carl);
}

#[tokio::test]
async fn admins_reset_a_second_factor_with_a_confirmed_session() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("tf-reset").await;
    let nia = person(&s, &t, "nia").await;
    enrol(&s, &nia.token, &nia.password).await;
    let path = |id: &str| format!("/api/v1/users/{id}/two-factor/reset");
    // Members may not; an unconfirmed admin session must confirm first.
    let member = person(&s, &t, "max").await;
    s.call(Method::POST, &path(&nia.id), Some(&member.token), None)
        .await
        .expect(403, "user_lacks_permission");
    let second = s.user(&t, "root2", "admin", "person").await;
    let unconfirmed = s.login(&t.slug, "root2", &second.password).await;
    s.call(Method::POST, &path(&nia.id), Some(&unconfirmed), None)
        .await
        .expect(403, "password_confirmation_required");

    let r = s
        .call(Method::POST, &path(&nia.id), Some(&t.admin), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["two_factor"], false);
    s.call(Method::POST, &path(&nia.id), Some(&t.admin), None)
        .await
        .expect(409, "two_factor_not_enabled");
    // Nia signs in with the password again.
    assert_eq!(login(&s, &t.slug, "nia", &nia.password).await.status, 200);
    let events = audit_actions(&s, &t, "user.two_factor.reset").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["target_id"], nia.id.as_str());

    let r = s.get("/api/v1/users/me", &t.admin).await;
    let admin_id = r.body["user"]["id"].as_str().expect("id").to_owned();
    s.call(Method::POST, &path(&admin_id), Some(&t.admin), None)
        .await
        .expect(409, "use_disable_totp");
}

#[tokio::test]
async fn api_users_and_tokens_cannot_enrol() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("tf-api").await;
    let robot = s.user(&t, "robot", "member", "api").await;
    s.post("/api/v1/users/me/two-factor/totp", &robot.token, json!({}))
        .await
        .expect(409, "two_factor_not_for_api_users");
    let (_, app) = s
        .mint(
            &t.admin,
            json!({"kind": "application", "owner_id": robot.id, "methods": ["*"]}),
        )
        .await;
    s.post("/api/v1/users/me/two-factor/totp", &app, json!({}))
        .await
        .expect(409, "two_factor_not_for_api_users");
    // A person's personal token cannot manage the second factor either.
    let (_, personal) = s.mint(&t.admin, json!({"methods": ["*"]})).await;
    s.post("/api/v1/users/me/two-factor/totp", &personal, json!({}))
        .await
        .expect(403, "not_a_session");
    let r = s.get("/api/v1/users?kind=api", &t.admin).await;
    let robot_row = r.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|u| u["username"] == "robot")
        .cloned()
        .expect("robot listed");
    assert_eq!(robot_row["two_factor"], false);
    s.call(
        Method::POST,
        &format!("/api/v1/users/{}/two-factor/reset", robot.id),
        Some(&t.admin),
        None,
    )
    .await
    .expect(409, "two_factor_not_for_api_users");
}

async fn current(s: &TestServer, token: &str) -> Value {
    let r = s.get("/api/v1/users/me", token).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

/// getCurrentUser answers from a cached profile: every change of the user, of their
/// second factor and of their recovery codes shows in the very next answer.
#[tokio::test]
async fn the_current_user_follows_every_change_at_once() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("tf-profile").await;
    let ivy = person(&s, &t, "ivy").await;
    let first = current(&s, &ivy.token).await;
    assert_eq!(first["user"]["role"], "member");
    assert!(first["recovery_codes_left"].is_null(), "{first}");

    // An admin's change.
    let r = s
        .patch(
            &format!("/api/v1/users/{}", ivy.id),
            &t.admin,
            json!({"display_name": "Ivy Q", "role": "token_manager"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let now = current(&s, &ivy.token).await;
    assert_eq!(now["user"]["display_name"], "Ivy Q", "{now}");
    assert_eq!(now["user"]["role"], "token_manager", "{now}");

    // Her own change.
    let r = s
        .patch(
            "/api/v1/users/me",
            &ivy.token,
            json!({"display_name": "Ivy"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(current(&s, &ivy.token).await["user"]["display_name"], "Ivy");

    // Her second factor and a spent recovery code.
    let e = enrol(&s, &ivy.token, &ivy.password).await;
    let now = current(&s, &ivy.token).await;
    assert_eq!(now["user"]["two_factor"], true, "{now}");
    assert_eq!(now["recovery_codes_left"], 10, "{now}");
    let r = login(&s, &t.slug, "ivy", &ivy.password).await;
    assert_eq!(r.status, 202, "a challenge: {}", r.body);
    let r = s
        .call(
            Method::POST,
            "/api/v1/auth/login/complete",
            None,
            Some(json!({"challenge": r.body["challenge"], "recovery_code": e.recovery[0]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(current(&s, &ivy.token).await["recovery_codes_left"], 9);

    // An admin resets it.
    let r = s
        .call(
            Method::POST,
            &format!("/api/v1/users/{}/two-factor/reset", ivy.id),
            Some(&t.admin),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let now = current(&s, &ivy.token).await;
    assert_eq!(now["user"]["two_factor"], false, "{now}");
    assert!(now["recovery_codes_left"].is_null(), "{now}");
}
