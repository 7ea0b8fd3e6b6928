//! The plugin-author client crate against a live server.

use std::time::Duration;

use serde_json::json;
use sigil_client::{Introspector, OfflineVerifier};

use crate::harness::TestServer;

#[tokio::test]
async fn introspector_decides_and_caches() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/plugins/platform.json"
    );
    let s = TestServer::start_with(|c| c.plugins = vec![path.into()]).await;
    let t = s.tenant_admin("acme").await;
    let (_, plugin_cred) = s
        .mint(&t.admin, json!({"methods": ["sigil.introspect"]}))
        .await;
    let (tok, extended) = s
        .mint(&t.admin, json!({"scope_set": "platform.extended-access"}))
        .await;
    let (_, read_only) = s.mint(&t.admin, json!({"scope_set": "read-only"})).await;
    let sigil = Introspector::new(&s.base, &plugin_cred, Duration::from_millis(300));
    let ok = sigil
        .check(&extended, "platform.environment.control.stopenv", None)
        .await
        .unwrap();
    assert!(ok.active);
    assert_eq!(ok.username.as_deref(), Some("admin"));
    let no = sigil
        .check(&read_only, "platform.environment.control.stopenv", None)
        .await
        .unwrap();
    assert!(!no.active);
    assert_eq!(no.code.as_deref(), Some("method_not_in_scope"));
    // Deleted: the cached answer holds for its short TTL, then the refusal shows.
    s.delete(
        &format!("/api/v1/tokens/{}", tok["id"].as_str().unwrap()),
        &t.admin,
    )
    .await;
    assert!(
        sigil
            .check(&extended, "platform.environment.control.stopenv", None)
            .await
            .unwrap()
            .active,
        "cached"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let gone = sigil
        .check(&extended, "platform.environment.control.stopenv", None)
        .await
        .unwrap();
    assert_eq!(gone.code.as_deref(), Some("token_unknown"));
}

#[tokio::test]
async fn offline_verifier_checks_signature_issuer_and_tenant() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let other = s.tenant_admin("other").await;
    let (_, secret) = s.mint(&t.admin, json!({"scope_set": "read-only"})).await;
    let verifier = OfflineVerifier::new(&s.base, "acme", &t.id).with_min_refresh(Duration::ZERO);
    let claims = verifier.verify(&secret).await.unwrap();
    assert_eq!(claims.tid, t.id);
    // Another tenant's token does not verify with this tenant's keys.
    let (_, foreign) = s
        .mint(&other.admin, json!({"scope_set": "read-only"}))
        .await;
    assert!(verifier.verify(&foreign).await.is_err());
    // Tampering breaks the signature.
    let mut parts: Vec<&str> = secret.split('.').collect();
    parts[2] = "AAAA";
    assert!(verifier.verify(&parts.join(".")).await.is_err());
    // After a rotation, a token signed with the new key is found by refetching the JWKS.
    s.post("/api/v1/tenant/signing-keys/rotate", &t.admin, json!({}))
        .await;
    let (_, fresh) = s.mint(&t.admin, json!({"scope_set": "read-only"})).await;
    assert!(verifier.verify(&fresh).await.is_ok());
}
