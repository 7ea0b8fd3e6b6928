//! The one ceiling (issue: authorization that cannot be bypassed): a credential never
//! grants more than the people and credentials behind it, and what the API shows about a
//! token is what verification enforces. Each case of the review is replayed over HTTP.

use std::time::{Duration, Instant};

use chrono::Utc;
use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::{Tenant, TestServer};

fn in_secs(secs: i64) -> String {
    (Utc::now() + chrono::Duration::seconds(secs)).to_rfc3339()
}

fn id_of(token: &Value) -> String {
    token["id"].as_str().unwrap().to_owned()
}

/// Case 1: a token manager cannot regenerate (or copy, or change) an admin's token and
/// so act as the admin; a token the manager could have made stays theirs to regenerate.
#[tokio::test]
async fn regenerate_never_hands_out_more_than_the_caller_holds() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let manager = s.user(&t, "tm", "token_manager", "person").await;
    let member = s.user(&t, "bob", "member", "person").await;
    let (admin_token, admin_secret) = s.mint(&t.admin, json!({"scope_set": "read-change"})).await;
    let id = id_of(&admin_token);

    let regen = format!("/api/v1/tokens/{id}/regenerate?grace_period_secs=86400");
    s.post(&regen, &manager.token, json!({}))
        .await
        .expect(403, "token_exceeds_credential");
    s.post(
        &format!("/api/v1/tokens/{id}/copy"),
        &manager.token,
        json!({}),
    )
    .await
    .expect(403, "scope_exceeds_credential");
    s.patch(
        &format!("/api/v1/tokens/{id}"),
        &manager.token,
        json!({"expires_at": in_secs(86_400 * 2)}),
    )
    .await
    .expect(403, "token_exceeds_credential");
    // The admin's secret is untouched and the manager stayed a manager.
    s.patch(
        &format!("/api/v1/users/{}", manager.id),
        &admin_secret,
        json!({"role": "token_manager"}),
    )
    .await
    .expect(200, "");
    let me = s.get("/api/v1/users/me", &manager.token).await;
    assert_eq!(me.body["role"], "token_manager", "{}", me.body);

    // A member's read-change token is within the manager's rights: allowed.
    let (member_token, _) = s
        .mint(&member.token, json!({"scope_set": "read-change"}))
        .await;
    let r = s
        .post(
            &format!("/api/v1/tokens/{}/regenerate", id_of(&member_token)),
            &manager.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["token"]["owner_id"], member.id.as_str());
}

/// Case 2: a changed expiry is what verification enforces, at once, both ways.
#[tokio::test]
async fn the_stored_expiry_is_what_verification_enforces() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let (token, secret) = s
        .mint(
            &t.admin,
            json!({"scope_set": "read-only", "expires_at": in_secs(2)}),
        )
        .await;
    let path = format!("/api/v1/tokens/{}", id_of(&token));
    s.get("/api/v1/users/me", &secret).await.expect(200, "");
    let later = in_secs(3600);
    s.patch(&path, &t.admin, json!({"expires_at": later}))
        .await
        .expect(200, "");
    // Past the JWT's own `exp`: the stored expiry (an hour away) wins online.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let shown = s.get(&path, &t.admin).await;
    assert_eq!(shown.body["expired"], false, "{}", shown.body);
    s.get("/api/v1/users/me", &secret).await.expect(200, "");
    let introspected = s
        .post("/api/v1/introspect", &t.admin, json!({"token": secret}))
        .await;
    assert_eq!(introspected.body["active"], true, "{}", introspected.body);
    // Expiring it now refuses it at once, everywhere.
    s.patch(&path, &t.admin, json!({"expires_at": in_secs(-1)}))
        .await
        .expect(200, "");
    s.get("/api/v1/users/me", &secret)
        .await
        .expect(401, "token_expired");
    let shown = s.get(&path, &t.admin).await;
    assert_eq!(shown.body["expired"], true, "{}", shown.body);
}

/// Case 3: a token minted for someone else keeps the creator's ceiling when its owner is
/// promoted; one the owner's admin minted with admin rights follows the owner.
#[tokio::test]
async fn a_token_minted_for_someone_else_never_grows_past_its_creator() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let manager = s.user(&t, "tm", "token_manager", "person").await;
    let member = s.user(&t, "bob", "member", "person").await;
    let (by_manager, manager_secret) = s
        .mint(
            &manager.token,
            json!({"methods": ["*"], "owner_id": member.id}),
        )
        .await;
    let ceiling: Vec<&str> = by_manager["ceiling"]
        .as_array()
        .expect("a ceiling is shown")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(ceiling.contains(&"tokens.create") && !ceiling.contains(&"users.update"));
    let (by_admin, admin_secret) = s
        .mint(&t.admin, json!({"methods": ["*"], "owner_id": member.id}))
        .await;
    assert!(by_admin["ceiling"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m == "users.update"));
    let (own, own_secret) = s.mint(&member.token, json!({"methods": ["*"]})).await;
    assert!(own["ceiling"].is_null(), "{own}");

    s.patch(
        &format!("/api/v1/users/{}", member.id),
        &t.admin,
        json!({"role": "admin"}),
    )
    .await
    .expect(200, "");
    let rename = json!({"display_name": "Bob"});
    let target = format!("/api/v1/users/{}", manager.id);
    s.patch(&target, &manager_secret, rename.clone())
        .await
        .expect(403, "method_not_in_scope");
    s.patch(&target, &admin_secret, rename.clone())
        .await
        .expect(200, "");
    s.patch(&target, &own_secret, rename).await.expect(200, "");
    let me = s.get("/api/v1/users/me", &manager_secret).await;
    let methods = me.body["methods"].as_array().unwrap();
    assert!(!methods.iter().any(|m| m == "users.update"), "{}", me.body);
    // The member, now an admin, may lift the ceiling from their own login session.
    let promoted = s.login("acme", "bob", &member.password).await;
    s.post(
        "/api/v1/auth/confirm-password",
        &promoted,
        json!({"password": member.password}),
    )
    .await
    .expect(200, "");
    let r = s
        .patch(
            &format!("/api/v1/tokens/{}", id_of(&by_manager)),
            &promoted,
            json!({"methods": ["*"]}),
        )
        .await;
    assert!(r.body["ceiling"].is_null(), "{}", r.body);
}

/// Case 6: an expired token is regenerated with a new expiry from the body; without one
/// the refusal says what to give. The body's grace period is honoured.
#[tokio::test]
async fn regenerate_takes_expiry_and_grace_period_in_its_body() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let (token, old) = s
        .mint(
            &t.admin,
            json!({"scope_set": "read-only", "expires_at": in_secs(2)}),
        )
        .await;
    let regen = format!("/api/v1/tokens/{}/regenerate", id_of(&token));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    s.get("/api/v1/users/me", &old)
        .await
        .expect(401, "token_expired");
    s.call(Method::POST, &regen, Some(&t.admin), None)
        .await
        .expect(422, "expiry_required");
    s.post(&regen, &t.admin, json!({"expires_at": in_secs(-5)}))
        .await
        .expect(422, "expiry_in_past");
    let r = s
        .post(&regen, &t.admin, json!({"expires_at": in_secs(86_400)}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let fresh = r.body["secret"].as_str().unwrap().to_owned();
    s.get("/api/v1/users/me", &fresh).await.expect(200, "");

    // The grace period from the body keeps the previous secret working.
    let r = s
        .post(&regen, &t.admin, json!({"grace_period_secs": 60}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    s.get("/api/v1/users/me", &fresh).await.expect(200, "");
    // Query and body must not disagree.
    s.post(
        &format!("{regen}?grace_period_secs=5"),
        &t.admin,
        json!({"grace_period_secs": 60}),
    )
    .await
    .expect(422, "conflicting_grace_period");
}

/// A token acting may not hand out an expiry later than its own.
#[tokio::test]
async fn changes_never_outlive_the_acting_token() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let (_, acting) = s
        .mint(
            &t.admin,
            json!({"methods": ["tokens.*"], "expires_at": in_secs(3600)}),
        )
        .await;
    let (victim, _) = s
        .mint(
            &t.admin,
            json!({"methods": ["tokens.list"], "expires_at": in_secs(600)}),
        )
        .await;
    let path = format!("/api/v1/tokens/{}", id_of(&victim));
    s.patch(&path, &acting, json!({"expires_at": in_secs(7200)}))
        .await
        .expect(403, "expiry_exceeds_credential");
    s.post(
        &format!("{path}/regenerate"),
        &acting,
        json!({"expires_at": in_secs(7200)}),
    )
    .await
    .expect(403, "expiry_exceeds_credential");
    s.patch(&path, &acting, json!({"expires_at": in_secs(1800)}))
        .await
        .expect(200, "");
}

/// Case 7: a stored IP filter that cannot be read refuses every address.
#[tokio::test]
async fn an_unreadable_ip_filter_refuses() {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    use sigil_token::entity;
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let (token, secret) = s.mint(&t.admin, json!({"scope_set": "read-only"})).await;
    let id: uuid::Uuid = id_of(&token).parse().unwrap();
    entity::Entity::update_many()
        .col_expr(
            entity::Column::IpFilter,
            sea_orm::sea_query::Expr::value("[\"10.0.0.0/33\"]"),
        )
        .filter(entity::Column::Id.eq(sigil_core::TokenId(id)))
        .exec(&s.state().db)
        .await
        .unwrap();
    s.get("/api/v1/users/me", &secret)
        .await
        .expect(401, "ip_not_allowed");
}

/// Case 7: a forged token's tenant claim never files its refusal under that tenant.
#[tokio::test]
async fn forged_tokens_are_not_audited_under_the_claimed_tenant() {
    let s = TestServer::start().await;
    let t: Tenant = s.tenant_admin("acme").await;
    let (token, secret) = s.mint(&t.admin, json!({"scope_set": "read-only"})).await;
    let (head, sig) = secret.rsplit_once('.').unwrap();
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    let forged = format!("{head}.{flipped}{}", &sig[1..]);
    s.get("/api/v1/users/me", &forged)
        .await
        .expect(401, "token_invalid_signature");
    // A real refusal in the same tenant shows the log is being written.
    s.post(
        "/api/v1/tokens",
        &secret,
        json!({"name": "x", "read": true}),
    )
    .await
    .expect(403, "method_not_in_scope");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = s
            .get("/api/v1/audit-events?action=verification.refused", &t.admin)
            .await;
        let rows = r.body["items"].as_array().cloned().unwrap_or_default();
        if rows
            .iter()
            .any(|e| e["credential_id"] == id_of(&token).as_str())
        {
            assert!(
                !rows
                    .iter()
                    .any(|e| e["after"]["code"] == "token_invalid_signature"),
                "{rows:#?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "refusals were not written: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
