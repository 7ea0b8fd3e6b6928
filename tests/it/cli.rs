//! The `sigil` command as a newcomer meets it, and HTTP Basic login without a body.
//!
//! Administration commands use the data the server uses (the same settings as `serve`) or
//! stop with a message, creating nothing; `tenant create --init` and `migrate` create a
//! database on purpose. `serve` suggests creating a tenant only while there is none.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::tempdir::TempDir;
use crate::harness::{fresh_database, TestServer};

/// The `sigil` binary run in `cwd` with no Sigil setting from the test's environment.
fn sigil(cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sigil"));
    cmd.current_dir(cwd).stdin(Stdio::null());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SIGIL_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// `sigil` with the settings of a server: its database URL and data directory.
fn sigil_with(cwd: &Path, database_url: &str, data_dir: &Path) -> Command {
    let mut cmd = sigil(cwd);
    cmd.env("SIGIL_DATABASE_URL", database_url)
        .env("SIGIL_DATA_DIR", data_dir)
        .env("SIGIL_LISTEN", "127.0.0.1:0");
    cmd
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Starts `sigil serve`; returns the child, the base URL and the banner (stdout up to the
/// line after the URLs).
fn serve(mut cmd: Command) -> (Child, String, String) {
    let mut child = cmd
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = String::new();
    let mut addr = None;
    // The banner ends with the health line, or the first-steps block after it.
    for line in lines.by_ref() {
        let line = line.unwrap();
        banner.push_str(&line);
        banner.push('\n');
        if let Some(rest) = line.split("listening on ").nth(1) {
            addr = Some(rest.trim().to_owned());
        }
        if line.contains("health:") {
            break;
        }
    }
    let addr = addr.expect("the banner names the address");
    // Whatever follows (the first-steps hint or nothing) arrives right away; logs go to
    // stderr. Read the rest in the background and give it a moment.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines {
            let Ok(line) = line else { return };
            let _ = tx.send(line);
        }
    });
    while let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(500)) {
        banner.push_str(&line);
        banner.push('\n');
    }
    (child, format!("http://{addr}"), banner)
}

fn stop(mut child: Child) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success(), "clean exit");
}

/// Run from an empty directory with default settings, the commands that need the
/// server's data stop with a clear message and leave the directory empty.
#[tokio::test]
async fn commands_run_elsewhere_refuse_and_create_nothing() {
    let cwd = TempDir::new();
    for args in [
        &["tenant", "create", "acme"][..],
        &["operator", "token"],
        &["operator", "revoke", "--all"],
    ] {
        let out = sigil(&cwd.0).args(args).output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
        assert!(err.contains("no Sigil database at"), "{args:?}: {err}");
        assert!(
            err.contains(
                &cwd.0
                    .join("sigil-data")
                    .join("sigil.db")
                    .display()
                    .to_string()
            ),
            "{args:?} names the file it looked for: {err}"
        );
        assert!(err.contains("SIGIL_DATA_DIR"), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line: {err}");
        assert!(
            entries(&cwd.0).is_empty(),
            "{args:?} created {:?}",
            entries(&cwd.0)
        );
    }
    let out = sigil(&cwd.0)
        .args(["tenant", "create", "acme"])
        .output()
        .unwrap();
    assert!(stderr(&out).contains("--init"), "{}", stderr(&out));

    // A database named explicitly but never migrated (an empty PostgreSQL database, a
    // missing SQLite file) is refused too, and gains nothing.
    let data = TempDir::new();
    let database_url = fresh_database(&data.0).await;
    let out = sigil_with(&cwd.0, &database_url, &data.0)
        .args(["tenant", "create", "acme"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no Sigil database at") || err.contains("holds no Sigil data"),
        "{err}"
    );
    assert!(
        entries(&data.0).is_empty(),
        "created {:?}",
        entries(&data.0)
    );
    assert!(entries(&cwd.0).is_empty(), "created {:?}", entries(&cwd.0));
}

/// With the server's settings, from any directory, the CLI finds the server's data: the
/// tenant it creates is the running server's. `serve` suggests creating a tenant only
/// while there is none.
#[tokio::test]
async fn with_the_server_settings_the_cli_uses_the_server_data() {
    let data = TempDir::new();
    let elsewhere = TempDir::new();
    let database_url = fresh_database(&data.0).await;

    let (server, base, banner) = serve(sigil_with(&data.0, &database_url, &data.0));
    assert!(
        banner.contains("sigil tenant create acme"),
        "no tenant yet: {banner}"
    );

    let out = sigil_with(&elsewhere.0, &database_url, &data.0)
        .args(["tenant", "create", "acme"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let created: Value = serde_json::from_slice(&out.stdout).expect("only JSON on stdout");
    let password = created["admin_password"].as_str().unwrap().to_owned();
    assert!(
        entries(&elsewhere.0).is_empty(),
        "{:?}",
        entries(&elsewhere.0)
    );

    // The running server knows the tenant: HTTP Basic, no body.
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/login?tenant=acme"))
        .basic_auth("admin", Some(&password))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert!(body["token"].as_str().is_some_and(|t| !t.is_empty()));
    stop(server);

    // After a restart there is a tenant: no first-steps hint.
    let (server, _, banner) = serve(sigil_with(&data.0, &database_url, &data.0));
    assert!(banner.contains("listening on"), "{banner}");
    assert!(
        !banner.contains("tenant create"),
        "a tenant exists: {banner}"
    );
    stop(server);

    // Operator tokens come from the same data.
    let out = sigil_with(&elsewhere.0, &database_url, &data.0)
        .args(["operator", "token", "--ttl", "5m"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

/// `tenant create --init` starts a new installation on purpose (database and master key);
/// `migrate` creates the database, and the CLI then asks for the master key the server
/// would use.
#[tokio::test]
async fn init_and_migrate_create_on_purpose() {
    let data = TempDir::new();
    let database_url = fresh_database(&data.0).await;
    let out = sigil_with(&data.0, &database_url, &data.0)
        .args(["tenant", "create", "acme", "--init"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let created: Value = serde_json::from_slice(&out.stdout).expect("only JSON on stdout");
    assert_eq!(created["tenant"]["slug"], "acme");
    assert!(data.0.join("master.key").exists(), "a master key was made");
    // The installation now exists: no --init needed.
    let out = sigil_with(&data.0, &database_url, &data.0)
        .args(["tenant", "create", "beta"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    // `migrate` in an empty directory creates the database (asked for); the master key is
    // not there yet, so `tenant create` names it instead of making one.
    let cwd = TempDir::new();
    let out = sigil(&cwd.0).arg("migrate").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(cwd.0.join("sigil-data").join("sigil.db").exists());
    let out = sigil(&cwd.0)
        .args(["tenant", "create", "acme"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no master key"), "{err}");
    assert!(!cwd.0.join("sigil-data").join("master.key").exists());
}

async fn raw_post(base: &str, head: &str, body: &[u8]) -> (u16, Value) {
    let host = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| serde_json::from_str(b).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    (status, body)
}

/// `curl -u admin:PASSWORD -X POST '/api/v1/auth/login?tenant=acme'`: no body, no
/// content type. JSON and form bodies keep working, and the spec says the body is optional.
#[tokio::test]
async fn login_with_http_basic_needs_no_body() {
    let s = TestServer::start().await;
    let (_, password) = s.create_tenant("acme").await;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("admin:{password}"));

    // Exactly what curl sends: neither Content-Length nor Content-Type.
    let head = format!(
        "POST /api/v1/auth/login?tenant=acme HTTP/1.1\r\nHost: x\r\n\
         Authorization: Basic {basic}\r\nConnection: close\r\n\r\n"
    );
    let (status, body) = raw_post(&s.base, &head, b"").await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    s.get("/api/v1/users/me", &token).await.expect(200, "");

    // Content-Length: 0 (curl -d '' without a content type) and reqwest's empty POST.
    let head = format!(
        "POST /api/v1/auth/login?tenant=acme HTTP/1.1\r\nHost: x\r\n\
         Authorization: Basic {basic}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let (status, body) = raw_post(&s.base, &head, b"").await;
    assert_eq!(status, 200, "{body}");
    let r = s
        .client
        .post(s.url("/api/v1/auth/login?tenant=acme"))
        .basic_auth("admin", Some(&password))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The bodies that worked before still do: `-d ''` (an empty form), `{}`, full JSON,
    // a full form.
    let r = s
        .client
        .post(s.url("/api/v1/auth/login?tenant=acme"))
        .basic_auth("admin", Some(&password))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = s
        .client
        .post(s.url("/api/v1/auth/login?tenant=acme"))
        .basic_auth("admin", Some(&password))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    s.login("acme", "admin", &password).await;
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
    assert_eq!(r.status(), 200);

    // No credentials at all: 401 with the Basic challenge, not 415. Without a tenant too.
    let (status, body) = raw_post(
        &s.base,
        "POST /api/v1/auth/login?tenant=acme HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"",
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], "credentials_required", "{body}");
    let head = format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\n\
         Authorization: Basic {basic}\r\nConnection: close\r\n\r\n"
    );
    let (status, body) = raw_post(&s.base, &head, b"").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], "tenant_required", "{body}");
    // A wrong password without a body: 401 as with a body.
    let wrong = base64::engine::general_purpose::STANDARD.encode("admin:wrong-password-123");
    let head = format!(
        "POST /api/v1/auth/login?tenant=acme HTTP/1.1\r\nHost: x\r\n\
         Authorization: Basic {wrong}\r\nConnection: close\r\n\r\n"
    );
    let (status, body) = raw_post(&s.base, &head, b"").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], "invalid_credentials", "{body}");
    // A body of another type is still refused.
    let r = s
        .client
        .post(s.url("/api/v1/auth/login?tenant=acme"))
        .basic_auth("admin", Some(&password))
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert!(matches!(r.status().as_u16(), 400 | 415));

    // The spec: the body is optional, both media types stay, the operation is unchanged.
    let spec = s.call(Method::GET, "/openapi.json", None, None).await.body;
    let op = &spec["paths"]["/api/v1/auth/login"]["post"];
    assert_eq!(op["operationId"], "login");
    assert_eq!(
        op["requestBody"]["required"], false,
        "{}",
        op["requestBody"]
    );
    let content = op["requestBody"]["content"].as_object().unwrap();
    assert!(content.contains_key("application/json; charset=utf-8"));
    assert!(content.contains_key("application/x-www-form-urlencoded"));
    assert!(op["responses"].get("200").is_some());
}
