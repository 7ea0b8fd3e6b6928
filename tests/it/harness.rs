//! Starts the real server on port 0 against a fresh database (a SQLite file, or a fresh
//! PostgreSQL database when SIGIL_TEST_DATABASE_URL is set) and talks HTTP to it.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sigil_server::{Config, Running};

pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    pub running: Option<Running>,
    pub database_url: String,
    pub _dir: tempdir::TempDir,
}

pub mod tempdir {
    /// A directory removed when dropped.
    pub struct TempDir(pub std::path::PathBuf);
    impl TempDir {
        pub fn new() -> Self {
            let path = std::env::temp_dir().join(format!("sigil-test-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&path).expect("temp dir");
            Self(path)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub fn pg_base_url() -> Option<String> {
    std::env::var("SIGIL_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// A fresh database URL for one test: a new PostgreSQL database, or a SQLite file.
pub async fn fresh_database(dir: &std::path::Path) -> String {
    match pg_base_url() {
        Some(base) => {
            use sqlx::Connection;
            let name = format!("sigil_t_{}", uuid::Uuid::new_v4().simple());
            let mut conn = sqlx::PgConnection::connect(&base)
                .await
                .expect("connect to SIGIL_TEST_DATABASE_URL");
            sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str())
                .await
                .expect("create database");
            let (prefix, _) = base.rsplit_once('/').expect("database url with a path");
            format!("{prefix}/{name}")
        }
        None => format!("sqlite://{}?mode=rwc", dir.join("sigil.db").display()),
    }
}

pub fn test_config(dir: &std::path::Path, database_url: &str) -> Config {
    Config {
        listen: "127.0.0.1:0".into(),
        database_url: database_url.to_owned(),
        data_dir: dir.to_path_buf(),
        master_key: sigil_core::crypto::MasterKey::generate().to_base64(),
        usage_flush_secs: 1,
        db_max_connections: 8,
        ..Config::default()
    }
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempdir::TempDir::new();
        let database_url = fresh_database(&dir.0).await;
        let mut config = test_config(&dir.0, &database_url);
        tweak(&mut config);
        let prepared = sigil_server::prepare(config)
            .await
            .expect("server prepares");
        let running = sigil_server::spawn(prepared).await.expect("server starts");
        let base = format!("http://{}", running.addr);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        Self {
            base,
            client,
            running: Some(running),
            database_url,
            _dir: dir,
        }
    }

    /// Another replica on the same database and master key.
    pub async fn start_on(database_url: &str, master_key: &str) -> Self {
        Self::start_on_with(database_url, master_key, |_| {}).await
    }

    /// Another replica on the same database and master key, with settings of its own.
    pub async fn start_on_with(
        database_url: &str,
        master_key: &str,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let dir = tempdir::TempDir::new();
        let mut config = test_config(&dir.0, database_url);
        config.master_key = master_key.to_owned();
        tweak(&mut config);
        let prepared = sigil_server::prepare(config)
            .await
            .expect("server prepares");
        let running = sigil_server::spawn(prepared).await.expect("server starts");
        let base = format!("http://{}", running.addr);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        Self {
            base,
            client,
            running: Some(running),
            database_url: database_url.to_owned(),
            _dir: dir,
        }
    }

    pub fn state(&self) -> &sigil_server::state::AppState {
        &self.running.as_ref().expect("running").state
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await.expect("clean stop");
        }
    }

    /// Flushes queued use counts and spent credits now (instead of waiting for the timer).
    pub async fn flush_usage(&self) {
        self.state().flush_usage().await.expect("flush");
    }

    pub fn operator_token(&self) -> String {
        self.state()
            .platform
            .issue(Duration::from_secs(600))
            .expect("operator token")
            .0
    }

    /// Sends a request; returns the status, the JSON body (Null when empty) and headers.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        Resp::from(req.send().await.expect("request sent")).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.call(Method::GET, path, Some(token), None).await
    }
    pub async fn post(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }
    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }
    pub async fn delete(&self, path: &str, token: &str) -> Resp {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// Creates a tenant through the operator API; returns (tenant json, admin password).
    pub async fn create_tenant(&self, slug: &str) -> (Value, String) {
        let r = self
            .post(
                "/api/v1/tenants",
                &self.operator_token(),
                json!({"slug": slug}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "createTenant: {}", r.body);
        (
            r.body["tenant"].clone(),
            r.body["admin_password"]
                .as_str()
                .expect("password")
                .to_owned(),
        )
    }

    pub async fn login(&self, tenant: &str, username: &str, password: &str) -> String {
        let r = self
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({"tenant": tenant, "username": username, "password": password})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "login: {}", r.body);
        r.body["token"].as_str().expect("token").to_owned()
    }

    /// A tenant with its admin signed in and password-confirmed (ready to change tokens).
    pub async fn tenant_admin(&self, slug: &str) -> Tenant {
        let (tenant, password) = self.create_tenant(slug).await;
        let token = self.login(slug, "admin", &password).await;
        let r = self
            .post(
                "/api/v1/auth/confirm-password",
                &token,
                json!({"password": password}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "confirmPassword: {}", r.body);
        Tenant {
            slug: slug.to_owned(),
            id: tenant["id"].as_str().expect("id").to_owned(),
            admin: token,
            admin_password: password,
        }
    }

    /// Creates a user and returns a confirmed login session for them.
    pub async fn user(&self, t: &Tenant, username: &str, role: &str, kind: &str) -> User {
        let password = format!("Pw-{}-horse", uuid::Uuid::new_v4().simple());
        let r = self
            .post(
                "/api/v1/users",
                &t.admin,
                json!({"username": username, "role": role, "kind": kind, "password": password}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "createUser: {}", r.body);
        let id = r.body["id"].as_str().expect("id").to_owned();
        let token = self.login(&t.slug, username, &password).await;
        let c = self
            .post(
                "/api/v1/auth/confirm-password",
                &token,
                json!({"password": password}),
            )
            .await;
        assert_eq!(c.status, StatusCode::OK, "confirm: {}", c.body);
        User {
            id,
            token,
            password,
        }
    }

    /// Mints a token with the given body; returns (token json, secret).
    pub async fn mint(&self, session: &str, body: Value) -> (Value, String) {
        let mut body = body;
        if body.get("expires_at").is_none() {
            body["expires_at"] =
                json!((chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339());
        }
        if body.get("name").is_none() {
            body["name"] = json!("test token");
        }
        let r = self.post("/api/v1/tokens", session, body).await;
        assert_eq!(r.status, StatusCode::CREATED, "createToken: {}", r.body);
        (
            r.body["token"].clone(),
            r.body["secret"].as_str().expect("secret").to_owned(),
        )
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            drop(r);
        }
    }
}

pub struct Tenant {
    pub slug: String,
    pub id: String,
    pub admin: String,
    pub admin_password: String,
}

pub struct User {
    pub id: String,
    pub token: String,
    pub password: String,
}

#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Resp {
    pub async fn from(r: reqwest::Response) -> Self {
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(if text.is_empty() {
            Value::Null
        } else {
            Value::String(text)
        });
        Self {
            status,
            body,
            headers,
        }
    }

    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The refused values of a 422, as `field: message`.
    pub fn errors(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("no errors: {}", self.body))
            .iter()
            .map(|e| {
                format!(
                    "{}: {}",
                    e["field"].as_str().expect("field"),
                    e["message"].as_str().expect("message")
                )
            })
            .collect()
    }

    /// The fields named by the refused values of a 422.
    pub fn error_fields(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("no errors: {}", self.body))
            .iter()
            .map(|e| e["field"].as_str().expect("field").to_owned())
            .collect()
    }

    /// Asserts status and problem code, with the body in the message.
    pub fn expect(&self, status: u16, code: &str) -> &Self {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(self.code(), code, "body: {}", self.body);
        if status >= 400 {
            assert_eq!(
                self.header("content-type"),
                Some("application/problem+json"),
                "errors are problem JSON: {}",
                self.body
            );
        }
        self
    }
}
