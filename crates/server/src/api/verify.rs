use std::net::IpAddr;
use std::sync::Arc;

use poem::Request;
use poem_openapi::param::Header;
use poem_openapi::payload::{Form, Json};
use poem_openapi::{ApiRequest, ApiResponse, Enum, Object, OpenApi};
use sigil_core::Error;
use sigil_token::verifier::{
    Attempt, Client, Denied, Refusal, RefusalKind, RefusalStatus, Target, Transport, Verified,
};
use sigil_token::Caller;
use uuid::Uuid;

use super::caller::TenantCaller;
use super::json_out::JsonOut;
use super::limits::LimitStateDto;
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
        // The request check holds every form to its schema before the handler runs; the
        // same bounds are kept here so the conversion never relies on that layer alone.
        for (field, value, max) in [
            ("token", Some(&form.token), 8192),
            ("method", form.method.as_ref(), 200),
            ("client_ip", form.client_ip.as_ref(), 64),
        ] {
            if value.is_some_and(|v| v.chars().count() > max) {
                return Err(ApiError::bad_request(
                    "bad_request",
                    format!(
                        "parse request payload error: {field} must have at most {max} characters"
                    ),
                ));
            }
        }
        Ok(IntrospectBody {
            token: form.token,
            method: form.method,
            client_ip: form.client_ip,
        })
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
#[derive(Object, Default, serde::Serialize)]
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
    /// The token's usage limits after this use (absent for a token without limits).
    /// Introspection is a use: it spends the token's credits and counts against its
    /// rate limits like any call.
    pub limits: Option<LimitStateDto>,
}

#[derive(ApiResponse)]
pub enum IntrospectResponse {
    #[oai(status = 200)]
    Ok(JsonOut<Introspection>),
}

#[derive(Object, serde::Serialize)]
pub struct AuthorizeResult {
    pub tenant: String,
    pub user: String,
    pub token_id: Uuid,
    /// The registry method the original request maps to.
    pub method: String,
}

#[derive(ApiResponse)]
pub enum AuthorizeResponse {
    /// Allowed; identity in the headers for the proxy to pass upstream, and the token's
    /// usage limits (IETF draft `RateLimit-Policy` / `RateLimit`) when it has any.
    #[oai(status = 200)]
    Allowed(
        JsonOut<AuthorizeResult>,
        #[oai(header = "X-Sigil-Tenant")] String,
        #[oai(header = "X-Sigil-User")] String,
        #[oai(header = "X-Sigil-Token-Id")] String,
        #[oai(header = "X-Sigil-Method")] String,
        #[oai(header = "RateLimit-Policy")] Option<String>,
        #[oai(header = "RateLimit")] Option<String>,
    ),
}

/// The answer about an unknown token, also given about another tenant's tokens.
fn unknown_token() -> Introspection {
    inactive(&Refusal::new(RefusalKind::TokenUnknown))
}

/// The answer about a refused token: why, and (for its IP filter) which check failed.
fn inactive(r: &Refusal) -> Introspection {
    Introspection {
        client_ip_allowed: (r.kind() == RefusalKind::IpNotAllowed).then_some(false),
        code: Some(r.code().to_owned()),
        detail: Some(r.explanation()),
        ..Introspection::default()
    }
}

/// The proxy asking for forward auth, when its answer must be shaped for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum AuthProxy {
    /// nginx `auth_request`: passes on only 2xx, 401 and 403.
    Nginx,
    /// Traefik ForwardAuth: passes on any answer.
    Traefik,
    /// Envoy ext_authz: passes on any answer.
    Envoy,
}

use poem::http::HeaderName;

// Parsed once: a lookup by text parses the name on every request.
const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
const X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");

fn header<'a>(req: &'a Request, names: &[HeaderName]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|n| req.headers().get(n).and_then(|v| v.to_str().ok()))
        .filter(|v| !v.is_empty())
}

impl VerifyApi {
    /// The answer about an active token.
    fn active(&self, p: &sigil_token::Principal, ip: Option<IpAddr>) -> Introspection {
        let snapshot = self.0.registry.load();
        Introspection {
            active: true,
            sub: Some(p.user_id.to_string()),
            username: Some(p.username.to_string()),
            tenant: Some(p.tenant_slug.to_string()),
            tenant_id: Some(p.tenant_id.0),
            token_id: Some(p.token_id.0),
            token_type: Some(p.token_kind.as_str().to_owned()),
            scope: Some(self.0.scope_texts.text(&snapshot, &p.rights).to_string()),
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
        let attempt = Attempt {
            credential: Some((&body.token, Transport::Header)),
            client: ip.map_or(Client::Unstated, |ip| Client::At(Some(ip))),
            // The plugin's client is known by address only.
            user_agent: None,
            target: Target::Introspection {
                tenant: caller.tenant_id,
                method: body.method.as_deref(),
            },
        };
        let answer = match self.0.verifier.verify(attempt).await {
            Ok(Verified {
                caller: Caller::Tenant(p),
                limits,
                ..
            }) => Introspection {
                method_allowed: body.method.as_ref().map(|_| true),
                limits: limits.map(|l| l.summary().into()),
                ..self.active(&p, ip)
            },
            // Introspection allows only the caller's tenant's tokens (not reached).
            Ok(_) => unknown_token(),
            Err(Denied::Refused(r)) => {
                if r.status() == RefusalStatus::Unavailable {
                    return Err(r.into());
                }
                match r.principal() {
                    // A valid token that may not call the method: the answer stays
                    // `active: false` (so a plugin that reads only `active` refuses the
                    // call), and says whose token it is, what it may call and which method
                    // is refused, and why.
                    Some(p) if r.kind().is_about_method() => Introspection {
                        active: false,
                        method_allowed: Some(false),
                        code: Some(r.code().to_owned()),
                        detail: Some(r.explanation()),
                        ..self.active(p, ip)
                    },
                    None if r.kind().is_about_method() => unknown_token(),
                    // A usage limit: the token is valid but may not be used now; the
                    // answer says when and shows the limits.
                    Some(p) if r.status() == RefusalStatus::TooMany => Introspection {
                        active: false,
                        code: Some(r.code().to_owned()),
                        detail: Some(r.explanation()),
                        limits: r.limits().map(|l| l.state.summary().into()),
                        ..self.active(p, ip)
                    },
                    _ => inactive(&r),
                }
            }
            Err(Denied::Unforwardable(u)) => return Err(Error::from(u).into()),
        };
        Ok(IntrospectResponse::Ok(JsonOut(answer)))
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
        /// `nginx`: the proxy passes on only 2xx, 401 and 403 from the auth server, so a
        /// usage limit is answered 403 with its code in `X-Sigil-Refusal` and the headers
        /// of the 429 (deploy/nginx turns it into that 429). Traefik and Envoy pass the 429
        /// through as it is.
        #[oai(name = "X-Sigil-Auth-Proxy")]
        auth_proxy: Header<Option<AuthProxy>>,
    ) -> ApiResult<AuthorizeResponse> {
        let method = header(req, &[X_ORIGINAL_METHOD, X_FORWARDED_METHOD])
            .unwrap_or("GET")
            .to_ascii_uppercase();
        // Fail closed: a request the proxy does not describe is not allowed (a 403, which
        // every proxy passes on; nginx turns anything but 2xx/401/403 into a 500).
        let uri = header(req, &[X_ORIGINAL_URI, X_FORWARDED_URI]).ok_or_else(|| {
            ApiError::from(Error::forbidden(
                "original_uri_missing",
                "the proxy must send the original request's URI: X-Original-URI (nginx) or X-Forwarded-Uri (Traefik, Envoy)",
            ))
        })?;
        let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
        let ip = client_ip(req, self.0.verifier.trusted_proxies());
        let found = auth::credential(req, Some(query), None)?;
        let attempt = Attempt {
            credential: found.as_ref().map(|(c, t)| (c.as_str(), *t)),
            client: Client::At(ip),
            user_agent: auth::user_agent_text(req),
            target: Target::Forward {
                verb: &method,
                path,
            },
        };
        let verified = match self.0.verifier.verify(attempt).await {
            Ok(verified) => verified,
            Err(Denied::Refused(r)) => {
                let answer = self.0.refusal(r, ip);
                return Err(match auth_proxy.0 {
                    Some(AuthProxy::Nginx) => answer.for_header_only_proxy(),
                    _ => answer,
                });
            }
            Err(Denied::Unforwardable(u)) => return Err(Error::from(u).into()),
        };
        let Verified {
            caller: Caller::Tenant(principal),
            routed_method: Some(method_id),
            limits,
        } = verified
        else {
            return Err(Error::internal("forward auth allowed a request without its route").into());
        };
        Ok(AuthorizeResponse::Allowed(
            JsonOut(AuthorizeResult {
                tenant: principal.tenant_slug.to_string(),
                user: principal.username.to_string(),
                token_id: principal.token_id.0,
                method: method_id.clone(),
            }),
            principal.tenant_slug.to_string(),
            principal.username.to_string(),
            principal.token_id.to_string(),
            method_id,
            limits.as_ref().and_then(|l| l.policy_header()),
            limits.as_ref().and_then(|l| l.ratelimit_header()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_token_is_inactive_with_its_code_only() {
        let answer = unknown_token();
        assert!(!answer.active);
        assert_eq!(answer.code.as_deref(), Some("token_unknown"));
        assert_eq!(
            answer.detail.as_deref(),
            Some("the token does not exist (deleted)")
        );
        assert_eq!(answer.client_ip_allowed, None);
        assert_eq!(answer.sub, None);
    }

    #[test]
    fn a_refused_client_address_is_named() {
        let answer = inactive(&Refusal::new(RefusalKind::IpNotAllowed));
        assert_eq!(answer.client_ip_allowed, Some(false));
        assert_eq!(answer.method_allowed, None);
        let answer = inactive(&Refusal::new(RefusalKind::TokenExpired));
        assert_eq!(answer.client_ip_allowed, None);
        assert_eq!(answer.code.as_deref(), Some("token_expired"));
    }
}
