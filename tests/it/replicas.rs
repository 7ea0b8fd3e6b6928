//! Three `sigil serve` processes on one PostgreSQL behind a loopback nginx.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{fresh_database, pg_base_url, tempdir::TempDir, Resp};

struct Replica {
    child: Child,
    base: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sigil(database_url: &str, master: &str, dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sigil"));
    cmd.env("SIGIL_DATABASE_URL", database_url)
        .env("SIGIL_MASTER_KEY", master)
        .env("SIGIL_DATA_DIR", dir)
        .env("SIGIL_LISTEN", "127.0.0.1:0")
        .env("SIGIL_USAGE_FLUSH_SECS", "1")
        .env("SIGIL_LOG_LEVEL", "warn");
    cmd
}

fn start_replica(database_url: &str, master: &str, dir: &std::path::Path) -> Replica {
    let mut child = sigil(database_url, master, dir)
        .arg("serve")
        .stdout(Stdio::piped())
        .spawn()
        .expect("sigil serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines.next().expect("a banner line").expect("utf-8");
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.trim().to_owned();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Replica {
        child,
        base: format!("http://{addr}"),
    }
}

struct Nginx {
    child: Child,
    stop: Command,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.stop.status();
        let _ = self.child.wait();
    }
}

fn start_nginx(dir: &std::path::Path, upstreams: &[&Replica]) -> (Nginx, String) {
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("nginx");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let servers: String = upstreams
        .iter()
        .map(|r| {
            format!(
                "server {} max_fails=1 fail_timeout=1s;\n",
                r.base.trim_start_matches("http://")
            )
        })
        .collect();
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let conf = format!(
        "worker_processes 1;\nerror_log {d}/logs/error.log warn;\npid {d}/nginx.pid;\nevents {{ worker_connections 2048; }}\n\
         http {{ access_log off; client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
         upstream sigil {{ {servers} }}\n\
         server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://sigil; proxy_next_upstream error timeout; proxy_set_header X-Forwarded-For $remote_addr; }} }} }}\n",
        d = dir.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new(nginx)
        .args([
            "-p",
            dir.to_str().unwrap(),
            "-c",
            path.to_str().unwrap(),
            "-g",
            "daemon off;",
        ])
        .spawn()
        .unwrap();
    let mut stop = Command::new(nginx);
    stop.args([
        "-p",
        dir.to_str().unwrap(),
        "-c",
        path.to_str().unwrap(),
        "-s",
        "quit",
    ]);
    (Nginx { child, stop }, format!("http://127.0.0.1:{port}"))
}

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> Resp {
    let mut req = client.request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    match req.send().await {
        Ok(r) => Resp::from(r).await,
        Err(_) => Resp {
            status: reqwest::StatusCode::BAD_GATEWAY,
            body: Value::Null,
            headers: Default::default(),
        },
    }
}

async fn wait_ready(client: &reqwest::Client, base: &str) {
    let started = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{base} not ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn three_replicas_behind_nginx_agree() {
    if pg_base_url().is_none() {
        eprintln!("the multi-replica test needs PostgreSQL (SIGIL_TEST_DATABASE_URL); covered in the PostgreSQL run");
        return;
    }
    let dir = TempDir::new();
    let database_url = fresh_database(&dir.0).await;
    let master = sigil_core::crypto::MasterKey::generate().to_base64();
    let out = sigil(&database_url, &master, &dir.0)
        .arg("migrate")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replicas: Vec<Replica> = (0..3)
        .map(|_| start_replica(&database_url, &master, &dir.0))
        .collect();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for r in &replicas {
        wait_ready(&client, &r.base).await;
    }
    let (nginx, lb) = start_nginx(&dir.0.join("nginx"), &replicas.iter().collect::<Vec<_>>());
    wait_ready(&client, &lb).await;
    let _nginx = nginx;

    // Onboard through the balancer with an operator token from the CLI.
    let out = sigil(&database_url, &master, &dir.0)
        .args(["operator", "token", "--ttl", "10m"])
        .output()
        .unwrap();
    let operator = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let r = call(
        &client,
        reqwest::Method::POST,
        format!("{lb}/api/v1/tenants"),
        Some(&operator),
        Some(json!({"slug": "acme"})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let password = r.body["admin_password"].as_str().unwrap().to_owned();
    let r = call(
        &client,
        reqwest::Method::POST,
        format!("{lb}/api/v1/auth/login"),
        None,
        Some(json!({"tenant": "acme", "username": "admin", "password": password})),
    )
    .await;
    let session = r.body["token"].as_str().unwrap().to_owned();
    let r = call(
        &client,
        reqwest::Method::POST,
        format!("{lb}/api/v1/auth/confirm-password"),
        Some(&session),
        Some(json!({"password": password})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let expires = (chrono::Utc::now() + chrono::Duration::days(5)).to_rfc3339();
    let (_, automation) = {
        let r = call(&client, reqwest::Method::POST, format!("{lb}/api/v1/tokens"), Some(&session), Some(json!({"name": "automation", "methods": ["tokens.*", "me.get"], "expires_at": expires}))).await;
        assert_eq!(r.status, 201, "{}", r.body);
        (
            r.body["token"].clone(),
            r.body["secret"].as_str().unwrap().to_owned(),
        )
    };

    // A token minted through one replica verifies on all.
    let r = call(
        &client,
        reqwest::Method::POST,
        format!("{}/api/v1/tokens", replicas[0].base),
        Some(&automation),
        Some(json!({"name": "t", "methods": ["me.get"], "expires_at": expires})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let (token_id, secret) = (
        r.body["token"]["id"].as_str().unwrap().to_owned(),
        r.body["secret"].as_str().unwrap().to_owned(),
    );
    for replica in &replicas {
        let r = call(
            &client,
            reqwest::Method::GET,
            format!("{}/api/v1/users/me", replica.base),
            Some(&secret),
            None,
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }

    // Usage counts from all replicas add up exactly (through the balancer).
    for _ in 0..6 {
        let uses = (0..50).map(|_| {
            call(
                &client,
                reqwest::Method::GET,
                format!("{lb}/api/v1/users/me"),
                Some(&secret),
                None,
            )
        });
        let statuses: Vec<u16> = futures::future::join_all(uses)
            .await
            .iter()
            .map(|r| r.status.as_u16())
            .collect();
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    }
    let started = Instant::now();
    loop {
        let r = call(
            &client,
            reqwest::Method::GET,
            format!("{lb}/api/v1/tokens/{token_id}"),
            Some(&automation),
            None,
        )
        .await;
        if r.body["use_count"] == 303 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "use_count {} (want 303)",
            r.body["use_count"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Revocation on one replica is refused by all within a second.
    let r = call(
        &client,
        reqwest::Method::DELETE,
        format!("{}/api/v1/tokens/{token_id}", replicas[1].base),
        Some(&automation),
        None,
    )
    .await;
    assert_eq!(r.status, 204);
    let started = Instant::now();
    for replica in &replicas {
        loop {
            let r = call(
                &client,
                reqwest::Method::GET,
                format!("{}/api/v1/users/me", replica.base),
                Some(&secret),
                None,
            )
            .await;
            if r.status == 401 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "{} still accepts a revoked token",
                replica.base
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    println!(
        "revocation reached all replicas within {:?}",
        started.elapsed()
    );

    // Kill one replica mid-load: every acknowledged createToken exists afterwards.
    let mut replicas = replicas;
    let victim = replicas.remove(2);
    let creates = (0..60).map(|i| {
        let (client, lb, automation, expires) = (&client, &lb, &automation, &expires);
        async move {
            if i == 20 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            call(client, reqwest::Method::POST, format!("{lb}/api/v1/tokens"), Some(automation), Some(json!({"name": format!("load-{i}"), "methods": ["me.get"], "expires_at": expires}))).await
        }
    });
    let killer = async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        drop(victim);
    };
    let (results, ()) = tokio::join!(futures::future::join_all(creates), killer);
    let acknowledged: Vec<String> = results
        .iter()
        .filter(|r| r.status == 201)
        .map(|r| r.body["token"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(!acknowledged.is_empty());
    for id in &acknowledged {
        let r = call(
            &client,
            reqwest::Method::GET,
            format!("{}/api/v1/tokens/{id}", replicas[0].base),
            Some(&automation),
            None,
        )
        .await;
        assert_eq!(r.status, 200, "acknowledged token {id} lost: {}", r.body);
    }
    println!(
        "{} of 60 creates acknowledged while a replica died; all exist",
        acknowledged.len()
    );
}
