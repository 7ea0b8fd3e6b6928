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
    r.expect(400, "malformed_body");
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

/// SIGTERM drains the server and flushes queued usage before the process exits.
#[tokio::test]
async fn sigterm_flushes_usage_and_exits_cleanly() {
    use std::io::{BufRead, BufReader};
    let dir = crate::harness::tempdir::TempDir::new();
    let database_url = crate::harness::fresh_database(&dir.0).await;
    let bin = env!("CARGO_BIN_EXE_sigil");
    let env = |cmd: &mut std::process::Command| {
        cmd.env("SIGIL_DATABASE_URL", &database_url)
            .env("SIGIL_DATA_DIR", &dir.0)
            .env("SIGIL_LISTEN", "127.0.0.1:0")
            .env("SIGIL_USAGE_FLUSH_SECS", "300");
    };
    let start = || {
        let mut cmd = std::process::Command::new(bin);
        env(&mut cmd);
        let mut child = cmd
            .arg("serve")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().unwrap().unwrap();
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.trim().to_owned();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        (child, format!("http://{addr}"))
    };
    let mut cmd = std::process::Command::new(bin);
    env(&mut cmd);
    let out = cmd
        .args(["tenant", "create", "acme", "--init"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("only JSON on stdout");
    let password = created["admin_password"].as_str().unwrap().to_owned();
    let (mut child, base) = start();
    let client = reqwest::Client::new();
    let login: serde_json::Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"tenant": "acme", "username": "admin", "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let session = login["token"].as_str().unwrap().to_owned();
    // A first stop and start: the data survives and the session still verifies.
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success(), "clean exit");
    let (mut child, base) = start();
    let confirm = client
        .post(format!("{base}/api/v1/auth/confirm-password"))
        .bearer_auth(&session)
        .json(&json!({"password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(confirm.status(), 200);
    let minted: serde_json::Value = client
        .post(format!("{base}/api/v1/tokens"))
        .bearer_auth(&session)
        .json(&json!({"name": "t", "scope_set": "read-only", "expires_at": (chrono::Utc::now() + chrono::Duration::days(2)).to_rfc3339()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = minted["secret"].as_str().unwrap().to_owned();
    let id = minted["token"]["id"].as_str().unwrap().to_owned();
    for _ in 0..5 {
        client
            .get(format!("{base}/api/v1/users/me"))
            .bearer_auth(&secret)
            .send()
            .await
            .unwrap();
    }
    // The flush interval is 5 minutes: only the shutdown flush can write these uses.
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
    let (mut child, base) = start();
    let got: serde_json::Value = client
        .get(format!("{base}/api/v1/tokens/{id}"))
        .bearer_auth(&session)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["use_count"], 5, "uses flushed at shutdown: {got}");
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}
