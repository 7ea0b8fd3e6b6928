//! Forward auth with a real nginx (`auth_request`) protecting a stand-in for the seed-004
//! platform API: `stopenv?envName=x&session=TOKEN` passes with an Extended Access token and
//! is refused with a read-only one.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::TestServer;

fn nginx_binary() -> Option<&'static str> {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
}

struct Nginx {
    child: Child,
    stop: Command,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // A graceful quit takes the workers down with the master.
        let _ = self.stop.status();
        let _ = self.child.wait();
    }
}

/// A stand-in upstream: answers every request with `{"result":0}` and echoes the identity
/// header nginx passes on.
async fn upstream() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let text = String::from_utf8_lossy(&buf[..n]).to_lowercase();
                let user = text
                    .lines()
                    .find_map(|l| l.strip_prefix("x-sigil-user: "))
                    .unwrap_or("")
                    .trim()
                    .to_owned();
                let body = format!("{{\"result\":0,\"user\":\"{user}\"}}");
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    port
}

/// The forward-auth snippets that deploy/nginx/nginx.conf includes: the test runs them.
const DEPLOY_SNIPPETS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/nginx/sigil");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn nginx_auth_request_protects_a_platform_api() {
    let Some(nginx) = nginx_binary() else {
        assert!(
            std::env::var("CI").is_err(),
            "nginx must be installed in CI (.ci/run installs it)"
        );
        eprintln!("nginx not installed; skipping outside CI");
        return;
    };
    let manifest = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/plugins/platform.json"
    );
    let s = TestServer::start_with(|c| c.plugins = vec![manifest.into()]).await;
    let t = s.tenant_admin("acme").await;
    let (_, extended) = s
        .mint(&t.admin, json!({"scope_set": "platform.extended-access"}))
        .await;
    let (_, read_only) = s.mint(&t.admin, json!({"scope_set": "read-only"})).await;
    let (_, limited) = s
        .mint(
            &t.admin,
            json!({
                "scope_set": "platform.extended-access",
                "rate_limits": [{"name": "burst", "window_secs": 60, "limit": 1}]
            }),
        )
        .await;
    let upstream_port = upstream().await;
    let port = free_port();
    let dir = s._dir.0.join("nginx");
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let sigil = s.base.trim_start_matches("http://").to_owned();
    let conf = format!(
        r#"
worker_processes 1;
error_log {dir}/logs/error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  upstream sigil {{ server {sigil}; }}
  server {{
    listen 127.0.0.1:{port};
    include {deploy}/auth-endpoint.conf;
    location / {{
      include {deploy}/auth-request.conf;
      proxy_pass http://127.0.0.1:{upstream_port};
    }}
  }}
}}
"#,
        dir = dir.display(),
        deploy = DEPLOY_SNIPPETS,
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let child = Command::new(nginx)
        .args([
            "-p",
            dir.to_str().unwrap(),
            "-c",
            conf_path.to_str().unwrap(),
            "-g",
            "daemon off;",
        ])
        .spawn()
        .expect("nginx starts");
    let mut stop = Command::new(nginx);
    stop.args([
        "-p",
        dir.to_str().unwrap(),
        "-c",
        conf_path.to_str().unwrap(),
        "-s",
        "quit",
    ]);
    let _guard = Nginx { child, stop };
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "nginx did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stop = |token: &str| {
        format!("{base}/1.0/environment/control/rest/stopenv?envName=x&session={token}")
    };
    let r = s.client.get(stop(&extended)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["result"], 0);
    assert_eq!(body["user"], "admin", "identity passed upstream");
    let r = s.client.get(stop(&read_only)).send().await.unwrap();
    assert_eq!(r.status(), 403, "read-only token refused");
    let r = s
        .client
        .get(format!(
            "{base}/1.0/environment/control/rest/stopenv?envName=x"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no token refused");

    // A usage limit: Sigil answers nginx with a 403 naming the refusal, and the deploy
    // snippets turn it into a 429 with Retry-After and the RateLimit headers.
    let r = s.client.get(stop(&limited)).send().await.unwrap();
    assert_eq!(r.status(), 200, "first call within the limit");
    let r = s.client.get(stop(&limited)).send().await.unwrap();
    assert_eq!(r.status(), 429, "rate limit answered as 429 by nginx");
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let retry: u64 = header("retry-after").expect("Retry-After").parse().unwrap();
    assert!((1..=120).contains(&retry), "{retry} (at most two windows)");
    assert_eq!(
        header("ratelimit-policy").as_deref(),
        Some("\"burst\";q=1;w=60")
    );
    assert!(header("ratelimit").unwrap().starts_with("\"burst\";r=0;t="));
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited");
    assert_eq!(body["status"], 429);

    // Other refusals keep their status and now name their reason.
    let r = s.client.get(stop(&read_only)).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "method_not_in_scope");
}
