//! Prometheus text metrics: requests by route and status with latency histograms, plus
//! gauges read from the services (cache size, queued usage).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use poem::http::{Method, StatusCode};
use poem::{handler, Endpoint, EndpointExt, Response};

use crate::state::AppState;

const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Series {
    count: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

/// Series by (method, route, status).
type Requests = BTreeMap<(String, String, u16), Series>;

static REQUESTS: LazyLock<Mutex<Requests>> = LazyLock::new(Mutex::default);

/// Replaces ids in a path with `{id}` so a series stands for a route, not an object.
fn route_of(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            let looks_like_id =
                seg.len() >= 16 && seg.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
            if looks_like_id {
                "{id}"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

pub fn observe(method: &Method, path: &str, status: StatusCode, elapsed: Duration) {
    // Unknown paths are folded into one series so scanners cannot blow up cardinality.
    let route = if status == StatusCode::NOT_FOUND {
        "unmatched".to_owned()
    } else {
        route_of(path)
    };
    let secs = elapsed.as_secs_f64();
    if let Ok(mut map) = REQUESTS.lock() {
        let s = map
            .entry((method.to_string(), route, status.as_u16()))
            .or_default();
        s.count += 1;
        s.sum += secs;
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                s.buckets[i] += 1;
            }
        }
    }
}

fn render(state: &AppState) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP sigil_http_requests_total HTTP requests by method, route and status."
    );
    let _ = writeln!(out, "# TYPE sigil_http_requests_total counter");
    let mut hist = String::new();
    let _ = writeln!(
        hist,
        "# HELP sigil_http_request_duration_seconds Request latency."
    );
    let _ = writeln!(hist, "# TYPE sigil_http_request_duration_seconds histogram");
    if let Ok(map) = REQUESTS.lock() {
        for ((method, route, status), s) in map.iter() {
            let labels = format!(
                "method=\"{method}\",route=\"{}\",status=\"{status}\"",
                route.replace('"', "")
            );
            let _ = writeln!(out, "sigil_http_requests_total{{{labels}}} {}", s.count);
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    hist,
                    "sigil_http_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {}",
                    s.buckets[i]
                );
            }
            let _ = writeln!(
                hist,
                "sigil_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                hist,
                "sigil_http_request_duration_seconds_sum{{{labels}}} {}",
                s.sum
            );
            let _ = writeln!(
                hist,
                "sigil_http_request_duration_seconds_count{{{labels}}} {}",
                s.count
            );
        }
    }
    out.push_str(&hist);
    let _ = writeln!(
        out,
        "# HELP sigil_verification_cache_entries Verified credentials held in the cache."
    );
    let _ = writeln!(out, "# TYPE sigil_verification_cache_entries gauge");
    let _ = writeln!(
        out,
        "sigil_verification_cache_entries {}",
        state.verifier.cached_entries()
    );
    let _ = writeln!(
        out,
        "# HELP sigil_usage_pending_tokens Tokens with uses not yet flushed to the database."
    );
    let _ = writeln!(out, "# TYPE sigil_usage_pending_tokens gauge");
    let _ = writeln!(
        out,
        "sigil_usage_pending_tokens {}",
        state.usage.pending_tokens()
    );
    let _ = writeln!(
        out,
        "# HELP sigil_registry_version Version of the compiled scope registry."
    );
    let _ = writeln!(out, "# TYPE sigil_registry_version gauge");
    let _ = writeln!(out, "sigil_registry_version {}", state.registry.version());
    out
}

#[handler]
fn metrics_handler(state: poem::web::Data<&Arc<AppState>>) -> Response {
    Response::builder()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(render(&state))
}

pub fn endpoint(state: Arc<AppState>) -> impl Endpoint {
    metrics_handler.data(state)
}
