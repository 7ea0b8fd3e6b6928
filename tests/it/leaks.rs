//! Leaked secrets: a secret scanning partner report (signed like GitHub's) and
//! reportLeakedTokens revoke a real secret at once (401 `token_leaked` from then on),
//! record where it was found in its tenant's audit log, never tell whether an unknown
//! secret exists, and are idempotent.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{EncodePublicKey, LineEnding};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{Resp, Tenant, TestServer};

const KEY_ID: &str = "90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a";
const PARTNER: &str = "/api/v1/leaks/secret-scanning";
const REPORT: &str = "/api/v1/leaks";

/// A fresh P-256 key pair for the test.
fn key_pair() -> SigningKey {
    loop {
        let mut seed = [0u8; 32];
        seed[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        seed[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        if let Ok(key) = SigningKey::from_slice(&seed) {
            return key;
        }
    }
}

fn public_pem(key: &SigningKey) -> String {
    key.verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap()
}

/// A server that trusts `key` for partner reports (besides an unrelated second key).
async fn server(key: &SigningKey) -> TestServer {
    let pem = public_pem(key);
    let other = public_pem(&key_pair());
    TestServer::start_with(|c| {
        c.leak_report_keys.insert(KEY_ID.to_owned(), pem);
        c.leak_report_keys.insert("another-key".to_owned(), other);
    })
    .await
}

fn sign(key: &SigningKey, body: &[u8]) -> String {
    let signature: Signature = key.sign(body);
    STANDARD.encode(signature.to_der().as_bytes())
}

/// Posts a partner report as GitHub does: the raw body, its key id and signature.
async fn partner(
    s: &TestServer,
    body: &[u8],
    key_id: Option<&str>,
    signature: Option<&str>,
) -> Resp {
    let mut req = s
        .client
        .post(s.url(PARTNER))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(k) = key_id {
        req = req.header("Github-Public-Key-Identifier", k);
    }
    if let Some(sig) = signature {
        req = req.header("Github-Public-Key-Signature", sig);
    }
    Resp::from(req.send().await.unwrap()).await
}

fn matches(tokens: &[&str]) -> Vec<u8> {
    let items: Vec<Value> = tokens
        .iter()
        .map(|t| {
            json!({
                "token": t,
                "type": "sigil_api_token",
                "url": "https://github.com/octo/app/blob/abc123/config.env",
                "source": "content",
            })
        })
        .collect();
    serde_json::to_vec(&items).unwrap()
}

/// An HS256 JWT: JWT-shaped, not a Sigil secret.
fn foreign_jwt() -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "someone", "iat": 1_700_000_000}),
        &jsonwebtoken::EncodingKey::from_secret(b"not sigil"),
    )
    .unwrap()
}

/// The `token.leaked` events about a token, as the token's tenant admin sees them.
async fn leak_events(s: &TestServer, t: &Tenant, token_id: &str) -> Vec<Value> {
    let r = s
        .get(
            &format!("/api/v1/audit-events?action=token.leaked&target_id={token_id}"),
            &t.admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn partner_report_revokes_a_real_secret_and_labels_by_format() {
    let key = key_pair();
    let s = server(&key).await;
    let t = s.tenant_admin("leak-a").await;
    let (token, secret) = s.mint(&t.admin, json!({"methods": ["*"]})).await;
    let id = token["id"].as_str().unwrap();
    s.get("/api/v1/users/me", &secret).await.expect(200, "");

    let foreign = foreign_jwt();
    let body = matches(&[&secret, &foreign]);
    let r = partner(&s, &body, Some(KEY_ID), Some(&sign(&key, &body))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body,
        json!([
            {"token_raw": secret, "token_type": "sigil_api_token", "label": "true_positive"},
            {"token_raw": foreign, "token_type": "sigil_api_token", "label": "false_positive"},
        ])
    );

    // Revoked at once, with its own code.
    s.get("/api/v1/users/me", &secret)
        .await
        .expect(401, "token_leaked");
    // The tenant's audit log says where it was found.
    let events = leak_events(&s, &t, id).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let after = &events[0]["after"];
    assert_eq!(
        after["url"],
        "https://github.com/octo/app/blob/abc123/config.env"
    );
    assert_eq!(after["source"], "content");
    assert_eq!(after["reported_via"], "secret_scanning");
    assert_eq!(events[0]["actor"], "secret scanning");

    // Idempotent: the same report again answers the same and changes nothing.
    let again = partner(&s, &body, Some(KEY_ID), Some(&sign(&key, &body))).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body, r.body);
    assert_eq!(leak_events(&s, &t, id).await.len(), 1);
    s.get("/api/v1/users/me", &secret)
        .await
        .expect(401, "token_leaked");

    // Unknown Sigil-shaped secrets (a deleted token's) are labelled by format alone and
    // answered without error.
    let (gone, gone_secret) = s.mint(&t.admin, json!({"methods": ["*"]})).await;
    let deleted = s
        .delete(
            &format!("/api/v1/tokens/{}", gone["id"].as_str().unwrap()),
            &t.admin,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    let body = matches(&[&gone_secret, "not a token at all"]);
    let r = partner(&s, &body, Some(KEY_ID), Some(&sign(&key, &body))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body[0]["label"], "true_positive");
    assert_eq!(r.body[1]["label"], "false_positive");

    // Another tenant's token is not touched by this one's report.
    s.get("/api/v1/users/me", &t.admin).await.expect(200, "");
}

#[tokio::test]
async fn partner_report_with_a_bad_signature_is_refused() {
    let key = key_pair();
    let s = server(&key).await;
    let t = s.tenant_admin("leak-b").await;
    let (_, secret) = s.mint(&t.admin, json!({"methods": ["*"]})).await;
    let body = matches(&[&secret]);

    // Signed by a key nobody configured.
    let stranger = key_pair();
    partner(&s, &body, Some(KEY_ID), Some(&sign(&stranger, &body)))
        .await
        .expect(401, "leak_report_signature_invalid");
    // Signed by a configured key, but named as another.
    partner(&s, &body, Some("another-key"), Some(&sign(&key, &body)))
        .await
        .expect(401, "leak_report_signature_invalid");
    // An unknown key id.
    partner(&s, &body, Some("nope"), Some(&sign(&key, &body)))
        .await
        .expect(401, "leak_report_signature_invalid");
    // The body changed after signing.
    let signature = sign(&key, &body);
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    partner(&s, &tampered, Some(KEY_ID), Some(&signature))
        .await
        .expect(401, "leak_report_signature_invalid");
    // Not base64 / not DER.
    partner(&s, &body, Some(KEY_ID), Some("%%%"))
        .await
        .expect(401, "leak_report_signature_invalid");
    partner(&s, &body, Some(KEY_ID), Some(&STANDARD.encode(b"short")))
        .await
        .expect(401, "leak_report_signature_invalid");
    // No signature at all.
    partner(&s, &body, None, None)
        .await
        .expect(401, "leak_report_unsigned");

    // Nothing was revoked, and nothing was audited.
    s.get("/api/v1/users/me", &secret).await.expect(200, "");
    let r = s
        .get("/api/v1/audit-events?action=token.leaked", &t.admin)
        .await;
    assert_eq!(r.body["items"], json!([]), "{}", r.body);

    // A correctly signed report still works, and unknown fields are accepted.
    let body = serde_json::to_vec(&json!([{
        "token": secret, "type": "sigil_api_token", "url": "https://gist.github.com/x",
        "source": "gist", "added_later": {"x": 1},
    }]))
    .unwrap();
    let r = partner(&s, &body, Some(KEY_ID), Some(&sign(&key, &body))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    s.get("/api/v1/users/me", &secret)
        .await
        .expect(401, "token_leaked");
}

#[tokio::test]
async fn partner_reports_are_refused_when_no_key_is_configured() {
    let s = TestServer::start().await;
    let body = matches(&[&foreign_jwt()]);
    let key = key_pair();
    partner(&s, &body, Some(KEY_ID), Some(&sign(&key, &body)))
        .await
        .expect(403, "leak_reports_not_configured");
}

#[tokio::test]
async fn report_leaked_tokens_revokes_audits_and_answers_alike() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("leak-c").await;
    let member = s.user(&t, "leaky", "member", "person").await;
    let (token, secret) = s.mint(&member.token, json!({"read": true})).await;
    let id = token["id"].as_str().unwrap();
    s.get("/api/v1/users/me", &secret).await.expect(200, "");

    // An unknown secret, a deleted token's, and garbage: the same answer as a real one.
    let (gone, gone_secret) = s.mint(&member.token, json!({"read": true})).await;
    s.delete(
        &format!("/api/v1/tokens/{}", gone["id"].as_str().unwrap()),
        &member.token,
    )
    .await;
    let mut answers = Vec::new();
    for reported in [gone_secret.as_str(), "garbage", &foreign_jwt(), &secret] {
        let r = s
            .post(
                REPORT,
                &member.token,
                json!({
                    "secrets": [reported],
                    "url": "https://chat.example/channel/42",
                    "source": "chat",
                }),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
        answers.push(r.body);
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");

    s.get("/api/v1/users/me", &secret)
        .await
        .expect(401, "token_leaked");
    let events = leak_events(&s, &t, id).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["after"]["url"], "https://chat.example/channel/42");
    assert_eq!(events[0]["after"]["source"], "chat");
    assert_eq!(events[0]["after"]["reported_via"], "api");
    assert_eq!(events[0]["actor_id"], json!(member.id));

    // The owner sees it on the token and in their audit view.
    let shown = s.get(&format!("/api/v1/tokens/{id}"), &member.token).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
    assert!(shown.body["leaked_at"].is_string(), "{}", shown.body);
    assert_eq!(shown.body["revoked_at"], shown.body["leaked_at"]);
    let mine = s
        .get(
            &format!("/api/v1/audit-events?action=token.leaked&target_id={id}"),
            &member.token,
        )
        .await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.body);
    assert_eq!(
        mine.body["items"].as_array().unwrap().len(),
        1,
        "{}",
        mine.body
    );

    // Idempotent.
    let r = s
        .post(REPORT, &member.token, json!({"secrets": [secret, secret]}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(leak_events(&s, &t, id).await.len(), 1);

    // The secret a regeneration replaced is no longer live: reporting it revokes nothing.
    let (other, old_secret) = s.mint(&member.token, json!({"read": true})).await;
    let other_id = other["id"].as_str().unwrap();
    let regenerated = s
        .post(
            &format!("/api/v1/tokens/{other_id}/regenerate"),
            &member.token,
            json!({}),
        )
        .await;
    assert!(regenerated.status.is_success(), "{}", regenerated.body);
    let new_secret = regenerated.body["secret"].as_str().unwrap().to_owned();
    s.post(REPORT, &member.token, json!({"secrets": [old_secret]}))
        .await;
    s.get("/api/v1/users/me", &new_secret).await.expect(200, "");
    assert!(leak_events(&s, &t, other_id).await.is_empty());

    // A user of another tenant who found the secret may report it: it is revoked and
    // audited in the token's tenant, without naming the reporter.
    let u = s.tenant_admin("leak-d").await;
    s.post(
        REPORT,
        &u.admin,
        json!({"secrets": [new_secret], "source": "paste"}),
    )
    .await;
    s.get("/api/v1/users/me", &new_secret)
        .await
        .expect(401, "token_leaked");
    let events = leak_events(&s, &t, other_id).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["actor_id"], Value::Null);
    assert_eq!(events[0]["actor"], "leak report");

    // A login session reported by its own user ends at once.
    let session = s.login(&t.slug, "leaky", &member.password).await;
    s.post(REPORT, &session, json!({"secrets": [session]}))
        .await;
    s.get("/api/v1/users/me", &session)
        .await
        .expect(401, "token_leaked");

    // Without a credential: refused.
    s.call(
        reqwest::Method::POST,
        REPORT,
        None,
        Some(json!({"secrets": ["x"]})),
    )
    .await
    .expect(401, "credential_missing");
}
