//! Observability and audit: OpenTelemetry spans and metrics, the Prometheus endpoint, no
//! secret in logs, spans or error bodies, and one audit event per change.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry::{KeyValue, Value as OtelValue};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::InMemoryMetricExporter;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};
use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::{Resp, TestServer};

// ---------------------------------------------------------------------------------------
// In-memory OpenTelemetry exporters, shared by the whole test process.

struct Otel {
    spans: InMemorySpanExporter,
    metrics: InMemoryMetricExporter,
    handle: &'static sigil_server::telemetry::TestTelemetry,
}

/// Installs the process-wide test exporters (the only place that does). Spans of every
/// test of the process land in the same exporter: each test picks its own by trace id.
fn otel() -> &'static Otel {
    static OTEL: OnceLock<Otel> = OnceLock::new();
    OTEL.get_or_init(|| {
        let spans = InMemorySpanExporter::default();
        let metrics = InMemoryMetricExporter::default();
        let handle = sigil_server::telemetry::install_for_tests(spans.clone(), metrics.clone());
        Otel {
            spans,
            metrics,
            handle,
        }
    })
}

fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a OtelValue> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

fn attr_str(span: &SpanData, key: &str) -> Option<String> {
    attr(span, key).map(|v| v.as_str().into_owned())
}

/// Finished spans of one trace; waits (briefly) until `ready` accepts them.
async fn trace_spans(trace: TraceId, ready: impl Fn(&[SpanData]) -> bool) -> Vec<SpanData> {
    let o = otel();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        o.handle.flush_spans();
        let spans: Vec<SpanData> = o
            .spans
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .filter(|s| s.span_context.trace_id() == trace)
            .collect();
        if ready(&spans) || Instant::now() > deadline {
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn random_trace() -> (TraceId, SpanId) {
    let t = uuid::Uuid::new_v4().as_u128();
    let p = (uuid::Uuid::new_v4().as_u128() >> 64) as u64;
    (TraceId::from(t), SpanId::from(p.max(1)))
}

fn traceparent(trace: TraceId, parent: SpanId) -> String {
    format!("00-{trace}-{parent}-01")
}

async fn send(
    s: &TestServer,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Resp {
    let mut req = s.client.request(method, s.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    Resp::from(req.send().await.expect("request sent")).await
}

fn by_name<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|s| s.name == name).collect()
}

#[tokio::test]
async fn a_verified_call_leaves_spans_and_metrics() {
    let o = otel();
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let (_, secret) = s.mint(&t.admin, json!({"scope_set": "read-only"})).await;
    let bearer = format!("Bearer {secret}");
    let baseline = parse_prometheus(&prometheus(&s).await);

    // First use: a cache miss, which loads the token from the database.
    let (trace, parent) = random_trace();
    let request_id = format!("obs-{}", uuid::Uuid::new_v4().simple());
    let r = send(
        &s,
        Method::GET,
        "/api/v1/users/me",
        &[
            ("authorization", &bearer),
            ("traceparent", &traceparent(trace, parent)),
            ("x-request-id", &request_id),
        ],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-request-id"), Some(request_id.as_str()));
    let spans = trace_spans(trace, |s| {
        !by_name(s, "request").is_empty() && !by_name(s, "verify").is_empty()
    })
    .await;
    let requests = by_name(&spans, "request");
    assert_eq!(requests.len(), 1, "one request span: {spans:#?}");
    let request = requests[0];
    assert_eq!(
        request.parent_span_id, parent,
        "the request span continues the caller's traceparent"
    );
    assert_eq!(attr_str(request, "method").as_deref(), Some("GET"));
    assert_eq!(
        attr_str(request, "route").as_deref(),
        Some("/api/v1/users/me")
    );
    assert_eq!(attr(request, "status"), Some(&OtelValue::I64(200)));
    assert_eq!(
        attr_str(request, "request_id").as_deref(),
        Some(request_id.as_str())
    );
    assert_eq!(
        attr_str(request, "trace_id"),
        Some(trace.to_string()),
        "the trace id is a span field (and so on every log line)"
    );
    let verify = by_name(&spans, "verify");
    assert_eq!(verify.len(), 1, "{spans:#?}");
    let verify = verify[0];
    assert_eq!(verify.parent_span_id, request.span_context.span_id());
    assert_eq!(attr_str(verify, "outcome").as_deref(), Some("ok"));
    assert_eq!(attr_str(verify, "cache").as_deref(), Some("miss"));
    let db: Vec<_> = by_name(&spans, "db")
        .into_iter()
        .filter(|d| d.parent_span_id == verify.span_context.span_id())
        .collect();
    assert_eq!(db.len(), 1, "the cache miss loads the token: {spans:#?}");
    assert_eq!(attr_str(db[0], "op").as_deref(), Some("verification.load"));

    // Second use: a cache hit, no database work.
    let (trace2, parent2) = random_trace();
    let r = send(
        &s,
        Method::GET,
        "/api/v1/users/me",
        &[
            ("authorization", &bearer),
            ("traceparent", &traceparent(trace2, parent2)),
        ],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let spans2 = trace_spans(trace2, |s| {
        !by_name(s, "verify").is_empty() && !by_name(s, "request").is_empty()
    })
    .await;
    let verify2 = by_name(&spans2, "verify");
    assert_eq!(verify2.len(), 1, "{spans2:#?}");
    assert_eq!(attr_str(verify2[0], "cache").as_deref(), Some("hit"));
    assert_eq!(attr_str(verify2[0], "outcome").as_deref(), Some("ok"));
    assert!(by_name(&spans2, "db").is_empty(), "{spans2:#?}");
    // A generated request id comes back in the header and on the span.
    let generated = r.header("x-request-id").expect("request id").to_owned();
    assert_eq!(
        attr_str(by_name(&spans2, "request")[0], "request_id"),
        Some(generated)
    );

    // A refusal: outcome is the refusal code.
    let (trace3, parent3) = random_trace();
    let r = send(
        &s,
        Method::POST,
        "/api/v1/tokens",
        &[
            ("authorization", &bearer),
            ("traceparent", &traceparent(trace3, parent3)),
        ],
        Some(json!({"name": "x", "read": true})),
    )
    .await;
    r.expect(403, "method_not_in_scope");
    let spans3 = trace_spans(trace3, |s| {
        !by_name(s, "verify").is_empty() && !by_name(s, "request").is_empty()
    })
    .await;
    assert_eq!(
        attr_str(by_name(&spans3, "verify")[0], "outcome").as_deref(),
        Some("method_not_in_scope")
    );

    // Argon2 work has its span (a login verifies the password).
    let (trace4, parent4) = random_trace();
    let r = send(
        &s,
        Method::POST,
        "/api/v1/auth/login",
        &[("traceparent", &traceparent(trace4, parent4))],
        Some(json!({"tenant": "acme", "username": "admin", "password": t.admin_password})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let spans4 = trace_spans(trace4, |s| {
        !by_name(s, "argon2").is_empty() && !by_name(s, "request").is_empty()
    })
    .await;
    let argon = by_name(&spans4, "argon2");
    assert_eq!(argon.len(), 1, "{spans4:#?}");
    assert_eq!(attr_str(argon[0], "op").as_deref(), Some("verify"));
    let login = by_name(&spans4, "request")[0];
    assert_eq!(
        attr_str(login, "route").as_deref(),
        Some("/api/v1/auth/login")
    );

    // The same events as OpenTelemetry metrics (summed over the servers of this process).
    o.handle.flush_metrics();
    let exported = o.metrics.get_finished_metrics().unwrap();
    let latest = exported.last().expect("a metrics export");
    let metric = |name: &str| {
        latest
            .scope_metrics()
            .flat_map(|sm| sm.metrics())
            .find(|m| m.name() == name)
            .unwrap_or_else(|| panic!("metric {name} exported"))
    };
    fn has<'a>(mut attrs: impl Iterator<Item = &'a KeyValue>, key: &str, value: &str) -> bool {
        attrs.any(|kv| kv.key.as_str() == key && kv.value.as_str() == value)
    }
    match metric("sigil.verifications").data() {
        AggregatedMetrics::U64(MetricData::Sum(sum)) => {
            let ok = sum
                .data_points()
                .find(|p| has(p.attributes(), "outcome", "ok"))
                .expect("outcome=ok");
            assert!(ok.value() >= 2, "two verified calls: {}", ok.value());
            let refused = sum
                .data_points()
                .find(|p| has(p.attributes(), "outcome", "method_not_in_scope"))
                .expect("outcome=method_not_in_scope");
            assert!(refused.value() >= 1);
        }
        other => panic!("sigil.verifications is a u64 sum: {other:?}"),
    }
    match metric("sigil.verification.cache.hits").data() {
        AggregatedMetrics::U64(MetricData::Sum(sum)) => {
            assert!(sum.data_points().map(|p| p.value()).sum::<u64>() >= 1)
        }
        other => panic!("cache hits: {other:?}"),
    }
    match metric("http.server.request.duration").data() {
        AggregatedMetrics::F64(MetricData::Histogram(h)) => {
            let point = h
                .data_points()
                .find(|p| {
                    has(p.attributes(), "http.route", "/api/v1/users/me")
                        && p.attributes().any(|kv| {
                            kv.key.as_str() == "http.response.status_code"
                                && kv.value == OtelValue::I64(200)
                        })
                })
                .expect("a latency series for GET /api/v1/users/me 200");
            assert!(point.count() >= 2);
        }
        other => panic!("request duration is an f64 histogram: {other:?}"),
    }
    match metric("sigil.logins").data() {
        AggregatedMetrics::U64(MetricData::Sum(sum)) => {
            assert!(sum
                .data_points()
                .any(|p| has(p.attributes(), "outcome", "success") && p.value() >= 1));
        }
        other => panic!("logins: {other:?}"),
    }
    metric("db.client.connection.count");
    metric("sigil.usage.flush.lag");

    // And in this server's Prometheus text (counted since the token was minted).
    let samples = parse_prometheus(&prometheus(&s).await);
    let delta = |name: &str, labels: &[(&str, &str)]| {
        sample(&samples, name, labels) - sample(&baseline, name, labels)
    };
    assert_eq!(
        delta("sigil_verifications_total", &[("outcome", "ok")]),
        2.0
    );
    assert_eq!(
        delta(
            "sigil_verifications_total",
            &[("outcome", "method_not_in_scope")]
        ),
        1.0
    );
    assert_eq!(
        delta("sigil_verification_cache_hits_total", &[]),
        2.0,
        "the second call and the refused one were cache hits"
    );
    assert_eq!(delta("sigil_verification_cache_misses_total", &[]), 1.0);
}

// ---------------------------------------------------------------------------------------
// Prometheus text.

async fn prometheus(s: &TestServer) -> String {
    let r = s.client.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain")));
    r.text().await.unwrap()
}

/// A sample: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// Parses the text exposition format strictly: every non-comment line is
/// `name{labels} value` with a float value, and the HELP and TYPE lines of a family come
/// before its samples (and each family's samples are together).
fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut helped = BTreeSet::new();
    let mut typed: BTreeMap<String, String> = BTreeMap::new();
    let mut finished = BTreeSet::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        assert!(!line.trim().is_empty(), "no blank lines:\n{text}");
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap().to_owned();
            assert!(
                !typed.contains_key(&name) && helped.insert(name.clone()),
                "HELP comes first and once: {line}"
            );
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap().to_owned();
            let kind = parts.next().unwrap().to_owned();
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind.as_str()),
                "{line}"
            );
            assert!(helped.contains(&name), "HELP before TYPE: {line}");
            assert!(
                typed.insert(name.clone(), kind).is_none(),
                "one TYPE: {line}"
            );
            if let Some(prev) = current.replace(name) {
                finished.insert(prev);
            }
            continue;
        }
        assert!(
            !line.starts_with('#'),
            "only HELP and TYPE comments: {line}"
        );
        let (series, value) = line.rsplit_once(' ').expect("name and value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("float value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("closing brace");
                (name.to_owned(), parse_labels(body, line))
            }
            None => (series.to_owned(), BTreeMap::new()),
        };
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !name.starts_with(|c: char| c.is_ascii_digit()),
            "metric name: {line}"
        );
        let family = current.clone().expect("a TYPE before samples");
        let kind = &typed[&family];
        let belongs = if kind == "histogram" {
            ["_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| name == format!("{family}{suffix}"))
        } else {
            name == family
        };
        assert!(belongs, "{name} is a sample of the current family {family}");
        assert!(!finished.contains(&family), "family {family} is contiguous");
        if name.ends_with("_bucket") {
            assert!(labels.contains_key("le"), "buckets have le: {line}");
        }
        samples.push((name, labels, value));
    }
    samples
}

fn parse_labels(body: &str, line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("label in {line}"));
        assert!(
            key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "label name {key:?} in {line}"
        );
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => panic!("dangling escape in {line}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value in {line}"),
            }
        };
        assert!(
            labels.insert(key.to_owned(), value).is_none(),
            "duplicate label in {line}"
        );
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    labels
}

fn sample(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .unwrap_or_else(|| panic!("sample {name}{labels:?}"))
        .2
}

#[tokio::test]
async fn metrics_endpoint_is_prometheus_text_with_every_series() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let (token, secret) = s.mint(&t.admin, json!({"scope_set": "read-only"})).await;
    for _ in 0..3 {
        assert_eq!(s.get("/api/v1/users/me", &secret).await.status, 200);
    }
    let id = token["id"].as_str().unwrap();
    assert_eq!(
        s.get(&format!("/api/v1/tokens/{id}"), &secret).await.status,
        200
    );
    s.get("/api/v1/users/me", "garbage")
        .await
        .expect(401, "token_malformed");
    // A failed and a throttled login.
    s.call(
        Method::POST,
        "/api/v1/auth/login",
        None,
        Some(json!({"tenant": "acme", "username": "admin", "password": "wrong-password-1"})),
    )
    .await
    .expect(401, "invalid_credentials");
    s.flush_usage().await;

    let text = prometheus(&s).await;
    let samples = parse_prometheus(&text);
    for family in [
        "sigil_http_requests_total",
        "sigil_http_request_duration_seconds",
        "sigil_verifications_total",
        "sigil_verification_cache_hits_total",
        "sigil_verification_cache_misses_total",
        "sigil_verification_cache_entries",
        "sigil_usage_pending_tokens",
        "sigil_usage_flush_batches_total",
        "sigil_usage_flushed_tokens_total",
        "sigil_usage_flush_failures_total",
        "sigil_usage_flush_lag_seconds",
        "sigil_logins_total",
        "sigil_db_pool_connections",
        "sigil_db_pool_max_connections",
        "sigil_registry_version",
        "sigil_limits_shared",
        "sigil_limits_fallbacks_total",
        "sigil_limits_replicas",
        "sigil_limits_redis_round_trips_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{text}"
        );
    }
    // Requests by route and status, ids folded into the route.
    assert_eq!(
        sample(
            &samples,
            "sigil_http_requests_total",
            &[
                ("method", "GET"),
                ("route", "/api/v1/users/me"),
                ("status", "200")
            ]
        ),
        3.0
    );
    assert_eq!(
        sample(
            &samples,
            "sigil_http_requests_total",
            &[
                ("method", "GET"),
                ("route", "/api/v1/tokens/{id}"),
                ("status", "200")
            ]
        ),
        1.0
    );
    assert!(
        !text.contains(id),
        "object ids do not become series:\n{text}"
    );
    assert_eq!(
        sample(
            &samples,
            "sigil_http_request_duration_seconds_count",
            &[("route", "/api/v1/users/me"), ("status", "200")]
        ),
        3.0
    );
    assert_eq!(
        sample(
            &samples,
            "sigil_http_request_duration_seconds_bucket",
            &[
                ("route", "/api/v1/users/me"),
                ("status", "200"),
                ("le", "+Inf")
            ]
        ),
        3.0
    );
    // Verifications by outcome, cache use.
    assert!(sample(&samples, "sigil_verifications_total", &[("outcome", "ok")]) >= 4.0);
    assert_eq!(
        sample(
            &samples,
            "sigil_verifications_total",
            &[("outcome", "token_malformed")]
        ),
        1.0
    );
    assert!(sample(&samples, "sigil_verification_cache_hits_total", &[]) >= 3.0);
    assert!(sample(&samples, "sigil_verification_cache_misses_total", &[]) >= 1.0);
    // Usage flushes.
    assert!(sample(&samples, "sigil_usage_flush_batches_total", &[]) >= 1.0);
    assert!(sample(&samples, "sigil_usage_flushed_tokens_total", &[]) >= 1.0);
    assert_eq!(
        sample(&samples, "sigil_usage_flush_failures_total", &[]),
        0.0
    );
    assert!(sample(&samples, "sigil_usage_flush_lag_seconds", &[]) >= 0.0);
    // Logins (tenant_admin logged in once; one failure).
    assert!(sample(&samples, "sigil_logins_total", &[("outcome", "success")]) >= 1.0);
    assert_eq!(
        sample(&samples, "sigil_logins_total", &[("outcome", "failure")]),
        1.0
    );
    assert_eq!(
        sample(&samples, "sigil_logins_total", &[("outcome", "throttled")]),
        0.0
    );
    // The pool.
    let max = sample(&samples, "sigil_db_pool_max_connections", &[]);
    assert!(max >= 1.0);
    let in_use = sample(
        &samples,
        "sigil_db_pool_connections",
        &[("state", "in_use")],
    );
    let idle = sample(&samples, "sigil_db_pool_connections", &[("state", "idle")]);
    assert!(
        in_use + idle <= max && in_use + idle >= 1.0,
        "{in_use} + {idle} <= {max}"
    );

    // Throttled logins are counted apart from failures.
    let r = s
        .call(
            Method::PUT,
            "/api/v1/tenant/policy",
            Some(&t.admin),
            Some(
                json!({"allow_non_expiring_tokens": true, "session_lifetime_secs": 3600,
                   "allow_query_credentials": true, "ip_allowlist": [],
                   "require_password_confirmation": true, "password_confirmation_secs": 300,
                   "login_max_failures": 1, "login_lockout_secs": 60,
                   "max_tokens_per_user": 100, "key_overlap_secs": 0}),
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    for _ in 0..2 {
        s.call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"tenant": "acme", "username": "admin", "password": "wrong-password-2"})),
        )
        .await;
    }
    let samples = parse_prometheus(&prometheus(&s).await);
    let throttled = sample(&samples, "sigil_logins_total", &[("outcome", "throttled")]);
    let failed = sample(&samples, "sigil_logins_total", &[("outcome", "failure")]);
    assert!(throttled >= 1.0, "{throttled}");
    assert_eq!(failed + throttled, 3.0);
}

#[test]
fn the_prometheus_parser_rejects_broken_text() {
    let bad = [
        "sigil_x 1\n",                                                          // no TYPE
        "# HELP a x\n# TYPE a counter\na one\n",                                // not a float
        "# TYPE a counter\n# HELP a x\na 1\n",                                  // TYPE before HELP
        "# HELP a x\n# TYPE a counter\nb 1\n",                                  // foreign sample
        "# HELP a x\n# TYPE a counter\na{x=\"1} 1\n",                           // broken label
        "# HELP a x\n# TYPE a counter\n# HELP b y\n# TYPE b gauge\nb 1\na 1\n", // split family
    ];
    for text in bad {
        let result = std::panic::catch_unwind(|| parse_prometheus(text));
        assert!(result.is_err(), "accepted: {text:?}");
    }
    let good = "# HELP a x\n# TYPE a histogram\na_bucket{le=\"+Inf\",k=\"v\\\"\"} 2\na_sum 0.5\na_count 2\n";
    assert_eq!(parse_prometheus(good).len(), 3);
}

// ---------------------------------------------------------------------------------------
// No secret in logs, spans or error bodies.

/// What an exercise handed out and every error body it received.
struct Exercised {
    secrets: Vec<String>,
    error_bodies: Vec<String>,
}

/// Logs in (JSON, form, Basic, wrongly), mints a token, uses it in every transport,
/// gets refusals, regenerates it, introspects it and uses the operator token.
async fn exercise(base: &str, tenant: &str, admin_password: &str, operator: &str) -> Exercised {
    let client = reqwest::Client::new();
    let url = |p: &str| format!("{base}{p}");
    let mut error_bodies = Vec::new();
    let mut secrets = vec![admin_password.to_owned(), operator.to_owned()];
    let mut keep = |status: reqwest::StatusCode, text: String| {
        if status.as_u16() >= 400 {
            error_bodies.push(text.clone());
        }
        text
    };
    macro_rules! go {
        ($req:expr) => {{
            let r = $req.send().await.expect("request sent");
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            (status, keep(status, text))
        }};
    }

    // Wrong password, then form and HTTP Basic logins, then JSON.
    let wrong = format!("{admin_password}-not");
    secrets.push(wrong.clone());
    let (st, _) = go!(client
        .post(url("/api/v1/auth/login"))
        .json(&json!({"tenant": tenant, "username": "admin", "password": wrong})));
    assert_eq!(st, 401);
    let (st, body) = go!(client.post(url("/api/v1/auth/login")).form(&[
        ("tenant", tenant),
        ("username", "admin"),
        ("password", admin_password)
    ]));
    assert_eq!(st, 200, "{body}");
    secrets.push(
        serde_json::from_str::<Value>(&body).unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    let (st, body) = go!(client
        .post(url(&format!("/api/v1/auth/login?tenant={tenant}")))
        .basic_auth("admin", Some(admin_password))
        .json(&json!({})));
    assert_eq!(st, 200, "{body}");
    secrets.push(
        serde_json::from_str::<Value>(&body).unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    let (st, body) = go!(client
        .post(url("/api/v1/auth/login"))
        .json(&json!({"tenant": tenant, "username": "admin", "password": admin_password})));
    assert_eq!(st, 200, "{body}");
    let session = serde_json::from_str::<Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    secrets.push(session.clone());
    let (st, body) = go!(client
        .post(url("/api/v1/auth/confirm-password"))
        .bearer_auth(&session)
        .json(&json!({"password": admin_password})));
    assert_eq!(st, 200, "{body}");

    // Mint and use it: header, Auth-Token, ?session=, ?auth_token=.
    let expires = (chrono::Utc::now() + chrono::Duration::days(5)).to_rfc3339();
    let (st, body) = go!(client
        .post(url("/api/v1/tokens"))
        .bearer_auth(&session)
        .json(&json!({"name": "scan", "scope_set": "read-only", "expires_at": expires})));
    assert_eq!(st, 201, "{body}");
    let minted: Value = serde_json::from_str(&body).unwrap();
    let secret = minted["secret"].as_str().unwrap().to_owned();
    let id = minted["token"]["id"].as_str().unwrap().to_owned();
    secrets.push(secret.clone());
    let (st, _) = go!(client.get(url("/api/v1/users/me")).bearer_auth(&secret));
    assert_eq!(st, 200);
    let (st, _) = go!(client
        .get(url("/api/v1/users/me"))
        .header("Auth-Token", &secret));
    assert_eq!(st, 200);
    let (st, _) = go!(client.get(url(&format!("/api/v1/users/me?session={secret}"))));
    assert_eq!(st, 200);
    let (st, _) = go!(client.get(url(&format!("/api/v1/tokens?auth_token={secret}&limit=5"))));
    assert_eq!(st, 200);
    // Refused calls: out of scope, a tampered secret (in the query too), two credentials.
    let (st, _) = go!(client
        .post(url("/api/v1/tokens"))
        .bearer_auth(&secret)
        .json(&json!({"name": "no", "read": true})));
    assert_eq!(st, 403);
    let mut tampered = secret.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    secrets.push(tampered.clone());
    let (st, _) = go!(client.get(url("/api/v1/users/me")).bearer_auth(&tampered));
    assert_eq!(st, 401);
    let (st, _) = go!(client.get(url(&format!("/api/v1/users/me?auth_token={tampered}"))));
    assert_eq!(st, 401);
    let (st, _) = go!(client
        .get(url(&format!("/api/v1/users/me?session={tampered}")))
        .bearer_auth(&secret));
    assert_eq!(st, 400);
    // A credential where an id belongs, and in a wrongly typed parameter.
    let (st, _) = go!(client
        .get(url(&format!("/api/v1/tokens/{secret}")))
        .bearer_auth(&session));
    assert!(st.is_client_error());
    let (st, _) = go!(client
        .get(url(&format!("/api/v1/tokens?limit={secret}")))
        .bearer_auth(&session));
    assert!(st.is_client_error());
    // Introspection carries the token in the body.
    let (st, body) = go!(client
        .post(url("/api/v1/introspect"))
        .bearer_auth(&session)
        .json(&json!({"token": secret})));
    assert_eq!(st, 200, "{body}");
    // Forward auth with the credential in the original URI.
    let _ = go!(client
        .get(url("/api/v1/authorize"))
        .header("X-Original-Method", "GET")
        .header(
            "X-Original-URI",
            format!("/api/v1/users/me?auth_token={secret}")
        ));
    // Regenerate: the new secret works, the old one is refused.
    let (st, body) = go!(client
        .post(url(&format!("/api/v1/tokens/{id}/regenerate")))
        .bearer_auth(&session));
    assert_eq!(st, 200, "{body}");
    let renewed = serde_json::from_str::<Value>(&body).unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    secrets.push(renewed.clone());
    let (st, _) = go!(client.get(url("/api/v1/users/me")).bearer_auth(&renewed));
    assert_eq!(st, 200);
    let (st, _) = go!(client.get(url("/api/v1/users/me")).bearer_auth(&secret));
    assert_eq!(st, 401);
    // The operator.
    let (st, _) = go!(client.get(url("/api/v1/tenants")).bearer_auth(operator));
    assert_eq!(st, 200);
    let (st, _) = go!(client.get(url("/api/v1/users")).bearer_auth(operator));
    assert_eq!(st, 403);
    Exercised {
        secrets,
        error_bodies,
    }
}

/// Fails naming the secret when `text` holds any secret, a JWT part of one, or `eyJ`.
fn assert_no_secret(what: &str, text: &str, secrets: &[String]) {
    for secret in secrets {
        assert!(!text.contains(secret.as_str()), "{what} holds a secret");
        for part in secret.split('.').filter(|p| p.len() >= 12) {
            assert!(!text.contains(part), "{what} holds part of a token: {part}");
        }
    }
    assert!(!text.contains("eyJ"), "{what} holds a JWT");
    for (i, line) in text.lines().enumerate() {
        let lower = line.to_ascii_lowercase();
        assert!(
            !lower.contains("authorization") || !lower.contains("bearer "),
            "{what} line {i} holds an Authorization header: {line}"
        );
    }
}

fn span_text(span: &SpanData) -> String {
    let mut text = format!("{} {:?}", span.name, span.status);
    for kv in &span.attributes {
        text.push_str(&format!(" {}={}", kv.key, kv.value));
    }
    for event in span.events.events.iter() {
        text.push_str(&format!(" event:{}", event.name));
        for kv in &event.attributes {
            text.push_str(&format!(" {}={}", kv.key, kv.value));
        }
    }
    text
}

#[tokio::test]
async fn spans_and_error_bodies_hold_no_secret() {
    let o = otel();
    let s = TestServer::start().await;
    let (_, password) = s.create_tenant("acme").await;
    let operator = s.operator_token();
    let done = exercise(&s.base, "acme", &password, &operator).await;
    assert!(done.error_bodies.len() >= 8);
    for body in &done.error_bodies {
        assert_no_secret("an error body", body, &done.secrets);
    }
    o.handle.flush_spans();
    let spans = o.spans.get_finished_spans().unwrap();
    assert!(
        spans.iter().any(|s| s.name == "verify")
            && spans.iter().any(|s| s.name == "argon2")
            && spans.iter().any(|s| s.name == "request"),
        "the exercise was traced"
    );
    let all: String = spans.iter().map(span_text).collect::<Vec<_>>().join("\n");
    assert_no_secret("a span", &all, &done.secrets);
}

fn sigil_command(
    dir: &std::path::Path,
    database_url: &str,
    master_key: &str,
) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sigil"));
    cmd.env("SIGIL_DATABASE_URL", database_url)
        .env("SIGIL_MASTER_KEY", master_key)
        .env("SIGIL_DATA_DIR", dir)
        .env("SIGIL_LISTEN", "127.0.0.1:0")
        .env("SIGIL_LOG", "debug")
        .env("SIGIL_LOG_FORMAT", "json")
        .env("SIGIL_USAGE_FLUSH_SECS", "1")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
        .stdin(std::process::Stdio::piped());
    cmd
}

#[tokio::test]
async fn debug_json_logs_hold_no_secret_and_carry_request_and_trace_ids() {
    use std::io::Write;
    let dir = crate::harness::tempdir::TempDir::new();
    let database_url = crate::harness::fresh_database(&dir.0).await;
    let master_key = sigil_core::crypto::MasterKey::generate().to_base64();
    let password = format!("Adm1n-{}-pw", uuid::Uuid::new_v4().simple());

    // The CLI's own logs are scanned too.
    let mut cli = sigil_command(&dir.0, &database_url, &master_key);
    cli.args([
        "tenant",
        "create",
        "acme",
        "--init",
        "--admin-password-stdin",
    ])
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    let mut child = cli.spawn().expect("sigil tenant create");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut logs = String::from_utf8_lossy(&out.stderr).into_owned();
    let out = sigil_command(&dir.0, &database_url, &master_key)
        .args(["operator", "token", "--ttl", "10m"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    let operator = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    logs.push_str(&String::from_utf8_lossy(&out.stderr));

    // The server, its stderr (the log) and stdout (the banner) in files.
    let stdout_path = dir.0.join("stdout.txt");
    let stderr_path = dir.0.join("stderr.txt");
    let mut server = sigil_command(&dir.0, &database_url, &master_key)
        .arg("serve")
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("sigil serve");
    let deadline = Instant::now() + Duration::from_secs(60);
    let addr = loop {
        let text = std::fs::read_to_string(&stdout_path).unwrap_or_default();
        if let Some(rest) = text.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
        if let Some(status) = server.try_wait().unwrap() {
            panic!(
                "sigil serve exited ({status}): {}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "sigil serve did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let base = format!("http://{addr}");
    let traced = reqwest::Client::new()
        .get(format!("{base}/api/v1/users/me"))
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .header("x-request-id", "scan-request-1")
        .send()
        .await
        .unwrap();
    assert_eq!(traced.status(), 401);
    let done = exercise(&base, "acme", &password, &operator).await;

    // Stop it as an orchestrator would (SIGTERM), so the last lines are written.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = server.kill();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = server.wait();
    logs.push_str(&std::fs::read_to_string(&stderr_path).unwrap());

    assert!(
        logs.lines().count() > 20,
        "debug logs were written:\n{logs}"
    );
    assert_no_secret("the log", &logs, &done.secrets);
    for body in &done.error_bodies {
        assert_no_secret("an error body", body, &done.secrets);
    }
    // Every line is JSON; every line written during a request carries its ids.
    let mut request_lines = 0;
    for line in logs.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("a JSON line: {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
        if v["span"].as_str().is_some_and(|s| s.starts_with("request")) {
            request_lines += 1;
            assert!(v["request_id"].is_string(), "request id: {line}");
            assert!(
                v["trace_id"].as_str().is_some_and(|t| t.len() == 32),
                "trace id: {line}"
            );
            assert!(v["route"].is_string() && v["method"].is_string(), "{line}");
        }
    }
    assert!(request_lines >= 10, "request lines: {request_lines}");
    let traced_line = logs
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["request_id"] == "scan-request-1")
        .expect("the line of the traced request");
    assert_eq!(traced_line["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(traced_line["status"], 401);
}

// ---------------------------------------------------------------------------------------
// Audit.

const UA: &str = "sigil-audit-test/1.0";

/// A request with a known user agent.
async fn act(s: &TestServer, method: Method, path: &str, token: &str, body: Option<Value>) -> Resp {
    let mut req = s
        .client
        .request(method, s.url(path))
        .bearer_auth(token)
        .header("user-agent", UA);
    if let Some(b) = body {
        req = req.json(&b);
    }
    Resp::from(req.send().await.expect("request sent")).await
}

/// Every event visible to `token` with the given query, newest first (follows cursors).
async fn audit(s: &TestServer, token: &str, query: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/audit-events?limit=200&{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let r = s.get(&path, token).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        all.extend(r.body["items"].as_array().unwrap().iter().cloned());
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return all,
        }
    }
}

/// Watches one tenant's audit log (through the operator) for the events of each step.
struct AuditWatch<'a> {
    s: &'a TestServer,
    operator: String,
    tenant: String,
    seen: BTreeSet<String>,
}

impl<'a> AuditWatch<'a> {
    /// Events not seen before, oldest first.
    async fn fresh(&mut self) -> Vec<Value> {
        let all = audit(
            self.s,
            &self.operator,
            &format!("tenant_id={}", self.tenant),
        )
        .await;
        let mut new: Vec<Value> = all
            .into_iter()
            .filter(|e| self.seen.insert(e["id"].as_str().unwrap().to_owned()))
            .collect();
        new.reverse();
        new
    }

    /// Exactly one new event, with the given action; checks the common fields.
    async fn one(&mut self, action: &str, actor_id: Option<&str>, target_id: &str) -> Value {
        let new = self.fresh().await;
        assert_eq!(new.len(), 1, "{action}: exactly one event: {new:#?}");
        let e = new.into_iter().next().unwrap();
        assert_eq!(e["action"], action, "{e}");
        assert_eq!(e["tenant_id"], self.tenant.as_str(), "{e}");
        assert_eq!(
            e["actor_id"],
            actor_id.map_or(Value::Null, Value::from),
            "{e}"
        );
        assert_eq!(e["target_id"], target_id, "{e}");
        assert_eq!(e["client_ip"], "127.0.0.1", "{e}");
        assert_eq!(e["user_agent"], UA, "{e}");
        assert_eq!(e["occurrences"], 1, "{e}");
        let at = chrono::DateTime::parse_from_rfc3339(e["created_at"].as_str().unwrap()).unwrap();
        let age = chrono::Utc::now().signed_duration_since(at);
        assert!(
            age >= chrono::Duration::seconds(-2) && age < chrono::Duration::seconds(30),
            "{e}"
        );
        e
    }
}

async fn login_confirmed(s: &TestServer, tenant: &str, user: &str, password: &str) -> String {
    let token = s.login(tenant, user, password).await;
    let r = s
        .post(
            "/api/v1/auth/confirm-password",
            &token,
            json!({"password": password}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    token
}

fn token_id_of(s_body: &Value) -> String {
    s_body["token"]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn every_change_leaves_exactly_one_audit_event() {
    let s = TestServer::start().await;
    let op = s.operator_token();
    let admin_password = format!("Adm1n-{}-pw", uuid::Uuid::new_v4().simple());

    // createTenant (operator): filed under the new tenant.
    let r = act(
        &s,
        Method::POST,
        "/api/v1/tenants",
        &op,
        Some(json!({"slug": "acme", "admin_password": admin_password})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let tid = r.body["tenant"]["id"].as_str().unwrap().to_owned();
    let mut w = AuditWatch {
        s: &s,
        operator: op.clone(),
        tenant: tid.clone(),
        seen: BTreeSet::new(),
    };
    let e = w.one("tenant.create", None, &tid).await;
    assert_eq!(e["actor"], "operator");
    assert_eq!(e["target_type"], "tenant");
    assert_eq!(e["after"]["slug"], "acme");
    assert_eq!(e["credential_id"], Value::Null);
    let mut secrets = vec![admin_password.clone()];

    let admin = login_confirmed(&s, "acme", "admin", &admin_password).await;
    assert!(w.fresh().await.is_empty(), "logins are not changes");
    let me = s.get("/api/v1/users/me", &admin).await;
    let admin_id = me.body["user"]["id"].as_str().unwrap().to_owned();
    let admin_session = me.body["token_id"].as_str().unwrap().to_owned();
    let a = Some(admin_id.as_str());

    // Users.
    let bob_password = format!("Pw-{}-one", uuid::Uuid::new_v4().simple());
    secrets.push(bob_password.clone());
    let r = act(
        &s,
        Method::POST,
        "/api/v1/users",
        &admin,
        Some(json!({"username": "bob", "display_name": "Bob", "password": bob_password})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let bob = r.body["id"].as_str().unwrap().to_owned();
    let e = w.one("user.create", a, &bob).await;
    assert_eq!(e["actor"], "admin");
    assert_eq!(
        e["credential_id"],
        admin_session.as_str(),
        "the credential used"
    );
    assert_eq!(e["target_type"], "user");
    assert_eq!(e["before"], Value::Null);
    assert_eq!(e["after"]["username"], "bob");
    assert_eq!(e["after"]["role"], "member");

    let r = act(
        &s,
        Method::PATCH,
        &format!("/api/v1/users/{bob}"),
        &admin,
        Some(json!({"display_name": "Robert"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let e = w.one("user.update", a, &bob).await;
    assert_eq!(e["before"]["display_name"], "Bob");
    assert_eq!(e["after"]["display_name"], "Robert");

    let carol_password = format!("Pw-{}-two", uuid::Uuid::new_v4().simple());
    secrets.push(carol_password.clone());
    let r = act(
        &s,
        Method::POST,
        "/api/v1/users",
        &admin,
        Some(json!({"username": "carol", "password": carol_password})),
    )
    .await;
    let carol = r.body["id"].as_str().unwrap().to_owned();
    w.one("user.create", a, &carol).await;
    let r = act(
        &s,
        Method::POST,
        &format!("/api/v1/users/{carol}/deactivate"),
        &admin,
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let e = w.one("user.deactivate", a, &carol).await;
    assert_eq!(e["after"]["active"], false);
    let r = act(
        &s,
        Method::DELETE,
        &format!("/api/v1/users/{carol}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let e = w.one("user.delete", a, &carol).await;
    assert_eq!(e["before"]["username"], "carol");
    assert_eq!(e["after"], Value::Null);

    // Tokens.
    let expires = (chrono::Utc::now() + chrono::Duration::days(10)).to_rfc3339();
    let r = act(
        &s,
        Method::POST,
        "/api/v1/tokens",
        &admin,
        Some(json!({"name": "ci", "scope_set": "read-only", "expires_at": expires})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let tok = token_id_of(&r.body);
    secrets.push(r.body["secret"].as_str().unwrap().to_owned());
    let e = w.one("token.create", a, &tok).await;
    assert_eq!(e["target_type"], "token");
    assert_eq!(e["after"]["name"], "ci");
    assert_eq!(e["after"]["scope_set"], "read-only");
    assert_eq!(e["after"]["owner_id"], admin_id.as_str());

    let r = act(
        &s,
        Method::PATCH,
        &format!("/api/v1/tokens/{tok}"),
        &admin,
        Some(json!({"name": "ci-2", "enabled": false})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let e = w.one("token.update", a, &tok).await;
    assert_eq!(e["before"]["name"], "ci");
    assert_eq!(e["before"]["enabled"], true);
    assert_eq!(e["after"]["name"], "ci-2");
    assert_eq!(e["after"]["enabled"], false);

    let r = act(
        &s,
        Method::POST,
        &format!("/api/v1/tokens/{tok}/regenerate"),
        &admin,
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    secrets.push(r.body["secret"].as_str().unwrap().to_owned());
    let e = w.one("token.regenerate", a, &tok).await;
    assert_eq!(e["after"]["generation"], 2);

    let r = act(
        &s,
        Method::POST,
        &format!("/api/v1/tokens/{tok}/copy?name=ci-copy"),
        &admin,
        None,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let copy = token_id_of(&r.body);
    secrets.push(r.body["secret"].as_str().unwrap().to_owned());
    let e = w.one("token.copy", a, &copy).await;
    assert_eq!(e["before"]["source"], tok.as_str());
    assert_eq!(e["after"]["name"], "ci-copy");

    let r = act(
        &s,
        Method::DELETE,
        &format!("/api/v1/tokens/{copy}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let e = w.one("token.delete", a, &copy).await;
    assert_eq!(e["before"]["name"], "ci-copy");

    let r = act(
        &s,
        Method::POST,
        "/api/v1/tokens/bulk-delete",
        &admin,
        Some(json!({"ids": [tok]})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let e = w.one("token.delete", a, &tok).await;
    assert_eq!(e["before"]["name"], "ci-2");
    assert_eq!(e["before"]["bulk"], true);
    // A bulk delete of several tokens: one event per removed token.
    let mut ids = Vec::new();
    for name in ["b1", "b2"] {
        let r = act(
            &s,
            Method::POST,
            "/api/v1/tokens",
            &admin,
            Some(json!({"name": name, "read": true, "expires_at": expires})),
        )
        .await;
        secrets.push(r.body["secret"].as_str().unwrap().to_owned());
        ids.push(token_id_of(&r.body));
    }
    assert_eq!(w.fresh().await.len(), 2);
    let r = act(
        &s,
        Method::POST,
        "/api/v1/tokens/bulk-delete",
        &admin,
        Some(json!({"ids": ids})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let new = w.fresh().await;
    let targets: BTreeSet<&str> = new
        .iter()
        .map(|e| e["target_id"].as_str().unwrap())
        .collect();
    assert_eq!(new.len(), 2, "{new:#?}");
    assert_eq!(targets, ids.iter().map(String::as_str).collect());
    assert!(new.iter().all(|e| e["action"] == "token.delete"));
    // A refused change leaves nothing.
    let r = act(
        &s,
        Method::POST,
        "/api/v1/tokens/bulk-delete",
        &admin,
        Some(json!({"ids": [uuid::Uuid::new_v4()]})),
    )
    .await;
    assert!(r.status.is_client_error());
    assert!(w.fresh().await.is_empty(), "failed changes are not audited");

    // Scope sets.
    let r = act(
        &s,
        Method::POST,
        "/api/v1/scope-sets",
        &admin,
        Some(json!({"id": "readers", "name": "Readers", "methods": ["tokens.list"]})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let e = w.one("scope_set.create", a, "readers").await;
    assert_eq!(e["after"]["name"], "Readers");
    let r = act(
        &s,
        Method::PATCH,
        "/api/v1/scope-sets/readers",
        &admin,
        Some(json!({"name": "Token readers"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let e = w.one("scope_set.update", a, "readers").await;
    assert_eq!(e["before"]["name"], "Readers");
    assert_eq!(e["after"]["name"], "Token readers");
    let r = act(
        &s,
        Method::DELETE,
        "/api/v1/scope-sets/readers",
        &admin,
        None,
    )
    .await;
    assert!(r.status.is_success(), "{}", r.body);
    w.one("scope_set.delete", a, "readers").await;

    // A tenant plugin.
    let manifest = json!({"id": "crm", "name": "CRM", "version": "1.0.0", "methods": [
        {"id": "crm.contacts.list", "http": {"method": "GET", "path": "/crm/contacts"},
         "access": "read", "description": "list contacts"}]});
    let r = act(
        &s,
        Method::POST,
        "/api/v1/plugins",
        &admin,
        Some(json!({"manifest": manifest})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let e = w.one("plugin.register", a, "crm").await;
    assert_eq!(e["after"]["version"], "1.0.0");
    let r = act(&s, Method::DELETE, "/api/v1/plugins/crm", &admin, None).await;
    assert!(r.status.is_success(), "{}", r.body);
    let e = w.one("plugin.delete", a, "crm").await;
    assert_eq!(e["before"]["version"], "1.0.0");

    // Tenant policy and keys.
    let policy = s.get("/api/v1/tenant", &admin).await.body["policy"].clone();
    let mut changed = policy.clone();
    changed["max_tokens_per_user"] = json!(42);
    let r = act(
        &s,
        Method::PUT,
        "/api/v1/tenant/policy",
        &admin,
        Some(changed),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let e = w.one("tenant.update_policy", a, &tid).await;
    assert_eq!(
        e["before"]["max_tokens_per_user"],
        policy["max_tokens_per_user"]
    );
    assert_eq!(e["after"]["max_tokens_per_user"], 42);
    let r = act(
        &s,
        Method::POST,
        "/api/v1/tenant/signing-keys/rotate",
        &admin,
        Some(json!({"overlap_secs": 60})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let kid = r.body["kid"].as_str().unwrap().to_owned();
    let e = w.one("signing_key.rotate", a, &kid).await;
    assert_eq!(e["target_type"], "signing_key");
    assert_eq!(e["after"]["overlap_secs"], 60);

    // The current user (bob, a member).
    let bob_session = login_confirmed(&s, "acme", "bob", &bob_password).await;
    let r = act(
        &s,
        Method::PATCH,
        "/api/v1/users/me",
        &bob_session,
        Some(json!({"email": "bob@example.com"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let e = w.one("user.update", Some(&bob), &bob).await;
    assert_eq!(e["actor"], "bob");
    assert_eq!(e["before"]["email"], Value::Null);
    assert_eq!(e["after"]["email"], "bob@example.com");
    let new_password = format!("Pw-{}-three", uuid::Uuid::new_v4().simple());
    secrets.push(new_password.clone());
    let r = act(
        &s,
        Method::POST,
        "/api/v1/users/me/password",
        &bob_session,
        Some(json!({"current_password": bob_password, "new_password": new_password})),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    w.one("user.change_password", Some(&bob), &bob).await;

    // The operator again: update, then disable.
    let r = act(
        &s,
        Method::PATCH,
        &format!("/api/v1/tenants/{tid}"),
        &op,
        Some(json!({"name": "Acme Corp"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let e = w.one("tenant.update", None, &tid).await;
    assert_eq!(e["before"]["name"], "acme");
    assert_eq!(e["after"]["name"], "Acme Corp");
    // The tenant's admin sees what the operator did to the tenant.
    let seen = audit(&s, &admin, "action=tenant.update").await;
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(seen[0]["actor"], "operator");
    let r = act(
        &s,
        Method::POST,
        &format!("/api/v1/tenants/{tid}/disable"),
        &op,
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let e = w.one("tenant.disable", None, &tid).await;
    assert_eq!(e["before"]["enabled"], true);
    assert_eq!(e["after"]["enabled"], false);

    // No event holds a secret.
    let all = audit(&s, &op, &format!("tenant_id={tid}")).await;
    assert!(all.len() >= 25, "{}", all.len());
    let text = serde_json::to_string(&all).unwrap();
    assert_no_secret("the audit log", &text, &secrets);
    assert!(!text.contains("password\":\""), "no password field: {text}");
}

#[tokio::test]
async fn audit_filters_cursor_and_visibility() {
    let s = TestServer::start().await;
    let op = s.operator_token();
    let t = s.tenant_admin("acme").await;
    let other = s.tenant_admin("globex").await;
    let bob = s.user(&t, "bob", "member", "person").await;
    let tm = s.user(&t, "tina", "token_manager", "person").await;
    let me = s.get("/api/v1/users/me", &t.admin).await;
    let admin_id = me.body["user"]["id"].as_str().unwrap().to_owned();

    let t0 = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (admin_tok, _) = s
        .mint(&t.admin, json!({"name": "admin-own", "read": true}))
        .await;
    let admin_tok = admin_tok["id"].as_str().unwrap().to_owned();
    let (bob_tok, bob_secret) = s
        .mint(&bob.token, json!({"name": "bob-own", "read": true}))
        .await;
    let bob_tok = bob_tok["id"].as_str().unwrap().to_owned();
    let (bob_gone, _) = s
        .mint(&bob.token, json!({"name": "bob-gone", "read": true}))
        .await;
    let bob_gone = bob_gone["id"].as_str().unwrap().to_owned();
    s.delete(&format!("/api/v1/tokens/{bob_gone}"), &bob.token)
        .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let t1 = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    // The admin changes bob's token.
    let r = s
        .patch(
            &format!("/api/v1/tokens/{bob_tok}"),
            &t.admin,
            json!({"description": "looked at by admin"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    for i in 0..4 {
        s.mint(&t.admin, json!({"name": format!("n{i}"), "read": true}))
            .await;
    }

    let all = audit(&s, &t.admin, "").await;
    let actions = |v: &[Value]| {
        v.iter()
            .map(|e| e["action"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    // Newest first.
    let stamps: Vec<&str> = all.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let mut sorted = stamps.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(stamps, sorted);
    assert!(all.iter().all(|e| e["tenant_id"] == t.id.as_str()));

    // Cursor pagination walks the same events without repeats.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = "/api/v1/audit-events?limit=3".to_owned();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let r = s.get(&path, &t.admin).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let items = r.body["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        // The list envelope: `total` counts the filtered events, whatever the cursor.
        assert_eq!(r.body["total"], all.len(), "{}", r.body);
        assert_eq!(
            (r.body["offset"].as_u64(), r.body["limit"].as_u64()),
            (Some(0), Some(3))
        );
        paged.extend(items.iter().cloned());
        pages += 1;
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(pages < 50);
    }
    assert!(pages >= 4, "{pages} pages");
    assert_eq!(
        paged.iter().map(|e| &e["id"]).collect::<Vec<_>>(),
        all.iter().map(|e| &e["id"]).collect::<Vec<_>>()
    );

    // Offset pagination walks them too.
    let mut by_offset = Vec::new();
    for offset in (0..all.len() + 3).step_by(3) {
        let r = s
            .get(
                &format!("/api/v1/audit-events?limit=3&offset={offset}"),
                &t.admin,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["total"], all.len());
        assert_eq!(r.body["offset"], offset);
        by_offset.extend(r.body["items"].as_array().unwrap().iter().cloned());
    }
    assert_eq!(
        by_offset.iter().map(|e| &e["id"]).collect::<Vec<_>>(),
        all.iter().map(|e| &e["id"]).collect::<Vec<_>>()
    );

    // Filters.
    let by_bob = audit(&s, &t.admin, &format!("actor_id={}", bob.id)).await;
    assert_eq!(
        actions(&by_bob),
        vec!["token.delete", "token.create", "token.create"]
    );
    assert!(by_bob.iter().all(|e| e["actor_id"] == bob.id.as_str()));
    let on_bob_tok = audit(&s, &t.admin, &format!("target_id={bob_tok}")).await;
    assert_eq!(actions(&on_bob_tok), vec!["token.update", "token.create"]);
    let updates = audit(&s, &t.admin, "action=token.update").await;
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0]["actor_id"], admin_id.as_str());
    let q = |t: chrono::DateTime<chrono::Utc>| {
        t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            .replace('+', "%2B")
    };
    let window = audit(&s, &t.admin, &format!("since={}&until={}", q(t0), q(t1))).await;
    assert_eq!(
        actions(&window),
        vec![
            "token.delete",
            "token.create",
            "token.create",
            "token.create"
        ]
    );
    let after = audit(&s, &t.admin, &format!("since={}", q(t1))).await;
    assert_eq!(after.len(), 5, "{after:#?}");
    let before = audit(&s, &t.admin, &format!("until={}", q(t0))).await;
    assert!(before
        .iter()
        .all(|e| e["action"] == "user.create" || e["action"] == "tenant.create"));

    // A member sees events about their own tokens: what they did (even to a deleted
    // token) and what the admin did to them, nothing else.
    let mine = audit(&s, &bob.token, "").await;
    let mut targets: Vec<&str> = mine
        .iter()
        .map(|e| e["target_id"].as_str().unwrap())
        .collect();
    targets.sort_unstable();
    targets.dedup();
    let mut want = vec![bob_tok.as_str(), bob_gone.as_str()];
    want.sort_unstable();
    assert_eq!(targets, want, "{mine:#?}");
    assert_eq!(mine.len(), 4, "{mine:#?}");
    assert!(mine.iter().all(|e| e["target_type"] == "token"));
    assert!(!mine.iter().any(|e| e["target_id"] == admin_tok.as_str()));
    // A token manager sees token events of the tenant, not user administration.
    let managed = audit(&s, &tm.token, "").await;
    assert!(managed.iter().all(|e| e["target_type"] == "token"));
    assert!(managed.iter().any(|e| e["target_id"] == admin_tok.as_str()));
    assert!(managed.iter().any(|e| e["target_id"] == bob_tok.as_str()));

    // Tenants do not see each other; only the operator names a tenant.
    assert!(audit(&s, &other.admin, "")
        .await
        .iter()
        .all(|e| e["tenant_id"] == other.id.as_str()));
    s.get(
        &format!("/api/v1/audit-events?tenant_id={}", t.id),
        &other.admin,
    )
    .await
    .expect(403, "operator_only");
    let own = s
        .get(
            &format!("/api/v1/audit-events?tenant_id={}", t.id),
            &t.admin,
        )
        .await;
    assert_eq!(own.status, 200);
    let everything = audit(&s, &op, "").await;
    let tenants: BTreeSet<&str> = everything
        .iter()
        .filter_map(|e| e["tenant_id"].as_str())
        .collect();
    assert!(tenants.contains(t.id.as_str()) && tenants.contains(other.id.as_str()));
    let only = audit(&s, &op, &format!("tenant_id={}", other.id)).await;
    assert!(!only.is_empty() && only.iter().all(|e| e["tenant_id"] == other.id.as_str()));
    assert_eq!(
        audit(&s, &op, &format!("tenant_id={}", t.id)).await.len(),
        all.len()
    );
    let _ = bob_secret;
}

#[tokio::test]
async fn refused_verifications_are_aggregated_per_token_and_minute() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let bob = s.user(&t, "bob", "member", "person").await;
    let (token, secret) = s.mint(&bob.token, json!({"scope_set": "read-only"})).await;
    let id = token["id"].as_str().unwrap().to_owned();
    for _ in 0..6 {
        s.post(
            "/api/v1/tokens",
            &secret,
            json!({"name": "x", "read": true}),
        )
        .await
        .expect(403, "method_not_in_scope");
    }
    // The background task flushes refusals every second: poll until all six are in.
    let deadline = Instant::now() + Duration::from_secs(15);
    let rows = loop {
        let rows = audit(
            &s,
            &t.admin,
            &format!("action=verification.refused&target_id={id}"),
        )
        .await;
        let total: i64 = rows
            .iter()
            .map(|e| e["occurrences"].as_i64().unwrap())
            .sum();
        if total >= 6 || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let total: i64 = rows
        .iter()
        .map(|e| e["occurrences"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 6, "{rows:#?}");
    // One row per minute: six refusals fit in one row, or two at a minute boundary.
    assert!(rows.len() <= 2, "{rows:#?}");
    assert!(rows.iter().any(|e| e["occurrences"].as_i64().unwrap() > 1));
    for e in &rows {
        assert_eq!(e["after"]["code"], "method_not_in_scope");
        assert_eq!(e["tenant_id"], t.id.as_str());
        assert_eq!(e["credential_id"], id.as_str());
        assert_eq!(e["client_ip"], "127.0.0.1");
        assert_eq!(e["actor"], "anonymous");
    }
    // More refusals of the same minute join the row instead of adding one.
    let before: BTreeSet<String> = rows
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    let minute = |t: chrono::DateTime<chrono::Utc>| t.timestamp() / 60;
    let sent_from = chrono::Utc::now();
    s.post(
        "/api/v1/tokens",
        &secret,
        json!({"name": "x", "read": true}),
    )
    .await
    .expect(403, "method_not_in_scope");
    let sent_to = chrono::Utc::now();
    let row_minutes: BTreeSet<i64> = rows
        .iter()
        .map(|e| {
            minute(
                chrono::DateTime::parse_from_rfc3339(e["created_at"].as_str().unwrap())
                    .unwrap()
                    .to_utc(),
            )
        })
        .collect();
    let joins_a_row =
        minute(sent_from) == minute(sent_to) && row_minutes.contains(&minute(sent_from));
    let deadline = Instant::now() + Duration::from_secs(15);
    let rows = loop {
        let rows = audit(
            &s,
            &t.admin,
            &format!("action=verification.refused&target_id={id}"),
        )
        .await;
        let total: i64 = rows
            .iter()
            .map(|e| e["occurrences"].as_i64().unwrap())
            .sum();
        if total >= 7 || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let total: i64 = rows
        .iter()
        .map(|e| e["occurrences"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 7, "{rows:#?}");
    let new_rows = rows
        .iter()
        .filter(|e| !before.contains(e["id"].as_str().unwrap()))
        .count();
    assert!(new_rows <= 1 && rows.len() <= 3, "{rows:#?}");
    if joins_a_row {
        assert_eq!(
            new_rows, 0,
            "the refusal joined its minute's row: {rows:#?}"
        );
    }
    // The owner sees the refusals of their token.
    let mine = audit(&s, &bob.token, "action=verification.refused").await;
    assert_eq!(
        mine.iter()
            .map(|e| e["occurrences"].as_i64().unwrap())
            .sum::<i64>(),
        7
    );
}
