//! Metrics, two ways: Prometheus text at `/metrics` (rendered here, no exporter crate)
//! and OpenTelemetry instruments exported over OTLP when an endpoint is configured (see
//! [`crate::telemetry`]). Both read the same counters: requests by route and status with
//! latency histograms, verifications by outcome, verification cache hits and misses,
//! usage-flush batches and lag, logins by outcome, database pool use.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use opentelemetry::metrics::{Histogram, Meter};
use opentelemetry::{global, KeyValue};
use poem::http::{Method, StatusCode};
use poem::{handler, Endpoint, EndpointExt, Response};
use sigil_token::verifier::Outcome;

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

/// How a login ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginOutcome {
    Success,
    /// Wrong username, password or tenant, or a user who may not sign in.
    Failure,
    /// Refused by the login throttle.
    Throttled,
}

impl LoginOutcome {
    const ALL: [LoginOutcome; 3] = [Self::Success, Self::Failure, Self::Throttled];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Throttled => "throttled",
        }
    }
}

/// How a second-factor check ended (completeLogin, confirmPassword, disableTotp).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecondFactorOutcome {
    /// A right TOTP code.
    Success,
    /// A right recovery code (now spent).
    RecoveryCode,
    /// A wrong code.
    Failure,
    /// The code of a time step already used, or a spent recovery code.
    Reused,
    /// Refused by the login throttle.
    Throttled,
    /// A login challenge that is not Sigil's, or has expired.
    ChallengeInvalid,
}

impl SecondFactorOutcome {
    const ALL: [SecondFactorOutcome; 6] = [
        Self::Success,
        Self::RecoveryCode,
        Self::Failure,
        Self::Reused,
        Self::Throttled,
        Self::ChallengeInvalid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::RecoveryCode => "recovery_code",
            Self::Failure => "failure",
            Self::Reused => "reused",
            Self::Throttled => "throttled",
            Self::ChallengeInvalid => "challenge_invalid",
        }
    }
}

/// The server's own counters plus the OpenTelemetry instruments fed on each request.
pub struct Metrics {
    requests: Mutex<Requests>,
    logins: [AtomicU64; 3],
    duration: Histogram<f64>,
    login_counter: opentelemetry::metrics::Counter<u64>,
    second_factors: [AtomicU64; 6],
    second_factor_counter: opentelemetry::metrics::Counter<u64>,
}

fn meter() -> Meter {
    global::meter("sigil")
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let meter = meter();
        Self {
            requests: Mutex::default(),
            logins: Default::default(),
            duration: meter
                .f64_histogram("http.server.request.duration")
                .with_unit("s")
                .with_description("Duration of HTTP server requests.")
                .with_boundaries(BUCKETS.to_vec())
                .build(),
            login_counter: meter
                .u64_counter("sigil.logins")
                .with_description("Logins by outcome (success, failure, throttled).")
                .build(),
            second_factors: Default::default(),
            second_factor_counter: meter
                .u64_counter("sigil.second_factor_checks")
                .with_description("Second-factor checks by outcome.")
                .build(),
        }
    }

    pub fn observe_request(
        &self,
        method: &Method,
        path: &str,
        status: StatusCode,
        elapsed: Duration,
    ) {
        // Unknown paths are folded into one series so scanners cannot blow up cardinality.
        let route = if status == StatusCode::NOT_FOUND {
            "unmatched".to_owned()
        } else {
            route_of(path)
        };
        let secs = elapsed.as_secs_f64();
        if crate::telemetry::metrics_enabled() {
            self.duration.record(
                secs,
                &[
                    KeyValue::new("http.request.method", method.to_string()),
                    KeyValue::new("http.route", route.clone()),
                    KeyValue::new("http.response.status_code", i64::from(status.as_u16())),
                ],
            );
        }
        if let Ok(mut map) = self.requests.lock() {
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

    pub fn login(&self, outcome: LoginOutcome) {
        self.logins[outcome as usize].fetch_add(1, Ordering::Relaxed);
        if crate::telemetry::metrics_enabled() {
            self.login_counter
                .add(1, &[KeyValue::new("outcome", outcome.as_str())]);
        }
    }

    pub fn second_factor(&self, outcome: SecondFactorOutcome) {
        self.second_factors[outcome as usize].fetch_add(1, Ordering::Relaxed);
        if crate::telemetry::metrics_enabled() {
            self.second_factor_counter
                .add(1, &[KeyValue::new("outcome", outcome.as_str())]);
        }
    }

    /// Adds a server to the ones the OpenTelemetry observable instruments read (they are
    /// registered once per process and sum over its live servers: one in production,
    /// several in a test process).
    pub fn register_observers(&self, state: Weak<AppState>) {
        if !crate::telemetry::metrics_enabled() {
            return;
        }
        if let Ok(mut states) = STATES.lock() {
            states.retain(|s| s.strong_count() > 0);
            states.push(state);
        }
        OBSERVERS.get_or_init(register_instruments);
    }

    fn render(&self, state: &AppState) -> String {
        let mut out = String::new();
        family(
            &mut out,
            "sigil_http_requests_total",
            "HTTP requests by method, route and status.",
            "counter",
        );
        let mut hist = String::new();
        family(
            &mut hist,
            "sigil_http_request_duration_seconds",
            "HTTP request latency by method, route and status.",
            "histogram",
        );
        if let Ok(map) = self.requests.lock() {
            for ((method, route, status), s) in map.iter() {
                let labels = format!(
                    "method=\"{}\",route=\"{}\",status=\"{status}\"",
                    escape(method),
                    escape(route)
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

        let stats = state.verifier.stats();
        family(
            &mut out,
            "sigil_verifications_total",
            "Credential verifications by outcome (ok or the refusal code).",
            "counter",
        );
        for (outcome, n) in stats.outcomes() {
            let _ = writeln!(
                out,
                "sigil_verifications_total{{outcome=\"{}\"}} {n}",
                outcome.label()
            );
        }
        sample(
            &mut out,
            "sigil_verification_cache_hits_total",
            "Verifications answered from the cache.",
            "counter",
            stats.cache_hits(),
        );
        sample(
            &mut out,
            "sigil_verification_cache_misses_total",
            "Verifications that had to load the token.",
            "counter",
            stats.cache_misses(),
        );
        sample(
            &mut out,
            "sigil_verification_cache_entries",
            "Verified credentials held in the cache.",
            "gauge",
            state.verifier.cached_entries(),
        );

        let limits = state.limiter.health();
        sample(
            &mut out,
            "sigil_limits_shared",
            "1 while usage limits are counted through Redis; 0 in the process or, with Redis configured, while it is unreachable (each replica enforces its share).",
            "gauge",
            u64::from(limits.shared),
        );
        sample(
            &mut out,
            "sigil_limits_fallbacks_total",
            "Times this replica fell back to its own share of the limits (Redis unreachable).",
            "counter",
            limits.fallbacks,
        );
        sample(
            &mut out,
            "sigil_limits_replicas",
            "Replicas sharing the usage limits, as last counted through Redis (1 without it).",
            "gauge",
            u64::from(limits.replicas),
        );
        sample(
            &mut out,
            "sigil_limits_redis_round_trips_total",
            "Redis scripts run for usage limits, health checks included.",
            "counter",
            state.limiter.round_trips(),
        );

        let usage = state.usage.stats();
        sample(
            &mut out,
            "sigil_usage_pending_tokens",
            "Tokens with uses not yet flushed to the database.",
            "gauge",
            state.usage.pending_tokens(),
        );
        sample(
            &mut out,
            "sigil_usage_flush_batches_total",
            "Usage batches written to the database.",
            "counter",
            usage.batches.load(Ordering::Relaxed),
        );
        sample(
            &mut out,
            "sigil_usage_flushed_tokens_total",
            "Token rows updated by usage batches.",
            "counter",
            usage.tokens.load(Ordering::Relaxed),
        );
        sample(
            &mut out,
            "sigil_usage_flush_failures_total",
            "Usage flushes that failed (their counts are retried).",
            "counter",
            usage.failures.load(Ordering::Relaxed),
        );
        sample(
            &mut out,
            "sigil_usage_flush_lag_seconds",
            "Age of the oldest token use not yet flushed (0 when none).",
            "gauge",
            usage.lag_secs(),
        );

        family(
            &mut out,
            "sigil_logins_total",
            "Logins by outcome: success, failure (wrong credentials or not allowed), throttled.",
            "counter",
        );
        for outcome in LoginOutcome::ALL {
            let _ = writeln!(
                out,
                "sigil_logins_total{{outcome=\"{}\"}} {}",
                outcome.as_str(),
                self.logins[outcome as usize].load(Ordering::Relaxed)
            );
        }

        family(
            &mut out,
            "sigil_second_factor_checks_total",
            "Second-factor checks by outcome: success, recovery_code, failure, reused, throttled, challenge_invalid.",
            "counter",
        );
        for outcome in SecondFactorOutcome::ALL {
            let _ = writeln!(
                out,
                "sigil_second_factor_checks_total{{outcome=\"{}\"}} {}",
                outcome.as_str(),
                self.second_factors[outcome as usize].load(Ordering::Relaxed)
            );
        }

        if let Some(pool) = sigil_core::db::pool_stats(&state.db) {
            family(
                &mut out,
                "sigil_db_pool_connections",
                "Database pool connections by state.",
                "gauge",
            );
            let _ = writeln!(
                out,
                "sigil_db_pool_connections{{state=\"idle\"}} {}",
                pool.idle
            );
            let _ = writeln!(
                out,
                "sigil_db_pool_connections{{state=\"in_use\"}} {}",
                pool.in_use()
            );
            sample(
                &mut out,
                "sigil_db_pool_max_connections",
                "Largest size of the database pool.",
                "gauge",
                pool.max,
            );
        }
        sample(
            &mut out,
            "sigil_registry_version",
            "Version of the compiled scope registry.",
            "gauge",
            state.registry.version(),
        );
        out
    }
}

/// Servers whose counters the observable instruments report.
static STATES: Mutex<Vec<Weak<AppState>>> = Mutex::new(Vec::new());
static OBSERVERS: OnceLock<()> = OnceLock::new();

/// Calls `f` with every live server.
fn each_state(mut f: impl FnMut(&AppState)) {
    let states: Vec<Arc<AppState>> = match STATES.lock() {
        Ok(states) => states.iter().filter_map(Weak::upgrade).collect(),
        Err(_) => return,
    };
    for state in &states {
        f(state);
    }
}

/// Sums `value` over the live servers.
fn total<T: std::iter::Sum<T>>(value: impl Fn(&AppState) -> T) -> T {
    let mut all = Vec::new();
    each_state(|s| all.push(value(s)));
    all.into_iter().sum()
}

fn register_instruments() {
    let meter = meter();
    meter
        .u64_observable_counter("sigil.verifications")
        .with_description("Credential verifications by outcome (ok or the refusal code).")
        .with_callback(|o| {
            let mut counts = [0u64; Outcome::COUNT];
            each_state(|s| {
                for (slot, (_, n)) in counts.iter_mut().zip(s.verifier.stats().outcomes()) {
                    *slot += n;
                }
            });
            for (outcome, n) in Outcome::all().zip(counts) {
                o.observe(n, &[KeyValue::new("outcome", outcome.label())]);
            }
        })
        .build();
    meter
        .u64_observable_counter("sigil.verification.cache.hits")
        .with_description("Verifications answered from the cache.")
        .with_callback(|o| o.observe(total(|s| s.verifier.stats().cache_hits()), &[]))
        .build();
    meter
        .u64_observable_counter("sigil.verification.cache.misses")
        .with_description("Verifications that had to load the token.")
        .with_callback(|o| o.observe(total(|s| s.verifier.stats().cache_misses()), &[]))
        .build();
    meter
        .u64_observable_gauge("sigil.verification.cache.entries")
        .with_description("Verified credentials held in the cache.")
        .with_callback(|o| o.observe(total(|s| s.verifier.cached_entries()), &[]))
        .build();
    meter
        .u64_observable_gauge("sigil.limits.shared")
        .with_description("1 while usage limits are counted through Redis.")
        .with_callback(|o| o.observe(total(|s| u64::from(s.limiter.health().shared)), &[]))
        .build();
    meter
        .u64_observable_counter("sigil.limits.fallbacks")
        .with_description("Times a replica fell back to its own share of the limits.")
        .with_callback(|o| o.observe(total(|s| s.limiter.health().fallbacks), &[]))
        .build();
    meter
        .u64_observable_counter("sigil.usage.flush.batches")
        .with_description("Usage batches written to the database.")
        .with_callback(|o| {
            o.observe(
                total(|s| s.usage.stats().batches.load(Ordering::Relaxed)),
                &[],
            )
        })
        .build();
    meter
        .u64_observable_counter("sigil.usage.flush.failures")
        .with_description("Usage flushes that failed (retried later).")
        .with_callback(|o| {
            o.observe(
                total(|s| s.usage.stats().failures.load(Ordering::Relaxed)),
                &[],
            )
        })
        .build();
    meter
        .f64_observable_gauge("sigil.usage.flush.lag")
        .with_unit("s")
        .with_description("Age of the oldest token use not yet written.")
        .with_callback(|o| {
            let mut lag: f64 = 0.0;
            each_state(|s| lag = lag.max(s.usage.stats().lag_secs()));
            o.observe(lag, &[]);
        })
        .build();
    meter
        .u64_observable_gauge("sigil.usage.pending")
        .with_description("Tokens with uses not yet written.")
        .with_callback(|o| o.observe(total(|s| s.usage.pending_tokens() as u64), &[]))
        .build();
    meter
        .u64_observable_gauge("db.client.connection.count")
        .with_description("Database pool connections by state (idle, used).")
        .with_callback(|o| {
            let (mut idle, mut used) = (0u64, 0u64);
            each_state(|s| {
                if let Some(pool) = sigil_core::db::pool_stats(&s.db) {
                    idle += u64::from(pool.idle);
                    used += u64::from(pool.in_use());
                }
            });
            o.observe(idle, &[KeyValue::new("state", "idle")]);
            o.observe(used, &[KeyValue::new("state", "used")]);
        })
        .build();
    meter
        .u64_observable_gauge("db.client.connection.max")
        .with_description("Largest size of the database pool.")
        .with_callback(|o| {
            o.observe(
                total(|s| sigil_core::db::pool_stats(&s.db).map_or(0, |p| u64::from(p.max))),
                &[],
            )
        })
        .build();
}

fn family(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, help: &str, kind: &str, value: impl std::fmt::Display) {
    family(out, name, help, kind);
    let _ = writeln!(out, "{name} {value}");
}

/// A label value in the exposition format.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Replaces ids in a path with `{id}` (and anything that looks like a credential with
/// `{redacted}`) so a series stands for a route, not an object.
pub fn route_of(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            let looks_like_id =
                seg.len() >= 16 && seg.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
            if looks_like_id {
                "{id}"
            } else if crate::telemetry::looks_secret(seg) {
                "{redacted}"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[handler]
fn metrics_handler(state: poem::web::Data<&Arc<AppState>>) -> Response {
    Response::builder()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render(&state))
}

pub fn endpoint(state: Arc<AppState>) -> impl Endpoint {
    metrics_handler.data(state)
}
