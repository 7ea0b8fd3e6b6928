//! Resident memory of the verification cache: stores N tokens, verifies each once (every
//! verification a miss that fills one cache entry), and reports how much the process's
//! resident set grew per cached verification, beside a baseline measured the same way in
//! the same run: N entries of a plain `HashMap<[u8; 32], u64>` (key and a word, no
//! value). Use counts are flushed every 2 s during the fill, as the server does. N
//! defaults to 1,000,000 (`SIGIL_BENCH_CACHE_ENTRIES` changes it).
//!
//! Run: `cargo bench -p sigil-token --bench cache_memory`.

// Benchmark set-up fails loudly: a broken fixture must stop the run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sigil_token::verifier::{Attempt, CacheSettings, Client, Target, Transport};

/// A call of `me.get` (getCurrentUser) with `secret` in a header.
fn me_get(secret: &str, ip: Option<std::net::IpAddr>) -> Attempt<'_> {
    Attempt {
        credential: Some((secret, Transport::Header)),
        client: Client::At(ip),
        user_agent: None,
        target: Target::Call("me.get"),
    }
}

/// Resident set size of this process, in bytes (Linux).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

fn mib(bytes: f64) -> f64 {
    bytes / 1024.0 / 1024.0
}

fn main() {
    // `cargo bench` passes harness flags (e.g. --bench); this target takes none.
    let n: usize = std::env::var("SIGIL_BENCH_CACHE_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Entries must outlive the fill: no expiry, and no eviction during the run (the
        // capacity is approximate, so it gets some headroom).
        let cache = CacheSettings {
            max_entries: n as u64 + n as u64 / 20 + 1,
            ttl: Duration::from_secs(3600),
            ..CacheSettings::default()
        };
        let f = common::fixture(cache).await;
        let started = Instant::now();
        let secrets = common::store_tokens(&f, n).await;
        println!(
            "stored {n} tokens in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        // Warm everything that is not per entry (tenant, keys, registry, loader task).
        f.verifier
            .verify(me_get(&secrets[0], None))
            .await
            .unwrap();

        // Use counts are written every 2 s, as `sigil serve` does (SIGIL_USAGE_FLUSH_SECS):
        // what the process holds between flushes is not the cache's.
        let flusher = {
            let (usage, db) = (f.usage.clone(), f.db.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    let _ = usage.flush(&db).await;
                }
            })
        };
        let before = rss_bytes();
        let started = Instant::now();
        let secrets = std::sync::Arc::new(secrets);
        let workers = 64;
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..workers {
            let verifier = f.verifier.clone();
            let secrets = secrets.clone();
            tasks.spawn(async move {
                for s in secrets.iter().skip(w).step_by(workers) {
                    verifier
                        .verify(me_get(s, None))
                        .await
                        .expect("a stored token verifies");
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        let elapsed = started.elapsed().as_secs_f64();
        flusher.abort();
        let _ = f.usage.flush(&f.db).await;
        let entries = f.verifier.cached_entries();
        let after = rss_bytes();
        assert_eq!(entries, n as u64, "every verification stays cached");
        let per_entry = (after - before) as f64 / n as f64;

        let base_before = rss_bytes();
        let mut baseline: HashMap<[u8; 32], u64> = HashMap::new();
        for (i, s) in secrets.iter().enumerate() {
            baseline.insert(sigil_core::crypto::sha256(s.as_bytes()), i as u64);
        }
        let base_after = rss_bytes();
        let base_per_entry = (base_after.saturating_sub(base_before)) as f64 / n as f64;
        println!(
            "verified {n} distinct tokens (all cache misses) in {elapsed:.1} s = {:.0} verifications/s in-process",
            n as f64 / elapsed
        );
        println!(
            "cache: {entries} entries; resident memory {:.1} MiB before, {:.1} MiB after: {:.0} bytes per cached verification",
            mib(before as f64),
            mib(after as f64),
            per_entry
        );
        println!(
            "baseline: HashMap<[u8; 32], u64> with {n} entries: {base_per_entry:.0} bytes per entry; ratio {:.2}",
            per_entry / base_per_entry.max(1.0)
        );
        println!(
            "1,000,000 cached verifications: {:.0} MiB",
            mib(per_entry * 1e6)
        );
        drop(baseline);
    });
}
