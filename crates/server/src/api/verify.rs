use std::net::IpAddr;
use std::sync::Arc;

use poem::Request;
use poem_openapi::param::Header;
use poem_openapi::payload::{Form, Json};
use poem_openapi::types::ParseFromJSON;
use poem_openapi::{ApiRequest, ApiResponse, Object, OpenApi};
use sigil_core::Error;
use uuid::Uuid;

use super::caller::TenantCaller;
use super::ApiTags;
use crate::auth::{self, client_ip};
use crate::problem::{ApiError, ApiResult};
use crate::state::AppState;

pub struct VerifyApi(pub Arc<AppState>);

/// RFC 7662-style introspection request.
#[derive(Object, serde::Deserialize)]
pub struct IntrospectBody {
    /// The token to check.
    #[oai(validator(max_length = 8192))]
    pub token: String,
    /// Also check this registry method (e.g. `platform.environment.control.stopenv`).
    #[oai(validator(max_length = 200))]
    pub method: Option<String>,
    /// Also check the token's IP filter for this client address.
    #[oai(validator(max_length = 64))]
    pub client_ip: Option<String>,
}

/// The same request as a form. A schema of its own, so that generated clients can tell
/// the JSON body from the form body; checked against [`IntrospectBody`]'s rules (forms
/// skip poem-openapi's validators).
#[derive(Object, serde::Deserialize, serde::Serialize)]
pub struct IntrospectForm {
    /// The token to check.
    #[oai(validator(max_length = 8192))]
    pub token: String,
    /// Also check this registry method (e.g. `platform.environment.control.stopenv`).
    #[oai(validator(max_length = 200))]
    pub method: Option<String>,
    /// Also check the token's IP filter for this client address.
    #[oai(validator(max_length = 64))]
    pub client_ip: Option<String>,
}

impl TryFrom<IntrospectForm> for IntrospectBody {
    type Error = ApiError;

    fn try_from(form: IntrospectForm) -> Result<Self, ApiError> {
        let invalid = |detail: String| {
            ApiError::bad_request(
                "bad_request",
                format!("parse request payload error: {detail}"),
            )
        };
        let value = serde_json::to_value(form).map_err(|e| invalid(e.to_string()))?;
        IntrospectBody::parse_from_json(Some(value)).map_err(|e| invalid(e.into_message()))
    }
}

#[derive(ApiRequest)]
pub enum IntrospectRequest {
    Json(Json<IntrospectBody>),
    Form(Form<IntrospectForm>),
}

/// RFC 7662-style answer; when `active` is false, `code` says why. With a `method`,
/// `active` answers for that method: a valid token that may not call it is inactive for
/// it, with its identity, scope and `method_allowed: false`.
#[derive(Object, Default)]
pub struct Introspection {
    pub active: bool,
    /// Refusal code when inactive (e.g. `token_expired`, `method_not_in_scope`).
    pub code: Option<String>,
    pub detail: Option<String>,
    /// Owner user id.
    pub sub: Option<String>,
    pub username: Option<String>,
    /// Tenant slug.
    pub tenant: Option<String>,
    pub tenant_id: Option<Uuid>,
    pub token_id: Option<Uuid>,
    pub token_type: Option<String>,
    /// Space-separated method ids the token may call (scope ∩ the owner's role).
    pub scope: Option<String>,
    /// Expiry as seconds since the epoch.
    pub exp: Option<i64>,
    /// Whether the given client IP passes the token's filter (when one was given).
    pub client_ip_allowed: Option<bool>,
    /// Whether the given method is allowed (when one was given).
    pub method_allowed: Option<bool>,
}

#[derive(ApiResponse)]
pub enum IntrospectResponse {
    #[oai(status = 200)]
    Ok(Json<Introspection>),
}

#[derive(Object)]
pub struct AuthorizeResult {
    pub tenant: String,
    pub user: String,
    pub token_id: Uuid,
    /// The registry method the original request maps to.
    pub method: String,
}

#[derive(ApiResponse)]
pub enum AuthorizeResponse {
    /// Allowed; identity in the headers for the proxy to pass upstream.
    #[oai(status = 200)]
    Allowed(
        Json<AuthorizeResult>,
        #[oai(header = "X-Sigil-Tenant")] String,
        #[oai(header = "X-Sigil-User")] String,
        #[oai(header = "X-Sigil-Token-Id")] String,
        #[oai(header = "X-Sigil-Method")] String,
    ),
}

/// The refusal code and detail of an unknown (deleted) token.
const UNKNOWN_CODE: &str = "token_unknown";
const UNKNOWN_DETAIL: &str = "the token does not exist (deleted)";

/// The answer about an unknown token, also given about another tenant's tokens.
fn unknown_token() -> Introspection {
    Introspection {
        code: Some(UNKNOWN_CODE.into()),
        detail: Some(UNKNOWN_DETAIL.into()),
        ..Introspection::default()
    }
}

fn header<'a>(req: &'a Request, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|n| req.headers().get(*n).and_then(|v| v.to_str().ok()))
        .filter(|v| !v.is_empty())
}

impl VerifyApi {
    /// The answer about an active token.
    fn active(&self, p: &sigil_token::Principal, ip: Option<IpAddr>) -> Introspection {
        let snapshot = self.0.registry.load();
        Introspection {
            active: true,
            sub: Some(p.user_id.to_string()),
            username: Some(p.username.clone()),
            tenant: Some(p.tenant_slug.to_string()),
            tenant_id: Some(p.tenant_id.0),
            token_id: Some(p.token_id.0),
            token_type: Some(p.token_kind.as_str().to_owned()),
            scope: Some(snapshot.method_ids(&p.rights).collect::<Vec<_>>().join(" ")),
            exp: p.expires_at.map(|t| t.timestamp()),
            client_ip_allowed: ip.map(|_| true),
            ..Introspection::default()
        }
    }
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Verification")]
impl VerifyApi {
    /// Check a token for a plugin (RFC 7662 style); the caller needs `sigil.introspect`.
    #[oai(
        path = "/introspect",
        method = "post",
        operation_id = "introspectToken"
    )]
    async fn introspect(
        &self,
        caller: TenantCaller,
        body: IntrospectRequest,
    ) -> ApiResult<IntrospectResponse> {
        let caller = caller.0;
        let body = match body {
            IntrospectRequest::Json(Json(b)) => b,
            IntrospectRequest::Form(Form(f)) => f.try_into()?,
        };
        let ip = match body.client_ip.as_deref().map(str::parse::<IpAddr>) {
            Some(Ok(ip)) => Some(ip),
            Some(Err(_)) => {
                return Err(Error::invalid_field(
                    "invalid_client_ip",
                    "client_ip",
                    "client_ip is not an IP address",
                )
                .into())
            }
            None => None,
        };
        if let Some(m) = &body.method {
            if self
                .0
                .registry
                .load()
                .lookup(Some(caller.tenant_id.0), m)
                .is_none()
            {
                return Err(Error::invalid_field(
                    "unknown_methods",
                    "method",
                    format!("{m:?} is not a method of the registry; listMethods shows them"),
                )
                .into());
            }
        }
        // A token of another tenant is answered like an unknown one without being verified:
        // the caller learns nothing about it (not even why it would be refused), and no use
        // or refusal is recorded for it.
        let claimed = sigil_token::jwt::inspect(&body.token)
            .ok()
            .and_then(|u| u.tenant);
        if claimed.is_some_and(|t| t != caller.tenant_id) {
            self.0.verifier.note_outcome(UNKNOWN_CODE);
            return Ok(IntrospectResponse::Ok(Json(unknown_token())));
        }
        let outcome = self
            .0
            .verifier
            .introspect(&body.token, ip, body.method.as_deref())
            .await;
        if let Err(r) = &outcome {
            self.0.audit_reuse(r, ip, None).await;
        }
        let answer = match outcome {
            Ok(p) if p.tenant_id == caller.tenant_id => {
                let mut answer = self.active(&p, ip);
                answer.method_allowed = body.method.as_ref().map(|_| true);
                answer
            }
            // Another tenant's token looks like an unknown one (not reached: refused above).
            Ok(_) => unknown_token(),
            Err(r) if r.is_unavailable() => return Err(r.into()),
            Err(r) if r.tenant_id().is_some_and(|t| t != caller.tenant_id) => unknown_token(),
            // A valid token that may not call the method: the answer stays `active: false`
            // (so a plugin that reads only `active` refuses the call), and says whose token
            // it is, what it may call and which method is refused, and why.
            Err(r) if matches!(r.code, "method_not_in_scope" | "user_lacks_permission") => {
                match self.0.verifier.principal_for(&body.token).await {
                    Ok(Some(p)) if p.tenant_id == caller.tenant_id => Introspection {
                        active: false,
                        method_allowed: Some(false),
                        code: Some(r.code.to_owned()),
                        detail: Some(r.explanation()),
                        ..self.active(&p, ip)
                    },
                    _ => unknown_token(),
                }
            }
            Err(r) => Introspection {
                client_ip_allowed: (r.code == "ip_not_allowed").then_some(false),
                method_allowed: matches!(r.code, "method_not_in_scope" | "user_lacks_permission")
                    .then_some(false),
                code: Some(r.code.to_owned()),
                detail: Some(r.explanation()),
                ..Introspection::default()
            },
        };
        Ok(IntrospectResponse::Ok(Json(answer)))
    }

    /// Forward auth for nginx `auth_request`, Traefik ForwardAuth and Envoy ext_authz:
    /// maps the original method and URI to a registry method and checks the token.
    #[oai(path = "/authorize", method = "get", operation_id = "authorizeRequest")]
    async fn authorize(
        &self,
        req: &Request,
        /// The original request's method (nginx); default GET.
        #[oai(name = "X-Original-Method")]
        _original_method: Header<Option<String>>,
        /// The original request's URI, path and query (nginx). One of the two URI headers
        /// is required.
        #[oai(name = "X-Original-URI")]
        _original_uri: Header<Option<String>>,
        /// The original request's method (Traefik, Envoy).
        #[oai(name = "X-Forwarded-Method")]
        _forwarded_method: Header<Option<String>>,
        /// The original request's URI (Traefik, Envoy).
        #[oai(name = "X-Forwarded-Uri")]
        _forwarded_uri: Header<Option<String>>,
    ) -> ApiResult<AuthorizeResponse> {
        let method = header(req, &["x-original-method", "x-forwarded-method"])
            .unwrap_or("GET")
            .to_ascii_uppercase();
        // Fail closed: a request the proxy does not describe is not allowed (a 403, which
        // every proxy passes on; nginx turns anything but 2xx/401/403 into a 500).
        let uri = header(req, &["x-original-uri", "x-forwarded-uri"]).ok_or_else(|| {
            ApiError::from(Error::forbidden(
                "original_uri_missing",
                "the proxy must send the original request's URI: X-Original-URI (nginx) or X-Forwarded-Uri (Traefik, Envoy)",
            ))
        })?;
        let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
        let ip = client_ip(req, self.0.verifier.trusted_proxies());
        let (credential, transport) =
            auth::credential(req, Some(query), None)?.ok_or_else(|| {
                self.0
                    .verifier
                    .note_outcome(sigil_token::verifier::MISSING.code);
                ApiError::from(sigil_token::verifier::MISSING)
            })?;
        let refused = |r: sigil_token::Refusal| {
            self.0.verifier.note_outcome(r.code);
            self.0.refusal(r, ip)
        };
        let found = self.0.verifier.principal_for(&credential).await;
        if let Err(r) = &found {
            self.0.audit_reuse(r, ip, auth::user_agent(req)).await;
        }
        let principal = match found.map_err(refused)? {
            Some(p) => p,
            None => {
                return Err(
                    Error::forbidden("tenant_only", "forward auth needs a tenant token").into(),
                )
            }
        };
        self.0
            .verifier
            .check_request(&principal, transport, ip)
            .map_err(refused)?;
        let snapshot = self.0.registry.load();
        let idx = snapshot
            .route(Some(principal.tenant_id.0), &method, path)
            .ok_or_else(|| {
                Error::forbidden(
                    "route_not_registered",
                    "no registered method matches this request",
                )
            })?;
        let method_id = snapshot.method(idx).id.clone();
        self.0
            .verifier
            .check(&principal, &method_id)
            .map_err(refused)?;
        self.0.verifier.record_use(&principal, ip);
        Ok(AuthorizeResponse::Allowed(
            Json(AuthorizeResult {
                tenant: principal.tenant_slug.to_string(),
                user: principal.username.clone(),
                token_id: principal.token_id.0,
                method: method_id.clone(),
            }),
            principal.tenant_slug.to_string(),
            principal.username.clone(),
            principal.token_id.to_string(),
            method_id,
        ))
    }
}
