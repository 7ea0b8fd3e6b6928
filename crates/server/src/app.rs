//! Wiring: the OpenAPI service, docs, spec, console and the error model around them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use poem::endpoint::make_sync;
use poem::http::StatusCode;
use poem::web::Html;
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response, Route};
use poem_openapi::OpenApiService;
use tracing::field::Empty;
use tracing::Instrument;

use crate::api::{apis, Apis};
use crate::problem::from_poem_error;
use crate::state::AppState;
use crate::{console, metrics, request_check, spec, telemetry};

pub struct Built {
    pub endpoint: poem::endpoint::BoxEndpoint<'static, Response>,
    pub spec: serde_json::Value,
}

pub fn service(state: Arc<AppState>) -> OpenApiService<Apis, ()> {
    OpenApiService::new(apis(state), "Sigil", env!("CARGO_PKG_VERSION"))
        .description("Multi-tenant API tokens: tenants, users, scope registry, personal and application tokens, verification.")
}

/// The published spec (pretty JSON with a trailing newline), as checked in under openapi/.
pub fn spec_text(spec: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(spec).unwrap_or_default();
    text.push('\n');
    text
}

/// Builds the HTTP application and installs the built-in plugin into the registry.
pub async fn build(state: Arc<AppState>) -> sigil_core::Result<Built> {
    let service = service(state.clone());
    let raw = service.spec();
    let spec = spec::finish(&raw).map_err(sigil_core::Error::internal)?;
    let builtin = spec::builtin_plugin(&spec)
        .map_err(|errors| sigil_core::Error::internal(errors.join("; ")))?;
    state.start_registry(builtin).await?;
    let routes = crate::api::caller::RouteMethods::from_spec(&spec)
        .map_err(|errors| sigil_core::Error::internal(errors.join("; ")))?;
    let _ = state.route_methods.set(routes);
    let spec_json = spec_text(&spec);
    let docs_html = service.swagger_ui_html().replacen(&raw, &spec_json, 1);
    let spec_for_route = spec_json.clone();
    let body_limit = state.config.body_limit;
    let rules = Arc::new(request_check::RequestRules::from_spec(&spec));
    let for_log = state.clone();
    let route = Route::new()
        .nest("/", service)
        .at(
            "/openapi.json",
            make_sync(move |_| {
                Response::builder()
                    .content_type("application/json")
                    .body(spec_for_route.clone())
            }),
        )
        .at("/docs", make_sync(move |_| Html(docs_html.clone())))
        .at("/metrics", metrics::endpoint(state.clone()))
        .nest("/console", console::endpoint())
        .at(
            "/",
            make_sync(|_| poem::web::Redirect::see_other("/console/")),
        );
    // Every middleware awaits the rest of the chain boxed (`Box::pin(next.call(req))`):
    // inline, each layer's future held the whole chain below it, rustc's layout of nested
    // futures made that 40 kB, and it was copied several times per request.
    let endpoint = route
        .catch_all_error(|err| async move { from_poem_error(err) })
        .around(crate::usage_headers::write)
        .around({
            let paths = rules.clone();
            move |next, req| allow_methods(next, req, paths.clone())
        })
        .around(move |next, req| request_check::enforce(next, req, rules.clone()))
        .around(form_credential)
        .around(root_to_console)
        .around({
            let read_within = Duration::from_secs(state.config.idle_timeout_secs);
            move |next, req| limit_body(next, req, body_limit, read_within)
        })
        .around(limit_headers)
        .around(move |next, req| log_request(next, req, for_log.clone()))
        .data(state.clone())
        .boxed();
    Ok(Built { endpoint, spec })
}

/// Seed 000's `auth_token` POST parameter: a form body's `auth_token` is kept for the
/// credential lookup (the body itself is left as it was for the operation).
async fn form_credential<E: Endpoint>(next: Arc<E>, mut req: Request) -> poem::Result<Response> {
    let is_form = req.method() == poem::http::Method::POST
        && req
            .headers()
            .get(poem::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if is_form {
        // Runs inside `limit_body`, so the body is already bounded.
        let bytes = req.take_body().into_bytes().await.unwrap_or_default();
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let token = crate::auth::form_value(text, "auth_token").filter(|v| !v.is_empty());
            if let Some(token) = token {
                req.extensions_mut()
                    .insert(crate::auth::FormCredential(token));
            }
        }
        req.set_body(bytes);
    }
    Box::pin(next.call(req))
        .await
        .map(IntoResponse::into_response)
}

/// `/` leads people to the console (the API service is nested at the root, so this is
/// decided before routing).
async fn root_to_console<E: Endpoint>(next: Arc<E>, req: Request) -> poem::Result<Response> {
    if req.uri().path() == "/" {
        return Ok(poem::web::Redirect::see_other("/console/").into_response());
    }
    Box::pin(next.call(req))
        .await
        .map(IntoResponse::into_response)
}

/// The most header bytes (names and values) a request may carry. hyper accepts heads of
/// several hundred kilobytes; nothing Sigil reads needs more than a few.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Refuses requests whose headers add up to more than [`MAX_HEADER_BYTES`] with 431.
async fn limit_headers<E: Endpoint>(next: Arc<E>, req: Request) -> poem::Result<Response> {
    let size: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if size > MAX_HEADER_BYTES {
        // The body is left unread, so the connection cannot carry another request.
        return Ok(closing(crate::problem::problem_response(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            "the request headers are too large",
        )));
    }
    Box::pin(next.call(req))
        .await
        .map(IntoResponse::into_response)
}

/// Refuses bodies over the limit with 413 before any handler reads them, and reads every
/// other body whole before the request goes on. An operation that takes no body (or
/// refuses the request before reading it) would otherwise leave it unread, and hyper then
/// closes the keep-alive connection after the answer whenever the body had not arrived in
/// full by then, dropping the client's next request on it. A body that is not read (too
/// large, or not sent in time) gets an answer with `Connection: close`.
async fn limit_body<E: Endpoint>(
    next: Arc<E>,
    mut req: Request,
    limit: usize,
    read_within: Duration,
) -> poem::Result<Response> {
    if let Err(refused) = read_whole_body(&mut req, limit, read_within).await {
        return Ok(refused);
    }
    Box::pin(next.call(req))
        .await
        .map(IntoResponse::into_response)
}

/// Reads the request's body whole and puts it back; a body that cannot be read gets its
/// answer. (Apart from the middleware, so that the middleware awaits the rest of the
/// chain at one point only: each await point of a future holds a copy of its own.)
async fn read_whole_body(
    req: &mut Request,
    limit: usize,
    read_within: Duration,
) -> Result<(), Response> {
    let declared = req
        .headers()
        .get(poem::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(closing(too_large()));
    }
    if body_is_empty(req, declared) {
        return Ok(());
    }
    let expected = declared.unwrap_or(0);
    match read_body(req.take_body(), limit, expected, read_within).await {
        Ok(body) => {
            req.set_body(body);
            Ok(())
        }
        Err(BodyRead::TooLarge) => Err(closing(too_large())),
        Err(BodyRead::Failed) => Err(closing(crate::problem::problem_response(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the request body could not be read",
        ))),
        Err(BodyRead::Silent) => Err(closing(crate::problem::problem_response(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request body stopped arriving",
        ))),
    }
}

/// An HTTP/1 request without `Content-Length` and `Transfer-Encoding`, or with a length of
/// 0, has no body (RFC 9112, 6.3): nothing to read. HTTP/2 bodies need no such header.
fn body_is_empty(req: &Request, declared: Option<usize>) -> bool {
    use poem::http::{header, Version};
    let http1 = matches!(
        req.version(),
        Version::HTTP_09 | Version::HTTP_10 | Version::HTTP_11
    );
    declared == Some(0)
        || (http1 && declared.is_none() && !req.headers().contains_key(header::TRANSFER_ENCODING))
}

enum BodyRead {
    TooLarge,
    Failed,
    Silent,
}

/// Reads a body whole, up to `limit` bytes (`expected` of them announced), with at most
/// `silence` between its parts.
async fn read_body(
    body: poem::Body,
    limit: usize,
    expected: usize,
    silence: Duration,
) -> Result<Vec<u8>, BodyRead> {
    use tokio::io::AsyncReadExt;
    let mut reader = body.into_async_read();
    // Read straight into the body (no buffer on the stack: this future sits inside every
    // request's, which is moved as a whole).
    let mut data = Vec::with_capacity(expected.max(1024).min(limit.max(1)));
    loop {
        if data.len() == data.capacity() {
            data.reserve(8192.min(limit + 1 - data.len()).max(1));
        }
        let n = match tokio::time::timeout(silence, reader.read_buf(&mut data)).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) => return Err(BodyRead::Failed),
            Err(_) => return Err(BodyRead::Silent),
        };
        if n == 0 {
            return Ok(data);
        }
        if data.len() > limit {
            return Err(BodyRead::TooLarge);
        }
    }
}

fn too_large() -> Response {
    crate::problem::problem_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "the request body is too large",
    )
}

/// Tells the client that the connection ends with this answer.
fn closing(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        poem::http::header::CONNECTION,
        poem::http::HeaderValue::from_static("close"),
    );
    resp
}

/// Every 405 carries `Allow` with the methods the path supports (RFC 9110), taken from
/// the published spec.
async fn allow_methods<E: Endpoint>(
    next: Arc<E>,
    req: Request,
    paths: Arc<request_check::RequestRules>,
) -> poem::Result<Response> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let resp = Box::pin(next.call(req))
        .await
        .map(IntoResponse::into_response)?;
    if resp.status() != StatusCode::METHOD_NOT_ALLOWED {
        return Ok(resp);
    }
    let allowed = paths.allowed(&path).unwrap_or_default();
    let detail = if allowed.is_empty() {
        format!("{method} is not allowed on this resource")
    } else {
        format!("{method} is not allowed on this resource; it allows {allowed}")
    };
    let mut resp = crate::problem::problem_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        &detail,
    );
    if let Ok(v) = poem::http::HeaderValue::from_str(&allowed) {
        resp.headers_mut().insert(poem::http::header::ALLOW, v);
    }
    Ok(resp)
}

const X_REQUEST_ID: poem::http::HeaderName = poem::http::HeaderName::from_static("x-request-id");

/// The `request` span (continuing the caller's W3C trace) around everything a request
/// does, one log line per request (method, route, path without the query, status,
/// latency, request id, trace id) and the request metrics. The query string and headers
/// are never logged: they may hold a credential.
async fn log_request<E: Endpoint>(
    next: Arc<E>,
    req: Request,
    state: Arc<AppState>,
) -> poem::Result<Response> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let route = metrics::route_of(&path);
    let request_id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 64 && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .map(str::to_owned)
        // A thread-local CSPRNG: no system call per request.
        .unwrap_or_else(|| {
            uuid::Builder::from_random_bytes(rand::random())
                .into_uuid()
                .to_string()
        });
    let span = tracing::info_span!(
        "request",
        otel.kind = "server",
        otel.status_code = Empty,
        method = %method,
        route = %route,
        path = %telemetry::redact_path(&path),
        status = Empty,
        request_id = %request_id,
        trace_id = Empty,
    );
    if let Some(trace_id) = telemetry::continue_trace(&span, req.headers()) {
        span.record("trace_id", trace_id.as_str());
    }
    let mut resp = match Box::pin(next.call(req)).instrument(span.clone()).await {
        Ok(r) => r.into_response(),
        Err(err) => from_poem_error(err),
    };
    let status = resp.status();
    span.record("status", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    state
        .metrics
        .observe_request(&method, &path, status, started.elapsed());
    if let Ok(v) = request_id.parse() {
        resp.headers_mut().insert(X_REQUEST_ID, v);
    }
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    if status.is_server_error() {
        tracing::error!(parent: &span, status = status.as_u16(), elapsed_ms, "request failed");
    } else if status == StatusCode::NOT_FOUND || status.is_client_error() {
        tracing::info!(parent: &span, status = status.as_u16(), elapsed_ms, "request refused");
    } else {
        tracing::debug!(parent: &span, status = status.as_u16(), elapsed_ms, "request");
    }
    Ok(resp)
}
