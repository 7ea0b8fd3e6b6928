//! Wiring: the OpenAPI service, docs, spec, console and the error model around them.

use std::sync::Arc;
use std::time::Instant;

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
use crate::{console, metrics, spec, strict_json, telemetry};

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
    let spec_json = spec_text(&spec);
    let docs_html = service.swagger_ui_html().replacen(&raw, &spec_json, 1);
    let spec_for_route = spec_json.clone();
    let body_limit = state.config.body_limit;
    let body_types = Arc::new(strict_json::BodyTypes::from_spec(&spec));
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
    let endpoint = route
        .catch_all_error(|err| async move { from_poem_error(err) })
        .around(move |next, req| strict_json::enforce(next, req, body_types.clone()))
        .around(form_credential)
        .around(move |next, req| limit_body(next, req, body_limit))
        .around(limit_headers)
        .around(root_to_console)
        .around(move |next, req| log_request(next, req, for_log.clone()))
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
            let token = crate::auth::form_urlencoded_pairs(text)
                .into_iter()
                .find(|(k, v)| k == "auth_token" && !v.is_empty())
                .map(|(_, v)| v);
            if let Some(token) = token {
                req.extensions_mut()
                    .insert(crate::auth::FormCredential(token));
            }
        }
        req.set_body(bytes);
    }
    next.call(req).await.map(IntoResponse::into_response)
}

/// `/` leads people to the console (the API service is nested at the root, so this is
/// decided before routing).
async fn root_to_console<E: Endpoint>(next: Arc<E>, req: Request) -> poem::Result<Response> {
    if req.uri().path() == "/" {
        return Ok(poem::web::Redirect::see_other("/console/").into_response());
    }
    next.call(req).await.map(IntoResponse::into_response)
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
        return Ok(crate::problem::problem_response(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            "the request headers are too large",
        ));
    }
    next.call(req).await.map(IntoResponse::into_response)
}

/// Refuses bodies over the limit with 413 before any handler reads them; bodies without
/// a length (chunked) are read up to the limit.
async fn limit_body<E: Endpoint>(
    next: Arc<E>,
    mut req: Request,
    limit: usize,
) -> poem::Result<Response> {
    let too_large = || {
        crate::problem::problem_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is too large",
        )
    };
    let declared = req
        .headers()
        .get(poem::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    match declared {
        Some(len) if len > limit => return Ok(too_large()),
        Some(_) => {}
        None if req
            .headers()
            .contains_key(poem::http::header::TRANSFER_ENCODING) =>
        {
            match req.take_body().into_bytes_limit(limit).await {
                Ok(bytes) => req.set_body(bytes),
                Err(_) => return Ok(too_large()),
            }
        }
        None => {}
    }
    next.call(req).await.map(IntoResponse::into_response)
}

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
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 64 && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
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
    let mut resp = match next.call(req).instrument(span.clone()).await {
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
        resp.headers_mut().insert("x-request-id", v);
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
