use reqwest::Method;
use serde_json::json;

use crate::harness::TestServer;

#[tokio::test]
async fn health_readiness_spec_and_docs_answer() {
    let s = TestServer::start().await;
    let r = s.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "ok");
    let r = s.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["info"]["title"], "Sigil");
    let html = s
        .client
        .get(s.url("/docs"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("SwaggerUIBundle"), "docs UI served");
}

#[tokio::test]
async fn committed_spec_matches_the_code() {
    let s = TestServer::start().await;
    let live = s
        .client
        .get(s.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi/sigil.json");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        live == committed,
        "openapi/sigil.json is stale; regenerate it with: cargo run -q -- openapi > openapi/sigil.json"
    );
}

#[tokio::test]
async fn every_error_is_problem_json_with_a_code() {
    let s = TestServer::start().await;
    s.call(Method::GET, "/no/such/path", None, None)
        .await
        .expect(404, "not_found");
    s.call(Method::PUT, "/healthz", None, None)
        .await
        .expect(405, "method_not_allowed");
    let r = s.call(Method::GET, "/api/v1/tokens", None, None).await;
    r.expect(401, "credential_missing");
    assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
    // Malformed JSON and a wrong content type.
    let r = s
        .client
        .post(s.url("/api/v1/auth/login"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let r = crate::harness::Resp::from(r).await;
    r.expect(400, "bad_request");
    let r = s
        .client
        .post(s.url("/api/v1/auth/login"))
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    let r = crate::harness::Resp::from(r).await;
    assert!(matches!(r.status.as_u16(), 400 | 415), "{}", r.body);
    assert!(!r.code().is_empty());
    // Oversized body.
    let big = "x".repeat(2 * 1024 * 1024);
    let r = s
        .client
        .post(s.url("/api/v1/auth/login"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    crate::harness::Resp::from(r)
        .await
        .expect(413, "payload_too_large");
}

#[tokio::test]
async fn a_garbage_token_is_refused_precisely() {
    let s = TestServer::start().await;
    let r = s.get("/api/v1/users/me", "not-a-jwt").await;
    r.expect(401, "token_malformed");
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains("invalid_token"));
    let _ = json!({});
}

#[tokio::test]
async fn cli_version_help_and_bad_config() {
    let bin = env!("CARGO_BIN_EXE_sigil");
    let out = std::process::Command::new(bin)
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("sigil"));
    let out = std::process::Command::new(bin)
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in ["serve", "migrate", "openapi", "tenant", "operator"] {
        assert!(help.contains(cmd), "help lists {cmd}");
    }
    let out = std::process::Command::new(bin)
        .arg("serve")
        .env("SIGIL_LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SIGIL_LISTEN"), "names the setting: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    let out = std::process::Command::new(bin)
        .arg("serve")
        .env("SIGIL_CACHE_TTL_SECS", "zero")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SIGIL_CACHE_TTL_SECS"));
}
