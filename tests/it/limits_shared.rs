//! Usage limits shared by several replicas through Redis: a burst spread over three
//! replicas is admitted within the documented bound, and a replica cut off from Redis
//! falls back to its share of each limit, says so in `/readyz` and the metrics, and
//! counts through Redis again once it is back.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::harness::TestServer;

/// The Redis the tests share (CI starts one; `redis-server` locally).
const REDIS_ADDR: &str = "127.0.0.1:6379";

/// Fails loudly when Redis is not running, rather than passing without it.
async fn require_redis() {
    let reachable = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(REDIS_ADDR))
        .await
        .is_ok_and(|c| c.is_ok());
    assert!(
        reachable,
        "these tests need Redis at {REDIS_ADDR} (.ci/run starts it; locally run `redis-server`)"
    );
}

/// Three replicas on one database, sharing Redis at `urls[i]` under one key prefix of
/// their own (so other tests' replicas are not counted with them).
async fn replicas(urls: [String; 3]) -> Vec<TestServer> {
    let prefix = format!("sigil-it:{}", uuid::Uuid::new_v4().simple());
    let [first, second, third] = urls;
    let p = prefix.clone();
    let a = TestServer::start_with(move |c| {
        c.redis_url = first;
        c.redis_prefix = p;
    })
    .await;
    let master = a.state().config.master_key.clone();
    let mut all = vec![a];
    for url in [second, third] {
        let p = prefix.clone();
        let s = TestServer::start_on_with(&all[0].database_url, &master, move |c| {
            c.redis_url = url;
            c.redis_prefix = p;
        })
        .await;
        all.push(s);
    }
    // Each replica announces itself on its health ticks: wait until all count three.
    for s in &all {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while s.state().limiter.health().replicas < 3 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "replicas not counted"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    all
}

fn url(addr: &str) -> String {
    format!("redis://{addr}")
}

/// `n` concurrent calls of getCurrentUser, spread over the replicas; the number allowed.
async fn burst(servers: &[TestServer], secret: &str, n: usize) -> usize {
    let calls = (0..n).map(|i| {
        let s = &servers[i % servers.len()];
        let req = s
            .client
            .get(s.url("/api/v1/users/me"))
            .bearer_auth(secret)
            .send();
        async move { req.await.expect("sent").status() }
    });
    let statuses = futures::future::join_all(calls).await;
    for status in &statuses {
        assert!(
            *status == StatusCode::OK || *status == StatusCode::TOO_MANY_REQUESTS,
            "{status}"
        );
    }
    statuses.iter().filter(|s| **s == StatusCode::OK).count()
}

async fn readiness_limits(s: &TestServer) -> String {
    let r = s.call(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["limits"].as_str().unwrap_or_default().to_owned()
}

async fn metric(s: &TestServer, name: &str) -> f64 {
    let text = s
        .client
        .get(s.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
}

async fn wait_for_mode(s: &TestServer, mode: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while readiness_limits(s).await != mode {
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz never said limits: {mode}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn three_replicas_sharing_redis_admit_a_burst_within_the_bound() {
    if crate::harness::pg_base_url().is_none() {
        eprintln!("three replicas need PostgreSQL (SIGIL_TEST_DATABASE_URL); covered in the PostgreSQL run");
        return;
    }
    require_redis().await;
    let servers = replicas([url(REDIS_ADDR), url(REDIS_ADDR), url(REDIS_ADDR)]).await;
    for s in &servers {
        assert_eq!(readiness_limits(s).await, "shared");
    }
    let t = servers[0].tenant_admin("acme").await;

    // A limit of 30 in an hour (leases of one unit: the bound is exact): of 90 calls over
    // three replicas, 30 pass.
    let (_, limited) = servers[0]
        .mint(
            &t.admin,
            json!({
                "methods": ["me.get"],
                "rate_limits": [{"name": "hourly", "window_secs": 3600, "limit": 30}]
            }),
        )
        .await;
    assert_eq!(burst(&servers, &limited, 90).await, 30);
    for s in &servers {
        s.get("/api/v1/users/me", &limited)
            .await
            .expect(429, "rate_limited");
    }

    // 50 credits: the replicas together never spend more, and once the leases held in
    // the burst go back, exactly 50 calls have passed.
    let (_, paid) = servers[0]
        .mint(
            &t.admin,
            json!({"methods": ["me.get"], "credits": {"remaining": 50}}),
        )
        .await;
    let mut allowed = burst(&servers, &paid, 120).await;
    assert!(allowed <= 50, "{allowed} of 50 credits");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for s in servers.iter().cycle().take(120) {
        match s.get("/api/v1/users/me", &paid).await.status {
            StatusCode::OK => allowed += 1,
            status => assert_eq!(status, StatusCode::TOO_MANY_REQUESTS),
        }
    }
    assert_eq!(allowed, 50, "credits spent across replicas");
}

/// A TCP proxy to Redis that can be cut (closing the port and every connection through
/// it) and opened again on the same port: Redis becomes unreachable for one replica.
struct Proxy {
    port: u16,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(port: u16) -> Self {
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", port)).await {
                Ok(l) => break l,
                Err(e) => {
                    tries += 1;
                    assert!(tries < 100, "cannot listen on {port}: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        let port = listener.local_addr().expect("addr").port();
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let conns = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(REDIS_ADDR).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                conns.lock().expect("lock").push(conn);
            }
        });
        tasks.lock().expect("lock").push(accept);
        Self { port, tasks }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    async fn cut(&self) {
        let tasks: Vec<_> = self.tasks.lock().expect("lock").drain(..).collect();
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
    }
}

#[tokio::test]
async fn a_replica_cut_off_from_redis_falls_back_to_its_share_and_recovers() {
    if crate::harness::pg_base_url().is_none() {
        eprintln!("three replicas need PostgreSQL (SIGIL_TEST_DATABASE_URL); covered in the PostgreSQL run");
        return;
    }
    require_redis().await;
    let proxy = Proxy::start(0).await;
    let servers = replicas([url(&proxy.addr()), url(REDIS_ADDR), url(REDIS_ADDR)]).await;
    let cut_off = &servers[0];
    assert_eq!(readiness_limits(cut_off).await, "shared");
    assert_eq!(metric(cut_off, "sigil_limits_shared").await, 1.0);
    let t = servers[1].tenant_admin("acme").await;
    let (_, secret) = servers[1]
        .mint(
            &t.admin,
            json!({
                "methods": ["me.get"],
                "rate_limits": [{"name": "hourly", "window_secs": 3600, "limit": 30}]
            }),
        )
        .await;

    // Redis goes away for the first replica: it says so, and admits its share of the
    // limit (30 / 3 replicas) on its own.
    proxy.cut().await;
    wait_for_mode(cut_off, "per replica").await;
    assert_eq!(metric(cut_off, "sigil_limits_shared").await, 0.0);
    assert!(metric(cut_off, "sigil_limits_fallbacks_total").await >= 1.0);
    assert_eq!(burst(std::slice::from_ref(cut_off), &secret, 25).await, 10);
    // The others still share the whole limit through Redis.
    assert_eq!(burst(&servers[1..], &secret, 40).await, 30);

    // Redis is back: the first replica counts through it again, where the limit is used
    // up by the other two.
    let _proxy = Proxy::start(proxy.port).await;
    wait_for_mode(cut_off, "shared").await;
    assert_eq!(metric(cut_off, "sigil_limits_shared").await, 1.0);
    cut_off
        .get("/api/v1/users/me", &secret)
        .await
        .expect(429, "rate_limited");
}
