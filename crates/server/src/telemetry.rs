//! Logs, traces and metrics.
//!
//! Logs are `tracing` events written to stderr as text or JSON lines; a line written while
//! a request is served carries its `request_id` and `trace_id`. Traces are `tracing` spans
//! bridged to OpenTelemetry: a `request` span per request (continuing a W3C `traceparent`)
//! with `verify`, `db` and `argon2` spans inside. Spans and metrics are exported over OTLP
//! (HTTP/protobuf) only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or a signal-specific endpoint)
//! is set; the standard `OTEL_*` variables configure the export (headers, timeout, service
//! name, resource attributes, sampler, batch and export intervals). Without an endpoint
//! nothing leaves the process, and trace ids still tie log lines together.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use chrono::{SecondsFormat, Utc};
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::{global, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanExporter};
use opentelemetry_sdk::Resource;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{filter_fn, FilterExt, FilterFn};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer};

/// Whether OpenTelemetry metric instruments record anything (a meter provider is set).
static METRICS_ON: AtomicBool = AtomicBool::new(false);

/// The providers set up at start; [`Telemetry::shutdown`] exports what is still queued.
pub struct Telemetry {
    tracer: SdkTracerProvider,
    meter: Option<SdkMeterProvider>,
}

impl Telemetry {
    /// Flushes and stops the exporters (call once, at exit).
    pub async fn shutdown(self) {
        let Telemetry { tracer, meter } = self;
        // The providers block while they flush; keep that off the async workers.
        let _ = tokio::task::spawn_blocking(move || {
            let _ = tracer.shutdown();
            if let Some(meter) = meter {
                let _ = meter.shutdown();
            }
        })
        .await;
    }
}

/// Whether metric instruments should be fed (someone collects them).
pub fn metrics_enabled() -> bool {
    METRICS_ON.load(Ordering::Relaxed)
}

/// Spans of Sigil's own crates go to OpenTelemetry (dependencies' spans do not).
/// What reaches the OpenTelemetry layer. Exporting: Sigil's spans (the inner ones,
/// `verify`, `db` and `argon2`, are debug spans) and its events from `info` up. Not
/// exporting: the `request` span alone, whose trace id the log lines carry and the
/// caller's `traceparent` continues; building the inner spans would cost every request
/// for nothing.
fn otel_filter(exporting: bool) -> FilterFn<impl Fn(&tracing::Metadata<'_>) -> bool> {
    filter_fn(move |m| {
        m.target().starts_with("sigil")
            && if m.is_span() {
                exporting || m.name() == REQUEST_SPAN
            } else {
                exporting && *m.level() <= Level::INFO
            }
    })
}

/// The name of the span of each request (crate::app).
pub const REQUEST_SPAN: &str = "request";

fn env_set(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.trim().is_empty())
}

/// OTLP export of one signal (`TRACES`, `METRICS`) is on when an endpoint is configured
/// and neither `OTEL_SDK_DISABLED=true` nor `OTEL_<SIGNAL>_EXPORTER=none` says otherwise.
fn export_enabled(signal: &str) -> bool {
    if std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return false;
    }
    if std::env::var(format!("OTEL_{signal}_EXPORTER"))
        .is_ok_and(|v| v.trim().eq_ignore_ascii_case("none"))
    {
        return false;
    }
    env_set("OTEL_EXPORTER_OTLP_ENDPOINT")
        || env_set(&format!("OTEL_EXPORTER_OTLP_{signal}_ENDPOINT"))
}

/// The resource: `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES`, `sigil` by default.
fn resource() -> Resource {
    let named = env_set("OTEL_SERVICE_NAME")
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| v.contains("service.name="));
    let builder = Resource::builder()
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if named {
        builder.build()
    } else {
        builder.with_service_name("sigil").build()
    }
}

/// Sets up logging (text or JSON lines on stderr, `SIGIL_LOG` overrides the level
/// filter), tracing and metrics. Call once, inside the Tokio runtime (exports run on it).
pub fn init(format: &str, level: &str) -> Telemetry {
    global::set_text_map_propagator(TraceContextPropagator::new());
    let resource = resource();
    let mut warnings = Vec::new();
    if std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL")
        .is_ok_and(|p| !p.trim().is_empty() && p.trim() != "http/protobuf")
    {
        warnings.push("only OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf is supported; using it");
    }

    let mut tracer = SdkTracerProvider::builder().with_resource(resource.clone());
    if export_enabled("TRACES") {
        match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .build()
        {
            Ok(exporter) => {
                tracer = tracer.with_span_processor(
                    opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
                        exporter,
                        opentelemetry_sdk::runtime::Tokio,
                    )
                    .build(),
                );
            }
            Err(_) => {
                warnings.push("the OTLP span exporter could not be built; spans are not exported")
            }
        }
    }
    let exporting = export_enabled("TRACES");
    let tracer = tracer.build();
    global::set_tracer_provider(tracer.clone());

    let mut meter = None;
    if export_enabled("METRICS") {
        match opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .build()
        {
            Ok(exporter) => {
                let reader =
                    opentelemetry_sdk::metrics::periodic_reader_with_async_runtime::PeriodicReader::builder(
                        exporter,
                        opentelemetry_sdk::runtime::Tokio,
                    )
                    .build();
                let provider = SdkMeterProvider::builder()
                    .with_resource(resource)
                    .with_reader(reader)
                    .build();
                global::set_meter_provider(provider.clone());
                METRICS_ON.store(true, Ordering::Relaxed);
                meter = Some(provider);
            }
            Err(_) => warnings
                .push("the OTLP metric exporter could not be built; metrics are not exported"),
        }
    }

    let env_filter = EnvFilter::try_from_env("SIGIL_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},sqlx=warn,sea_orm=warn,poem=warn")));
    // The request span is always seen by the log layer so that every line written during
    // a request (whatever its level filter) carries the request and trace ids.
    let log_filter = env_filter.or(filter_fn(|m| {
        m.is_span() && m.name() == REQUEST_SPAN && m.target().starts_with("sigil")
    }));
    let log_layer = if format == "json" {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines)
            .with_filter(log_filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false)
            .fmt_fields(TextFields)
            .with_filter(log_filter)
            .boxed()
    };
    let otel_layer = tracing_opentelemetry::layer()
        .with_tracer(tracer.tracer("sigil"))
        .with_filter(otel_filter(exporting));
    let subscriber = tracing_subscriber::registry()
        .with(otel_layer)
        .with(log_layer);
    let _ = tracing::subscriber::set_global_default(subscriber);
    for w in warnings {
        tracing::warn!("{w}");
    }
    Telemetry { tracer, meter }
}

/// What [`install_for_tests`] set up.
pub struct TestTelemetry {
    tracer: SdkTracerProvider,
    meter: SdkMeterProvider,
}

impl TestTelemetry {
    /// Exports the metrics collected so far to the test's metric exporter.
    pub fn flush_metrics(&self) {
        let _ = self.meter.force_flush();
    }

    /// Hands finished spans to the test's span exporter.
    pub fn flush_spans(&self) {
        let _ = self.tracer.force_flush();
    }
}

static TEST_TELEMETRY: OnceLock<TestTelemetry> = OnceLock::new();

/// Installs process-wide tracing and metrics that export to the given (in-memory)
/// exporters, for tests. Only the first call installs; later calls return the same
/// handle, so a test process shares one exporter pair (tests tell their spans apart by
/// trace id). Servers built afterwards record into these providers.
pub fn install_for_tests<S, M>(spans: S, metrics: M) -> &'static TestTelemetry
where
    S: SpanExporter + 'static,
    M: PushMetricExporter,
{
    TEST_TELEMETRY.get_or_init(|| {
        global::set_text_map_propagator(TraceContextPropagator::new());
        let tracer = SdkTracerProvider::builder()
            .with_simple_exporter(spans)
            .build();
        global::set_tracer_provider(tracer.clone());
        let meter = SdkMeterProvider::builder()
            .with_reader(opentelemetry_sdk::metrics::PeriodicReader::builder(metrics).build())
            .build();
        global::set_meter_provider(meter.clone());
        METRICS_ON.store(true, Ordering::Relaxed);
        let layer = tracing_opentelemetry::layer()
            .with_tracer(tracer.tracer("sigil"))
            .with_filter(otel_filter(true));
        let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer));
        TestTelemetry { tracer, meter }
    })
}

struct HeaderExtractor<'a>(&'a poem::http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Continues the caller's trace (W3C `traceparent`/`tracestate`) on `span` and returns the
/// span's trace id (hex), when tracing is set up.
pub fn continue_trace(span: &tracing::Span, headers: &poem::http::HeaderMap) -> Option<String> {
    let parent = global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    if parent.span().span_context().is_valid() {
        span.set_parent(parent);
    }
    let cx = span.context();
    let id = cx.span().span_context().trace_id();
    (id != opentelemetry::trace::TraceId::INVALID).then(|| id.to_string())
}

/// A path fit for logs: segments that look like a credential (a JWT, or any long opaque
/// value) are replaced. The query is never logged.
pub fn redact_path(path: &str) -> String {
    path.split('/')
        .map(|seg| if looks_secret(seg) { "{redacted}" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

/// A JWT (`eyJ…`), or a long value that is not an id.
pub fn looks_secret(seg: &str) -> bool {
    let is_id = seg.len() <= 40 && seg.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    seg.starts_with("eyJ") || (seg.len() > 64 && !is_id)
}

/// JSON lines: time, level, target, the fields of the enclosing spans (so `request_id`,
/// `trace_id`, `method`, `route` appear on every line of a request), then the event's
/// own fields, flat.
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            Utc::now()
                .to_rfc3339_opts(SecondsFormat::Micros, true)
                .into(),
        );
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        if let Some(scope) = ctx.event_scope() {
            let mut names = Vec::new();
            for span in scope.from_root() {
                names.push(span.name());
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<N>>() {
                    if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(fields.as_str()) {
                        line.extend(map.into_iter().filter(|(k, _)| !k.starts_with("otel.")));
                    }
                }
            }
            line.insert("span".into(), names.join(">").into());
        }
        let mut own = Map::new();
        event.record(&mut JsonVisitor(&mut own));
        line.extend(own);
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// `name=value` pairs like the default text format, without the `otel.*` fields that
/// only steer the span export.
struct TextFields;

impl<'w> FormatFields<'w> for TextFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: Writer<'w>,
        fields: R,
    ) -> std::fmt::Result {
        let mut visitor = TextVisitor {
            writer: &mut writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct TextVisitor<'a, 'w> {
    writer: &'a mut Writer<'w>,
    first: bool,
    result: std::fmt::Result,
}

impl Visit for TextVisitor<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let name = field.name();
        if self.result.is_err() || name.starts_with("otel.") {
            return;
        }
        let sep = if self.first { "" } else { " " };
        self.first = false;
        self.result = if name == "message" {
            write!(self.writer, "{sep}{value:?}")
        } else {
            write!(self.writer, "{sep}{name}={value:?}")
        };
    }
}

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_lose_credentials_but_keep_ids() {
        let id = "0190f7c2-7d1e-7a4b-9c3e-2b1d4e5f6a7b";
        assert_eq!(
            redact_path(&format!("/api/v1/tokens/{id}")),
            format!("/api/v1/tokens/{id}")
        );
        assert_eq!(
            redact_path("/api/v1/eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.sig/x"),
            "/api/v1/{redacted}/x"
        );
        assert_eq!(
            redact_path(&format!("/a/{}", "x".repeat(80))),
            "/a/{redacted}"
        );
        assert_eq!(
            redact_path("/api/v1/plugins/environment"),
            "/api/v1/plugins/environment"
        );
    }
}
