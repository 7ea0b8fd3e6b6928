//! The one error model: every failure is RFC 7807 problem JSON with a stable `code`. Domain
//! errors are mapped here, once; a 5xx never carries internal text (it is logged instead).

use poem::http::StatusCode;
use poem::{IntoResponse, Response};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};
use sigil_core::Error;

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
    /// The credential is missing or refused.
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>, #[oai(header = "WWW-Authenticate")] String),
    /// The caller may not do this.
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(Json<Problem>),
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
    /// Too many attempts; retry later.
    #[oai(status = 429, content_type = "application/problem+json")]
    TooManyRequests(Json<Problem>, #[oai(header = "Retry-After")] u64),
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

pub fn www_authenticate(code: &str, detail: &str) -> String {
    // Login answers with the Basic challenge: it takes a username and password.
    if code == "credentials_required" || code == "tenant_required" {
        return "Basic realm=\"sigil\", charset=\"UTF-8\"".to_owned();
    }
    if code == "credential_missing" {
        "Bearer realm=\"sigil\"".to_owned()
    } else {
        let detail = detail.replace('"', "'");
        format!("Bearer realm=\"sigil\", error=\"invalid_token\", error_description=\"{code}: {detail}\"")
    }
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
            | ApiError::Unauthorized(p, _)
            | ApiError::Forbidden(p)
            | ApiError::NotFound(p)
            | ApiError::Conflict(p)
            | ApiError::PayloadTooLarge(p)
            | ApiError::UnsupportedMediaType(p)
            | ApiError::Unprocessable(p)
            | ApiError::TooManyRequests(p, _)
            | ApiError::Internal(p)
            | ApiError::Unavailable(p, _) => p,
        };
        StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn code(&self) -> &str {
        match self {
            ApiError::BadRequest(p)
            | ApiError::Unauthorized(p, _)
            | ApiError::Forbidden(p)
            | ApiError::NotFound(p)
            | ApiError::Conflict(p)
            | ApiError::PayloadTooLarge(p)
            | ApiError::UnsupportedMediaType(p)
            | ApiError::Unprocessable(p)
            | ApiError::TooManyRequests(p, _)
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
                www_authenticate(code, &detail),
            ),
            Error::Forbidden { code, detail } => {
                ApiError::Forbidden(Json(Problem::new(StatusCode::FORBIDDEN, code, detail)))
            }
            Error::TooMany {
                code,
                detail,
                retry_after_secs,
            } => ApiError::TooManyRequests(
                Json(Problem::new(StatusCode::TOO_MANY_REQUESTS, code, detail)),
                retry_after_secs,
            ),
            Error::Unavailable(detail) => {
                tracing::warn!(error = %detail, "database unavailable");
                ApiError::Unavailable(
                    Json(Problem::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "service_unavailable",
                        "the service is temporarily unavailable; retry shortly",
                    )),
                    2,
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

impl From<sigil_token::Refusal> for ApiError {
    fn from(r: sigil_token::Refusal) -> Self {
        if r.is_unavailable() {
            return Error::Unavailable("verification storage".into()).into();
        }
        Error::from(r).into()
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
        if let Ok(v) = www_authenticate(code, &detail).parse() {
            resp.headers_mut().insert("WWW-Authenticate", v);
        }
    }
    resp.into_response()
}
