//! Issue 17, signed webhooks: a local receiver (a bare HTTP/1.1 server on port 0) checks
//! each delivery's Standard Webhooks signature with its own HMAC-SHA256 (from SHA-256,
//! not the server's code), fails on demand to drive retries, and outlives a server
//! restart in the middle of a retry schedule. Also the event filter, test deliveries, the
//! delivery log, recent client addresses and `token.new_ip`, and the other events.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Tenant, TestServer};

#[derive(Clone, Debug)]
struct Received {
    path: String,
    headers: HashMap<String, String>,
    body: String,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
    fn event_type(&self) -> String {
        self.json()["type"].as_str().unwrap_or_default().to_owned()
    }
}

/// A webhook receiver: records every request; answers 500 on paths ending in `/fail`,
/// 503 to the first `fail_first` other requests, then 200.
struct Receiver {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    fail_first: Arc<AtomicUsize>,
}

impl Receiver {
    async fn start(fail_first: usize) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let fail = Arc::new(AtomicUsize::new(fail_first));
        let (rec, fails) = (received.clone(), fail.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let (rec, fails) = (rec.clone(), fails.clone());
                tokio::spawn(async move {
                    let Some(req) = read_request(&mut socket).await else {
                        return;
                    };
                    let status = if req.path.ends_with("/fail") {
                        500
                    } else if fails
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok()
                    {
                        503
                    } else {
                        200
                    };
                    rec.lock().unwrap().push(req);
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                    );
                    let _ = socket.write_all(answer.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Self {
            port,
            received,
            fail_first: fail,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn all(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    fn on(&self, path: &str) -> Vec<Received> {
        self.all().into_iter().filter(|r| r.path == path).collect()
    }

    /// Waits until `done` holds for the requests received so far (a 60 s guard).
    async fn wait(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let start = Instant::now();
        loop {
            let all = self.all();
            if done(&all) {
                return all;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "waited for {what}; received: {:#?}",
                all.iter()
                    .map(|r| (&r.path, r.event_type()))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<Received> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let path = lines.next()?.split(' ').nth(1)?.to_owned();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers.get("content-length")?.parse().ok()?;
    while buf.len() < head_end + len {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).to_string();
    Some(Received {
        path,
        headers,
        body,
    })
}

/// HMAC-SHA256 (RFC 2104) over SHA-256, independent of the server's implementation.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut k = if key.len() > 64 {
        Sha256::digest(key).to_vec()
    } else {
        key.to_vec()
    };
    k.resize(64, 0);
    let inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner_hash = Sha256::new()
        .chain_update(&inner)
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(&outer)
        .chain_update(inner_hash)
        .finalize()
        .to_vec()
}

/// Checks a delivery as a receiver would: headers present, timestamp fresh, one `v1`
/// signature equal to HMAC-SHA256(secret, "id.timestamp.body").
fn verify(secret: &str, r: &Received) {
    let id = &r.headers["webhook-id"];
    let ts = &r.headers["webhook-timestamp"];
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").expect("whsec_ prefix"))
        .expect("base64 secret");
    let expected = STANDARD.encode(hmac_sha256(
        &key,
        format!("{id}.{ts}.{}", r.body).as_bytes(),
    ));
    let signatures: Vec<&str> = r.headers["webhook-signature"].split(' ').collect();
    assert!(
        signatures.contains(&format!("v1,{expected}").as_str()),
        "signature of {id} does not verify: {signatures:?}"
    );
    let age = chrono::Utc::now().timestamp() - ts.parse::<i64>().expect("unix timestamp");
    assert!((-5..300).contains(&age), "timestamp {ts} is not fresh");
    assert!(id.starts_with("msg_"), "{id}");
    assert_eq!(r.headers["content-type"], "application/json");
    // A wrong secret does not verify.
    let other = STANDARD.encode(hmac_sha256(
        b"another key",
        format!("{id}.{ts}.{}", r.body).as_bytes(),
    ));
    assert!(!signatures.contains(&format!("v1,{other}").as_str()));
}

fn webhook_config(c: &mut sigil_server::Config, schedule: &str) {
    c.webhook_allow_private = true;
    c.webhook_retry_schedule = schedule.into();
    c.webhook_poll_millis = 100;
    c.webhook_sweep_secs = 1;
    c.trusted_proxies = vec!["127.0.0.1/32".into()];
}

async fn create_webhook(s: &TestServer, t: &Tenant, body: Value) -> (String, String) {
    let r = s.post("/api/v1/webhooks", &t.admin, body).await;
    assert_eq!(r.status, 201, "createWebhook: {}", r.body);
    assert!(r.body["secret"].as_str().unwrap().starts_with("whsec_"));
    (
        r.body["webhook"]["id"].as_str().unwrap().to_owned(),
        r.body["secret"].as_str().unwrap().to_owned(),
    )
}

async fn deliveries(s: &TestServer, t: &Tenant, webhook: &str) -> Vec<Value> {
    let r = s
        .get(&format!("/api/v1/webhooks/{webhook}/deliveries"), &t.admin)
        .await;
    assert_eq!(r.status, 200, "listWebhookDeliveries: {}", r.body);
    r.body["items"].as_array().unwrap().clone()
}

/// Waits until the delivery log of `webhook` satisfies `done`.
async fn wait_log(
    s: &TestServer,
    t: &Tenant,
    webhook: &str,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let log = deliveries(s, t, webhook).await;
        if done(&log) {
            return log;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "waited for {what}: {log:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn deliveries_are_signed_and_follow_the_event_filter() {
    let rx = Receiver::start(0).await;
    let s = TestServer::start_with(|c| webhook_config(c, "1s")).await;
    let t = s.tenant_admin("hooks-filter").await;
    let (hook, secret) = create_webhook(
        &s,
        &t,
        json!({"url": rx.url("/filtered"), "event_types": ["token.created", "token.deleted"], "description": "ci"}),
    )
    .await;
    let (_, all_secret) = create_webhook(&s, &t, json!({"url": rx.url("/all")})).await;

    let r = s.get(&format!("/api/v1/webhooks/{hook}"), &t.admin).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body["event_types"],
        json!(["token.created", "token.deleted"])
    );
    assert!(
        r.body.get("secret").is_none(),
        "the secret is shown once: {}",
        r.body
    );

    let (token, _) = s.mint(&t.admin, json!({"name": "ci", "read": true})).await;
    let id = token["id"].as_str().unwrap();
    let r = s
        .patch(
            &format!("/api/v1/tokens/{id}"),
            &t.admin,
            json!({"description": "changed"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s.delete(&format!("/api/v1/tokens/{id}"), &t.admin).await;
    assert_eq!(r.status, 204);

    rx.wait("the unfiltered endpoint's three events", |all| {
        all.iter().filter(|r| r.path == "/all").count() >= 3
    })
    .await;
    let filtered = rx
        .wait("the filtered endpoint's two events", |all| {
            all.iter().filter(|r| r.path == "/filtered").count() >= 2
        })
        .await;
    let filtered: Vec<&Received> = filtered.iter().filter(|r| r.path == "/filtered").collect();
    let mut types: Vec<String> = filtered.iter().map(|r| r.event_type()).collect();
    types.sort();
    assert_eq!(
        types,
        ["token.created", "token.deleted"],
        "token.updated is filtered out"
    );
    for r in &filtered {
        verify(&secret, r);
        let body = r.json();
        assert_eq!(body["data"]["token_id"], json!(id));
        assert_eq!(body["data"]["tenant_id"], json!(t.id));
        assert!(body["timestamp"].is_string());
        assert!(!r.body.contains("eyJ"), "no secret in an event: {}", r.body);
    }
    // Deliveries go out concurrently: at least once each, in no promised order.
    let all = rx.on("/all");
    let mut types: Vec<String> = all.iter().map(Received::event_type).collect();
    types.sort();
    assert_eq!(types, ["token.created", "token.deleted", "token.updated"]);
    for r in &all {
        verify(&all_secret, r);
    }

    // The delivery log: one succeeded delivery per event, with its response code.
    let log = wait_log(&s, &t, &hook, "two succeeded deliveries", |log| {
        log.len() == 2 && log.iter().all(|d| d["status"] == "succeeded")
    })
    .await;
    for d in &log {
        assert_eq!(d["attempts"], 1);
        assert_eq!(d["last_response_code"], 200);
        assert!(d["next_attempt_at"].is_null());
        assert!(d["message_id"].as_str().unwrap().starts_with("msg_"));
        assert!(d["payload"]["type"].is_string());
    }
    let ids: Vec<&str> = filtered
        .iter()
        .map(|r| r.headers["webhook-id"].as_str())
        .collect();
    assert!(log
        .iter()
        .all(|d| ids.contains(&d["message_id"].as_str().unwrap())));

    // A supplied secret is used as given.
    let own = format!("whsec_{}", STANDARD.encode([7u8; 32]));
    let (own_hook, shown) =
        create_webhook(&s, &t, json!({"url": rx.url("/own"), "secret": own})).await;
    assert_eq!(shown, own);
    let r = s
        .post(
            &format!("/api/v1/webhooks/{own_hook}/test"),
            &t.admin,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 202, "sendTestWebhook: {}", r.body);
    assert_eq!(r.body["status"], "pending");
    let got = rx
        .wait("the test delivery", |all| {
            all.iter().any(|r| r.path == "/own")
        })
        .await;
    let test = got.iter().find(|r| r.path == "/own").unwrap();
    verify(&own, test);
    assert_eq!(test.event_type(), "webhook.test");

    // Rotating the secret: the next delivery is signed with the new one.
    let r = s
        .patch(
            &format!("/api/v1/webhooks/{own_hook}"),
            &t.admin,
            json!({"rotate_secret": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let rotated = r.body["secret"].as_str().unwrap().to_owned();
    assert_ne!(rotated, own);
    s.post(
        &format!("/api/v1/webhooks/{own_hook}/test"),
        &t.admin,
        json!({}),
    )
    .await;
    let got = rx
        .wait("a second test delivery", |all| {
            all.iter().filter(|r| r.path == "/own").count() >= 2
        })
        .await;
    verify(
        &rotated,
        got.iter().filter(|r| r.path == "/own").nth(1).unwrap(),
    );

    // Deleted: gone, with its log.
    let r = s
        .delete(&format!("/api/v1/webhooks/{own_hook}"), &t.admin)
        .await;
    assert_eq!(r.status, 204);
    s.get(&format!("/api/v1/webhooks/{own_hook}"), &t.admin)
        .await
        .expect(404, "not_found");
}

#[tokio::test]
async fn bad_endpoints_are_refused() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("hooks-bad").await;
    for (url, code) in [
        ("http://127.0.0.1:9/hook", "webhook_address_not_allowed"),
        (
            "http://169.254.169.254/latest",
            "webhook_address_not_allowed",
        ),
        ("http://localhost/hook", "webhook_address_not_allowed"),
        ("ftp://example.com/hook", "invalid_webhook_url"),
        ("https://user:pw@example.com/hook", "invalid_webhook_url"),
    ] {
        s.post("/api/v1/webhooks", &t.admin, json!({"url": url}))
            .await
            .expect(422, code);
    }
    s.post(
        "/api/v1/webhooks",
        &t.admin,
        json!({"url": "https://example.com/hook", "secret": "not-a-secret"}),
    )
    .await
    .expect(422, "invalid_webhook_secret");
    let r = s
        .post(
            "/api/v1/webhooks",
            &t.admin,
            json!({"url": "https://example.com/hook", "event_types": ["token.stolen"]}),
        )
        .await;
    assert!(r.status.is_client_error(), "{}", r.body);
    // Another tenant's endpoint is not found.
    let (id, _) = create_webhook(
        &s,
        &t,
        json!({"url": "https://hooks.invalid/x", "enabled": false}),
    )
    .await;
    let other = s.tenant_admin("hooks-other").await;
    s.get(&format!("/api/v1/webhooks/{id}"), &other.admin)
        .await
        .expect(404, "not_found");
    s.get(&format!("/api/v1/webhooks/{id}/deliveries"), &other.admin)
        .await
        .expect(404, "not_found");
}

#[tokio::test]
async fn retries_survive_a_restart_and_give_up_after_the_schedule() {
    let rx = Receiver::start(2).await;
    let mut s = TestServer::start_with(|c| webhook_config(c, "2s,2s")).await;
    let master = s.state().config.master_key.clone();
    let t = s.tenant_admin("hooks-retry").await;
    let (hook, secret) = create_webhook(&s, &t, json!({"url": rx.url("/flaky")})).await;
    let (dead, _) = create_webhook(&s, &t, json!({"url": rx.url("/fail")})).await;

    let r = s
        .post(
            &format!("/api/v1/webhooks/{hook}/test"),
            &t.admin,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let first = rx
        .wait("the first attempt", |all| {
            all.iter().any(|r| r.path == "/flaky")
        })
        .await;
    let first_id = first.iter().find(|r| r.path == "/flaky").unwrap().headers["webhook-id"].clone();
    let log = wait_log(&s, &t, &hook, "the failed first attempt", |log| {
        log.first()
            .is_some_and(|d| d["attempts"].as_i64() >= Some(1))
    })
    .await;
    assert_eq!(log[0]["status"], "pending");
    assert_eq!(log[0]["last_response_code"], 503);
    assert!(log[0]["next_attempt_at"].is_string());

    // Stopped in the middle of the schedule, started again on the same database.
    s.stop().await;
    let before_restart = rx.on("/flaky").len();
    assert!(
        before_restart < 3,
        "the schedule was not over before the restart"
    );
    let dir = crate::harness::tempdir::TempDir::new();
    let mut config = crate::harness::test_config(&dir.0, &s.database_url);
    config.master_key = master;
    webhook_config(&mut config, "2s,2s");
    let prepared = sigil_server::prepare(config).await.expect("prepares");
    let running = sigil_server::spawn(prepared).await.expect("starts");
    let s2 = TestServer {
        base: format!("http://{}", running.addr),
        client: reqwest::Client::new(),
        running: Some(running),
        database_url: s.database_url.clone(),
        _dir: dir,
    };

    let got = rx
        .wait("the third attempt after the restart", |all| {
            all.iter().filter(|r| r.path == "/flaky").count() >= 3
        })
        .await;
    let flaky: Vec<&Received> = got.iter().filter(|r| r.path == "/flaky").collect();
    assert!(
        flaky.iter().all(|r| r.headers["webhook-id"] == first_id),
        "one message id for every attempt"
    );
    for r in &flaky {
        verify(&secret, r);
    }
    assert_eq!(rx.fail_first.load(Ordering::SeqCst), 0);
    // A login session of the first server is still valid on the second (same database).
    let log = wait_log(&s2, &t, &hook, "the delivery to succeed", |log| {
        log.first().is_some_and(|d| d["status"] == "succeeded")
    })
    .await;
    assert_eq!(log[0]["attempts"], 3);
    assert_eq!(log[0]["last_response_code"], 200);
    assert_eq!(log[0]["message_id"], json!(first_id));

    // An endpoint that always fails: tried once and once per wait, then failed.
    s2.post(
        &format!("/api/v1/webhooks/{dead}/test"),
        &t.admin,
        json!({}),
    )
    .await;
    let log = wait_log(&s2, &t, &dead, "the delivery to fail for good", |log| {
        log.iter()
            .any(|d| d["status"] == "failed" && d["event_type"] == "webhook.test")
    })
    .await;
    let failed = log.iter().find(|d| d["status"] == "failed").unwrap();
    assert_eq!(failed["attempts"], 3);
    assert_eq!(failed["last_response_code"], 500);
    assert!(failed["next_attempt_at"].is_null());
    let r = s2
        .get(
            &format!("/api/v1/webhooks/{dead}/deliveries?status=failed"),
            &t.admin,
        )
        .await;
    assert!(r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["status"] == "failed"));
}

/// A call from `ip` (through the trusted local proxy).
async fn use_from(s: &TestServer, secret: &str, ip: &str) {
    let r = s
        .client
        .get(s.url("/api/v1/users/me"))
        .bearer_auth(secret)
        .header("x-forwarded-for", ip)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn recent_addresses_and_new_ip_events() {
    let rx = Receiver::start(0).await;
    let s = TestServer::start_with(|c| webhook_config(c, "1s")).await;
    let t = s.tenant_admin("hooks-ips").await;
    let (_, secret) = create_webhook(
        &s,
        &t,
        json!({"url": rx.url("/ips"), "event_types": ["token.new_ip"]}),
    )
    .await;
    let (token, credential) = s
        .mint(&t.admin, json!({"name": "robot", "read": true}))
        .await;
    let id = token["id"].as_str().unwrap();

    use_from(&s, &credential, "203.0.113.5").await;
    use_from(&s, &credential, "203.0.113.6").await;
    use_from(&s, &credential, "203.0.113.5").await;
    s.flush_usage().await;
    let r = s.get(&format!("/api/v1/tokens/{id}"), &t.admin).await;
    let recent = r.body["recent_addresses"].as_array().unwrap().clone();
    let ips: Vec<&str> = recent.iter().map(|a| a["ip"].as_str().unwrap()).collect();
    assert_eq!(ips.len(), 2, "{recent:?}");
    assert!(ips.contains(&"203.0.113.5") && ips.contains(&"203.0.113.6"));
    for a in &recent {
        assert!(a["first_seen"].as_str() <= a["last_seen"].as_str());
    }
    // Lists do not carry them.
    let r = s.get("/api/v1/tokens", &t.admin).await;
    assert!(r.body["items"][0].get("recent_addresses").is_none());

    // A known address raises nothing; a new one does.
    use_from(&s, &credential, "203.0.113.6").await;
    s.flush_usage().await;
    use_from(&s, &credential, "203.0.113.7").await;
    s.flush_usage().await;
    let got = rx.wait("three new_ip events", |all| all.len() >= 3).await;
    let mut seen: Vec<String> = got
        .iter()
        .map(|r| {
            verify(&secret, r);
            assert_eq!(r.event_type(), "token.new_ip");
            assert_eq!(r.json()["data"]["token_id"], json!(id));
            r.json()["data"]["ip"].as_str().unwrap().to_owned()
        })
        .collect();
    seen.sort();
    assert_eq!(seen, ["203.0.113.5", "203.0.113.6", "203.0.113.7"]);
    let last = got
        .iter()
        .find(|r| r.json()["data"]["ip"] == "203.0.113.7")
        .unwrap();
    let known = last.json()["data"]["recent_addresses"].clone();
    assert_eq!(known.as_array().unwrap().len(), 2, "{known}");

    // Only the last five distinct addresses are kept.
    for n in 8..12 {
        use_from(&s, &credential, &format!("203.0.113.{n}")).await;
        s.flush_usage().await;
    }
    let r = s.get(&format!("/api/v1/tokens/{id}"), &t.admin).await;
    let ips: Vec<String> = r.body["recent_addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["ip"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        ips,
        [
            "203.0.113.11",
            "203.0.113.10",
            "203.0.113.9",
            "203.0.113.8",
            "203.0.113.7"
        ]
    );
}

#[tokio::test]
async fn lifecycle_events_reach_the_endpoint() {
    let rx = Receiver::start(0).await;
    let s = TestServer::start_with(|c| webhook_config(c, "1s")).await;
    let t = s.tenant_admin("hooks-life").await;
    let (_, secret) = create_webhook(&s, &t, json!({"url": rx.url("/life")})).await;
    let member = s.user(&t, "mia", "member", "person").await;

    // Expiring in two days: token.expiring (7 days), once.
    let soon = (chrono::Utc::now() + chrono::Duration::days(2)).to_rfc3339();
    let (expiring, _) = s
        .mint(
            &t.admin,
            json!({"name": "soon", "read": true, "expires_at": soon}),
        )
        .await;
    let expiring_id = expiring["id"].as_str().unwrap().to_owned();
    // Regenerated, then leaked: token.regenerated, token.leaked, token.revoked.
    let (leaky, _) = s
        .mint(&t.admin, json!({"name": "leaky", "read": true}))
        .await;
    let leaky_id = leaky["id"].as_str().unwrap().to_owned();
    let r = s
        .post(
            &format!("/api/v1/tokens/{leaky_id}/regenerate"),
            &t.admin,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let new_secret = r.body["secret"].as_str().unwrap().to_owned();
    let r = s
        .post(
            "/api/v1/leaks",
            &t.admin,
            json!({"secrets": [new_secret], "url": "https://paste.example/1", "source": "paste"}),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    // Expired now: token.updated, then token.expired from the sweep.
    let (old, _) = s.mint(&t.admin, json!({"name": "old", "read": true})).await;
    let old_id = old["id"].as_str().unwrap().to_owned();
    let now = chrono::Utc::now().to_rfc3339();
    let r = s
        .patch(
            &format!("/api/v1/tokens/{old_id}"),
            &t.admin,
            json!({"expires_at": now}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // A deactivated user: user.deactivated.
    let r = s
        .post(
            &format!("/api/v1/users/{}/deactivate", member.id),
            &t.admin,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // A rotated-away secret used again: token.reuse_detected, and the token revoked.
    let (stolen, stolen_secret) = s
        .mint(
            &t.admin,
            json!({"name": "stolen", "methods": ["tokens.rotate_current", "me.get"]}),
        )
        .await;
    let stolen_id = stolen["id"].as_str().unwrap().to_owned();
    let r = s
        .post(
            "/api/v1/tokens/current/rotate",
            &stolen_secret,
            json!({"grace_period_secs": 0}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    s.get("/api/v1/users/me", &stolen_secret)
        .await
        .expect(401, "token_reuse_detected");

    let has = |all: &[Received], ty: &str, token: Option<&str>| {
        all.iter().any(|r| {
            r.event_type() == ty && token.is_none_or(|id| r.json()["data"]["token_id"] == json!(id))
        })
    };
    let got = rx
        .wait("every lifecycle event", |all| {
            has(all, "token.expiring", Some(&expiring_id))
                && has(all, "token.regenerated", Some(&leaky_id))
                && has(all, "token.leaked", Some(&leaky_id))
                && has(all, "token.revoked", Some(&leaky_id))
                && has(all, "token.expired", Some(&old_id))
                && has(all, "user.deactivated", None)
                && has(all, "token.reuse_detected", Some(&stolen_id))
        })
        .await;
    for r in &got {
        verify(&secret, r);
    }
    let find = |ty: &str| got.iter().find(|r| r.event_type() == ty).unwrap().json();
    assert_eq!(find("token.expiring")["data"]["days"], 7);
    assert_eq!(
        find("token.leaked")["data"]["url"],
        "https://paste.example/1"
    );
    let revoked = |id: &str| {
        got.iter()
            .find(|r| {
                r.event_type() == "token.revoked" && r.json()["data"]["token_id"] == json!(id)
            })
            .unwrap()
            .json()
    };
    assert_eq!(revoked(&leaky_id)["data"]["reason"], "leaked");
    assert_eq!(revoked(&stolen_id)["data"]["reason"], "reuse_detected");
    assert_eq!(find("token.regenerated")["data"]["generation"], 2);
    assert_eq!(
        find("user.deactivated")["data"]["user_id"],
        json!(member.id)
    );

    // Once each: later sweeps add nothing for the same expiry.
    s.post(
        "/api/v1/webhooks",
        &t.admin,
        json!({"url": rx.url("/marker"), "event_types": ["token.created"]}),
    )
    .await;
    s.mint(&t.admin, json!({"name": "marker", "read": true}))
        .await;
    let got = rx
        .wait("the marker", |all| all.iter().any(|r| r.path == "/marker"))
        .await;
    let count = |ty: &str| {
        got.iter()
            .filter(|r| r.path == "/life" && r.event_type() == ty)
            .count()
    };
    assert_eq!(count("token.expiring"), 1);
    assert_eq!(count("token.expired"), 1);
}
