//! What the Redis-backed tests share: the Redis they need (failing loudly when it is not
//! there: CI starts one), unique key prefixes, fast health ticks, and a TCP proxy that can
//! be stopped to make Redis unreachable for one limiter only.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::AsyncCommands;
use sigil_limits::{Limiter, SharedSettings};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The Redis the tests run against.
pub const REDIS_ADDR: &str = "127.0.0.1:6379";

pub fn redis_url(addr: &str) -> String {
    format!("redis://{addr}")
}

/// A connection to the test Redis; panics with what to do when it is not running.
pub async fn redis() -> redis::aio::MultiplexedConnection {
    let url = redis_url(REDIS_ADDR);
    let attempt = async {
        let client = redis::Client::open(url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await?;
        Ok::<_, redis::RedisError>(conn)
    };
    match tokio::time::timeout(Duration::from_secs(3), attempt).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => panic!(
            "these tests need Redis at {url} (CI starts it; locally run `redis-server`): {e}"
        ),
        Err(_) => panic!(
            "these tests need Redis at {url} (CI starts it; locally run `redis-server`): no answer in 3 s"
        ),
    }
}

/// A key prefix no other test (or run) uses.
pub fn prefix() -> String {
    format!("sigil-test:{}", uuid::Uuid::new_v4())
}

/// Settings for tests: quick health ticks, so outages are seen fast.
pub fn settings(prefix: &str) -> SharedSettings {
    SharedSettings {
        key_prefix: prefix.to_owned(),
        timeout: Duration::from_millis(300),
        health_interval: Duration::from_millis(100),
        ..SharedSettings::default()
    }
}

pub async fn limiter(addr: &str, prefix: &str) -> Limiter {
    Limiter::with_redis(&redis_url(addr), settings(prefix))
        .await
        .expect("a valid Redis URL")
}

/// Waits up to `secs` for `what` to hold.
pub async fn eventually(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {secs} s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Deletes every key under `prefix`.
pub async fn cleanup(prefix: &str) {
    let mut conn = redis().await;
    let keys: Vec<String> = conn.keys(format!("{prefix}:*")).await.unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<i64, _> = conn.del(keys).await;
    }
}

/// A TCP proxy to the test Redis that can be stopped (closing every connection and the
/// port) and started again on the same port.
pub struct Proxy {
    pub port: u16,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    /// Listens on `port` (0: any free port).
    pub async fn start(port: u16) -> Self {
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", port)).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("cannot listen on port {port}: {e}"),
            }
        };
        let port = listener.local_addr().unwrap().port();
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let conns = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(REDIS_ADDR).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                conns.lock().unwrap().push(conn);
            }
        });
        tasks.lock().unwrap().push(accept);
        Self { port, tasks }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Closes the port and every connection through it.
    pub async fn stop(&self) {
        let tasks: Vec<_> = self.tasks.lock().unwrap().drain(..).collect();
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
    }
}
