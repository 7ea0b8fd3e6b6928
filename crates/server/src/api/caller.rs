//! The caller of an operation as a security scheme whose value is the checked principal.
//! An operation takes one of these extractors as a parameter: that parameter is what puts
//! the credential schemes on the operation in the spec, and extracting it verifies the
//! credential for the operation's own method (found from the route that matched, through
//! the spec, never named by the handler). Holding the value is the check.

use std::collections::HashMap;
use std::sync::Arc;

use poem::http::Method;
use poem::PathPattern;
use poem::{IntoResponse, Request, RequestBody};
use poem_openapi::registry::{MetaSecurityScheme, Registry};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};
use serde_json::Value;
use sigil_core::Error;
use sigil_token::{Caller, Principal, SigilMethod};

use crate::problem::ApiError;
use crate::state::AppState;

/// The credential schemes every protected operation accepts.
pub const SCHEMES: [&str; 4] = [
    "bearerAuth",
    "authTokenHeader",
    "authTokenQuery",
    "sessionQuery",
];

fn register_schemes(registry: &mut Registry) {
    registry.create_security_scheme(
        "bearerAuth",
        MetaSecurityScheme {
            ty: "http",
            description: Some(
                "A Sigil token (session, personal or application). `Authorization: authToken <token>` is accepted too.",
            ),
            name: None,
            key_in: None,
            scheme: Some("bearer"),
            bearer_format: Some("JWT"),
            flows: None,
            openid_connect_url: None,
        },
    );
    for (name, key_in, key) in [
        ("authTokenHeader", "header", "Auth-Token"),
        ("authTokenQuery", "query", "auth_token"),
        ("sessionQuery", "query", "session"),
    ] {
        registry.create_security_scheme(
            name,
            MetaSecurityScheme {
                ty: "apiKey",
                description: None,
                name: Some(key),
                key_in: Some(key_in),
                scheme: None,
                bearer_format: None,
                flows: None,
                openid_connect_url: None,
            },
        );
    }
}

/// Sigil's method of each route of the API, from the spec: (verb, route pattern).
#[derive(Default)]
pub struct RouteMethods(HashMap<(Method, String), SigilMethod>);

impl RouteMethods {
    /// Built from the published spec; fails for an operation without a method.
    pub fn from_spec(spec: &Value) -> Result<Self, Vec<String>> {
        let mut map = HashMap::new();
        let mut errors = Vec::new();
        for (path, item) in spec["paths"].as_object().into_iter().flatten() {
            for (verb, op) in item.as_object().into_iter().flatten() {
                let Ok(method) = Method::from_bytes(verb.to_ascii_uppercase().as_bytes()) else {
                    continue;
                };
                let op_id = op["operationId"].as_str().unwrap_or_default();
                match SigilMethod::from_operation_id(op_id) {
                    Some(m) => {
                        map.insert((method, poem_pattern(path)), m);
                    }
                    None => errors.push(format!("operation {op_id} has no Sigil method")),
                }
            }
        }
        if errors.is_empty() {
            Ok(Self(map))
        } else {
            Err(errors)
        }
    }

    fn of(&self, req: &Request) -> Option<SigilMethod> {
        let pattern = req.data::<PathPattern>()?;
        self.0
            .get(&(req.method().clone(), poem_pattern(&pattern.0)))
            .copied()
    }
}

/// A route pattern with its parameters unnamed, so the spec's `/tokens/{token_id}` and
/// poem's `/tokens/:param0` compare equal: `/tokens/:`.
fn poem_pattern(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if seg.starts_with(':') || (seg.starts_with('{') && seg.ends_with('}')) {
                ":"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Verifies the request's credential for the method of the route that matched.
async fn verify(req: &Request) -> Result<(Arc<AppState>, Caller), ApiError> {
    let state = req
        .data::<Arc<AppState>>()
        .cloned()
        .ok_or_else(|| Error::internal("the application state is not installed"))?;
    let method = state
        .route_methods
        .get()
        .and_then(|routes| routes.of(req))
        .ok_or_else(|| {
            Error::internal(format!(
                "no Sigil method for {} {:?}",
                req.method(),
                req.data::<PathPattern>().map(|p| p.0.to_string())
            ))
        })?;
    let caller = state.caller(req, method.id()).await?;
    Ok((state, caller))
}

fn into_poem(e: ApiError) -> poem::Error {
    poem::Error::from_response(e.into_response())
}

macro_rules! security_extractor {
    ($ty:ty) => {
        impl<'a> ApiExtractor<'a> for $ty {
            const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
            type ParamType = ();
            type ParamRawType = ();

            fn register(registry: &mut Registry) {
                register_schemes(registry);
            }

            fn security_schemes() -> Vec<&'static str> {
                SCHEMES.to_vec()
            }

            async fn from_request(
                req: &'a Request,
                _body: &mut RequestBody,
                _opts: ExtractParamOptions<Self::ParamType>,
            ) -> poem::Result<Self> {
                let (_, caller) = verify(req).await.map_err(into_poem)?;
                <$ty>::accept(caller).map_err(into_poem)
            }
        }
    };
}

/// A tenant user allowed to call this operation (the operator is refused `tenant_only`).
pub struct TenantCaller(pub Arc<Principal>);

impl TenantCaller {
    fn accept(caller: Caller) -> Result<Self, ApiError> {
        match caller {
            Caller::Tenant(p) => Ok(Self(p)),
            Caller::Operator => Err(Error::forbidden(
                "tenant_only",
                "this method needs a tenant user's token",
            )
            .into()),
        }
    }
}

impl std::ops::Deref for TenantCaller {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.0
    }
}

/// The platform operator (a tenant user is refused `operator_only`).
pub struct OperatorCaller;

impl OperatorCaller {
    fn accept(caller: Caller) -> Result<Self, ApiError> {
        match caller {
            Caller::Operator => Ok(Self),
            Caller::Tenant(_) => Err(Error::forbidden(
                "operator_only",
                "only the platform operator may call this method",
            )
            .into()),
        }
    }
}

/// The operator or a tenant user, for the operations both may call.
pub struct AnyCaller(pub Caller);

impl AnyCaller {
    fn accept(caller: Caller) -> Result<Self, ApiError> {
        Ok(Self(caller))
    }
}

security_extractor!(TenantCaller);
security_extractor!(OperatorCaller);
security_extractor!(AnyCaller);

#[cfg(test)]
mod tests {
    use super::poem_pattern;

    #[test]
    fn spec_paths_become_poem_patterns() {
        assert_eq!(
            poem_pattern("/api/v1/tokens/{token_id}/copy"),
            poem_pattern("/api/v1/tokens/:param0/copy")
        );
        assert_eq!(poem_pattern("/healthz"), "/healthz");
    }
}
