//! The one error model: every failure is RFC 7807 problem JSON with a stable `code`. Domain
//! errors are mapped here, once; a 5xx never carries internal text (it is logged instead).

use poem::http::StatusCode;
use poem::{IntoResponse, Response};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};
use sigil_core::Error;
use sigil_token::verifier::{RefusalKind, RefusalStatus};

#[derive(Clone, Debug, Object, serde::Serialize)]
#[oai(rename = "Problem")]
pub struct Problem {
    /// A URI naming the problem type.
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable, machine-readable reason (e.g. `token_expired`).
    pub code: String,
    /// The refused request values, each with the field it is in (422 answers list at
    /// least one; other answers none, so the field is not required).
    #[oai(default, skip_serializing_if_is_empty)]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldProblem>,
    /// `usage_exceeded`: when the token's credits are refilled next (absent when they are
    /// never refilled).
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_refill_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// One refused request value.
#[derive(Clone, Debug, Object, serde::Serialize, PartialEq, Eq)]
pub struct FieldProblem {
    /// Where the value is: a body field as a path (`scope.methods[2]`), or the name of
    /// the query, path or header parameter.
    pub field: String,
    /// What is wrong with it, and what would be right (allowed values, bounds, format).
    pub message: String,
}

impl From<sigil_core::FieldError> for FieldProblem {
    fn from(e: sigil_core::FieldError) -> Self {
        Self {
            field: e.field,
            message: e.message,
        }
    }
}

impl Problem {
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Self {
        Self {
            type_: format!("https://sigil.dev/problems/{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            code: code.to_owned(),
            errors: Vec::new(),
            next_refill_at: None,
        }
    }

    pub fn with_errors(mut self, errors: Vec<FieldProblem>) -> Self {
        self.errors = errors;
        self
    }

    /// 422 for refused request values, each named by its field.
    pub fn unprocessable(code: &str, detail: impl Into<String>, errors: Vec<FieldProblem>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail).with_errors(errors)
    }
}

/// Every error an operation can answer; documented on every operation of the spec.
#[derive(ApiResponse, Debug)]
#[oai(bad_request_handler = "bad_request")]
pub enum ApiError {
    /// The request is malformed.
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    /// The credential is missing or refused. A refusal of verification also names its
    /// code in `X-Sigil-Refusal`, for proxies that read only the headers.
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(
        Json<Problem>,
        #[oai(header = "WWW-Authenticate")] String,
        #[oai(header = "X-Sigil-Refusal")] Option<String>,
    ),
    /// The caller may not do this. A refusal of verification names its code in
    /// `X-Sigil-Refusal`; forward auth for nginx (`X-Sigil-Auth-Proxy: nginx`) answers a
    /// usage limit this way too, with the headers of the 429 it stands for.
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(
        Json<Problem>,
        #[oai(header = "X-Sigil-Refusal")] Option<String>,
        #[oai(header = "Retry-After")] Option<u64>,
        #[oai(header = "RateLimit-Policy")] Option<String>,
        #[oai(header = "RateLimit")] Option<String>,
    ),
    /// No such object (or it belongs to another tenant).
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
    /// The change conflicts with the current state.
    #[oai(status = 409, content_type = "application/problem+json")]
    Conflict(Json<Problem>),
    /// The request body is too large.
    #[oai(status = 413, content_type = "application/problem+json")]
    PayloadTooLarge(Json<Problem>),
    /// The content type is not supported.
    #[oai(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Json<Problem>),
    /// The request is well-formed but its values are invalid.
    #[oai(status = 422, content_type = "application/problem+json")]
    Unprocessable(Json<Problem>),
    /// Too many attempts, or a usage limit of the token reached (`rate_limited`,
    /// `usage_exceeded`); retry after `Retry-After` seconds when it is given. Usage-limit
    /// answers carry the limits' state (IETF draft `RateLimit-Policy` / `RateLimit`).
    #[oai(status = 429, content_type = "application/problem+json")]
    TooManyRequests(
        Json<Problem>,
        #[oai(header = "Retry-After")] Option<u64>,
        #[oai(header = "RateLimit-Policy")] Option<String>,
        #[oai(header = "RateLimit")] Option<String>,
        #[oai(header = "X-Sigil-Refusal")] Option<String>,
    ),
    /// An unexpected error; details are in the server log under the request id.
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
    /// A dependency (the database) is unavailable; retry later.
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>, #[oai(header = "Retry-After")] u64),
}

pub type ApiResult<T> = Result<T, ApiError>;

fn bad_request(err: poem::Error) -> ApiError {
    let status = err.status();
    let detail = err.to_string();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::PayloadTooLarge(Json(Problem::new(
            status,
            "payload_too_large",
            "the request body is too large",
        )));
    }
    if status == StatusCode::UNSUPPORTED_MEDIA_TYPE
        || detail.contains("content type")
        || detail.contains("Content-Type")
    {
        return ApiError::UnsupportedMediaType(Json(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            detail,
        )));
    }
    // The request validation layer (request_check.rs) refuses values against the spec
    // before poem-openapi reads them, so these are its rare leftovers; they get the same
    // 422 shape with the parameter named.
    if let Some(e) = err.downcast_ref::<poem_openapi::error::ParseParamError>() {
        return invalid_value(e.name, &e.reason);
    }
    if let Some(e) = err.downcast_ref::<poem_openapi::error::ParsePathError>() {
        return invalid_value(e.name, &e.reason);
    }
    if let Some(e) = err.downcast_ref::<poem_openapi::error::ParseRequestPayloadError>() {
        if e.reason.contains("expected value")
            || e.reason.contains("EOF while parsing")
            || e.reason.contains("key must be a string")
        {
            return ApiError::BadRequest(Json(Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed_body",
                format!("the request body cannot be read: {}", e.reason),
            )));
        }
        return invalid_value("body", &e.reason);
    }
    ApiError::BadRequest(Json(Problem::new(
        StatusCode::BAD_REQUEST,
        "bad_request",
        detail,
    )))
}

fn invalid_value(field: &str, reason: &str) -> ApiError {
    ApiError::Unprocessable(Json(Problem::unprocessable(
        "validation_failed",
        format!("the request has an invalid value: {field}"),
        vec![FieldProblem {
            field: field.to_owned(),
            message: reason.to_owned(),
        }],
    )))
}

/// What a 401 asks the client for, in its `WWW-Authenticate` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Challenge<'a> {
    /// A username and password: login.
    Basic,
    /// A token, when none was given.
    Bearer,
    /// Another token than the one given, and why.
    InvalidToken { code: &'a str, detail: &'a str },
}

impl<'a> Challenge<'a> {
    /// The challenge of a domain error: the login refusals ask for a username and
    /// password, any other for a valid token.
    fn of_error(code: &'a str, detail: &'a str) -> Self {
        if code == "credentials_required" || code == "tenant_required" {
            Challenge::Basic
        } else {
            Challenge::InvalidToken { code, detail }
        }
    }

    fn of_refusal(refusal: &'a sigil_token::Refusal, detail: &'a str) -> Self {
        match refusal.kind() {
            RefusalKind::CredentialMissing => Challenge::Bearer,
            _ => Challenge::InvalidToken {
                code: refusal.code(),
                detail,
            },
        }
    }

    fn header(self) -> String {
        match self {
            Challenge::Basic => "Basic realm=\"sigil\", charset=\"UTF-8\"".to_owned(),
            Challenge::Bearer => "Bearer realm=\"sigil\"".to_owned(),
            Challenge::InvalidToken { code, detail } => {
                let detail = detail.replace('"', "'");
                format!("Bearer realm=\"sigil\", error=\"invalid_token\", error_description=\"{code}: {detail}\"")
            }
        }
    }
}

/// Seconds a client waits before retrying an unavailable service, unless told otherwise.
const UNAVAILABLE_RETRY_SECS: u64 = 2;

/// The 503 answer: a dependency (the database) is unreachable; internal text is logged,
/// never answered.
fn unavailable(code: &str, retry_after_secs: u64) -> ApiError {
    ApiError::Unavailable(
        Json(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            code,
            "the service is temporarily unavailable; retry shortly",
        )),
        retry_after_secs,
    )
}

impl ApiError {
    pub fn bad_request(code: &str, detail: impl Into<String>) -> Self {
        ApiError::BadRequest(Json(Problem::new(StatusCode::BAD_REQUEST, code, detail)))
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::NotFound(Json(Problem::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )))
    }

    pub fn status(&self) -> StatusCode {
        let p = match self {
            ApiError::BadRequest(p)
            | ApiError::Unauthorized(p, ..)
            | ApiError::Forbidden(p, ..)
            | ApiError::NotFound(p)
            | ApiError::Conflict(p)
            | ApiError::PayloadTooLarge(p)
            | ApiError::UnsupportedMediaType(p)
            | ApiError::Unprocessable(p)
            | ApiError::TooManyRequests(p, ..)
            | ApiError::Internal(p)
            | ApiError::Unavailable(p, _) => p,
        };
        StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn code(&self) -> &str {
        match self {
            ApiError::BadRequest(p)
            | ApiError::Unauthorized(p, ..)
            | ApiError::Forbidden(p, ..)
            | ApiError::NotFound(p)
            | ApiError::Conflict(p)
            | ApiError::PayloadTooLarge(p)
            | ApiError::UnsupportedMediaType(p)
            | ApiError::Unprocessable(p)
            | ApiError::TooManyRequests(p, ..)
            | ApiError::Internal(p)
            | ApiError::Unavailable(p, _) => &p.code,
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound { what } => ApiError::not_found(what),
            Error::Conflict { code, detail } => {
                ApiError::Conflict(Json(Problem::new(StatusCode::CONFLICT, code, detail)))
            }
            Error::Invalid {
                code,
                detail,
                errors,
            } => {
                let mut errors: Vec<FieldProblem> = errors.into_iter().map(Into::into).collect();
                if errors.is_empty() {
                    // A refusal of the request as a whole rather than of one value.
                    errors.push(FieldProblem {
                        field: String::new(),
                        message: detail.to_string(),
                    });
                }
                ApiError::Unprocessable(Json(Problem::unprocessable(code, detail, errors)))
            }
            Error::Unauthorized { code, detail } => ApiError::Unauthorized(
                Json(Problem::new(StatusCode::UNAUTHORIZED, code, detail.clone())),
                Challenge::of_error(code, &detail).header(),
                None,
            ),
            Error::Forbidden { code, detail } => ApiError::Forbidden(
                Json(Problem::new(StatusCode::FORBIDDEN, code, detail)),
                None,
                None,
                None,
                None,
            ),
            Error::TooMany {
                code,
                detail,
                retry_after_secs,
            } => ApiError::TooManyRequests(
                Json(Problem::new(StatusCode::TOO_MANY_REQUESTS, code, detail)),
                Some(retry_after_secs),
                None,
                None,
                None,
            ),
            Error::Unavailable(detail) => {
                tracing::warn!(error = %detail, "database unavailable");
                unavailable(
                    RefusalKind::ServiceUnavailable.code(),
                    UNAVAILABLE_RETRY_SECS,
                )
            }
            Error::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                ApiError::Internal(Json(Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "an unexpected error occurred; it has been logged",
                )))
            }
        }
    }
}

impl ApiError {
    /// The answer for a proxy that passes on only 2xx, 401 and 403 (nginx
    /// `auth_request`): a 429 becomes a 403 that keeps the code (`X-Sigil-Refusal`) and
    /// the limit headers, for the proxy to answer the client with the 429.
    pub fn for_header_only_proxy(self) -> Self {
        match self {
            ApiError::TooManyRequests(Json(mut p), retry_after, policy, state, refusal) => {
                p.status = StatusCode::FORBIDDEN.as_u16();
                p.title = "Forbidden".to_owned();
                let refusal = refusal.or_else(|| Some(p.code.clone()));
                ApiError::Forbidden(Json(p), refusal, retry_after, policy, state)
            }
            other => other,
        }
    }
}

impl From<sigil_token::Refusal> for ApiError {
    fn from(r: sigil_token::Refusal) -> Self {
        let detail = r.explanation();
        let problem = |status| Json(Problem::new(status, r.code(), detail.clone()));
        match r.status() {
            RefusalStatus::Unauthorized => ApiError::Unauthorized(
                problem(StatusCode::UNAUTHORIZED),
                Challenge::of_refusal(&r, &detail).header(),
                Some(r.code().to_owned()),
            ),
            RefusalStatus::Forbidden => ApiError::Forbidden(
                problem(StatusCode::FORBIDDEN),
                Some(r.code().to_owned()),
                None,
                None,
                None,
            ),
            RefusalStatus::TooMany => {
                let mut answer = problem(StatusCode::TOO_MANY_REQUESTS);
                let limits = r.limits();
                answer.0.next_refill_at = limits.and_then(|l| l.next_refill);
                let state = limits.map(|l| &l.state);
                ApiError::TooManyRequests(
                    answer,
                    r.retry_after_secs(),
                    state.and_then(|s| s.policy_header()),
                    state.and_then(|s| s.ratelimit_header()),
                    Some(r.code().to_owned()),
                )
            }
            RefusalStatus::Unavailable => {
                tracing::warn!("verification storage unavailable");
                unavailable(
                    r.code(),
                    r.retry_after_secs().unwrap_or(UNAVAILABLE_RETRY_SECS),
                )
            }
        }
    }
}

/// Turns any error poem produced outside an operation (unknown path, wrong method, body
/// limit, panics caught as 500) into problem JSON.
pub fn problem_response(status: StatusCode, code: &str, detail: &str) -> Response {
    let problem = Problem::new(status, code, detail);
    let body = serde_json::to_string(&problem).unwrap_or_default();
    Response::builder()
        .status(status)
        .content_type("application/problem+json")
        .body(body)
}

pub fn from_poem_error(err: poem::Error) -> Response {
    // Operations answer errors as complete problem responses already; keep them.
    if err.is_from_response() {
        let resp = err.into_response();
        if resp
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"))
        {
            return resp;
        }
        return problem_response(
            resp.status(),
            "error",
            resp.status().canonical_reason().unwrap_or("error"),
        );
    }
    let status = err.status();
    if status.is_success() || status.is_redirection() {
        return err.into_response();
    }
    let (code, detail) = match status {
        StatusCode::NOT_FOUND => ("not_found", "no such resource".to_owned()),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "method not allowed on this resource".to_owned(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload_too_large",
            "the request body is too large".to_owned(),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", err.to_string()),
        s if s.is_server_error() => {
            tracing::error!(error = %err, "unhandled server error");
            (
                "internal_error",
                "an unexpected error occurred; it has been logged".to_owned(),
            )
        }
        StatusCode::UNAUTHORIZED => ("credential_missing", err.to_string()),
        _ => ("bad_request", err.to_string()),
    };
    let mut resp = problem_response(status, code, &detail);
    if status == StatusCode::UNAUTHORIZED {
        if let Ok(v) = Challenge::Bearer.header().parse() {
            resp.headers_mut().insert("WWW-Authenticate", v);
        }
    }
    resp.into_response()
}

#[cfg(test)]
mod tests {
    use sigil_token::{Refusal, RefusalKind};

    use super::*;

    #[test]
    fn refusals_answer_their_class_code_and_challenge() {
        for kind in RefusalKind::ALL {
            let answer = ApiError::from(Refusal::new(kind));
            assert_eq!(answer.status().as_u16(), kind.status().http(), "{kind:?}");
            assert_eq!(answer.code(), kind.code());
            match answer {
                ApiError::Unauthorized(_, challenge, _)
                    if kind == RefusalKind::CredentialMissing =>
                {
                    assert_eq!(challenge, "Bearer realm=\"sigil\"");
                }
                ApiError::Unauthorized(_, challenge, refusal) => {
                    assert_eq!(refusal.as_deref(), Some(kind.code()));
                    let named = format!(
                        "error=\"invalid_token\", error_description=\"{}: ",
                        kind.code()
                    );
                    assert!(challenge.contains(&named), "{challenge}");
                }
                ApiError::Unavailable(Json(problem), retry_after) => {
                    assert_eq!(retry_after, UNAVAILABLE_RETRY_SECS);
                    assert!(!problem.detail.contains("storage"), "no internal text");
                }
                ApiError::Forbidden(_, refusal, ..) => {
                    assert_eq!(refusal.as_deref(), Some(kind.code()));
                }
                ApiError::TooManyRequests(_, _, _, _, refusal) => {
                    assert_eq!(refusal.as_deref(), Some(kind.code()));
                }
                other => panic!("{kind:?} answered {other:?}"),
            }
        }
    }

    #[test]
    fn login_asks_for_a_password_and_a_missing_token_for_a_token() {
        let login = ApiError::from(Error::unauthorized("credentials_required", "sign in"));
        assert!(matches!(login, ApiError::Unauthorized(_, c, _) if c.starts_with("Basic ")));
        let other = ApiError::from(Error::unauthorized("token_malformed", "say \"why\""));
        assert!(
            matches!(&other, ApiError::Unauthorized(_, c, _) if c.ends_with("token_malformed: say 'why'\"")),
            "{other:?}"
        );
    }
}
