//! A JSON answer written straight from its value with serde. poem-openapi's `Json<T>`
//! builds a `serde_json::Value` tree first (a map, a string and an allocation per field)
//! and then writes it; on the hot answers (`authorizeRequest`, `introspectToken`,
//! `getCurrentUser`) that cost more than verifying the credential. Same media type and
//! schema as `Json<T>`; the types it carries derive `Serialize` to the same JSON as their
//! `ToJSON` (the tests below hold them to it).

use chrono::{DateTime, Utc};
use poem::http::StatusCode;
use poem::{IntoResponse, Response};
use poem_openapi::payload::Payload;
use poem_openapi::registry::{MetaMediaType, MetaResponse, MetaResponses, MetaSchemaRef, Registry};
use poem_openapi::types::Type;
use poem_openapi::ApiResponse;
use serde::{Serialize, Serializer};

const CONTENT_TYPE: &str = "application/json; charset=utf-8";

pub struct JsonOut<T>(pub T);

impl<T: Type> Payload for JsonOut<T> {
    const CONTENT_TYPE: &'static str = CONTENT_TYPE;

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Serialize + Send> IntoResponse for JsonOut<T> {
    fn into_response(self) -> Response {
        // Sized for the usual answer, so that writing it does not grow the buffer.
        let mut body = Vec::with_capacity(1024);
        match serde_json::to_writer(&mut body, &self.0) {
            Ok(()) => Response::builder().content_type(CONTENT_TYPE).body(body),
            Err(e) => {
                tracing::error!(error = %e, "an answer could not be written as JSON");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }
}

impl<T: Type + Serialize + Send> ApiResponse for JsonOut<T> {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: "",
                status: Some(200),
                status_range: None,
                content: vec![MetaMediaType {
                    content_type: CONTENT_TYPE,
                    schema: T::schema_ref(),
                }],
                headers: vec![],
            }],
        }
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

/// A time as poem-openapi writes it (`to_rfc3339`: `+00:00`, not serde's `Z`).
pub fn rfc3339<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339())
}

/// An optional time as poem-openapi writes it (`null` when absent).
pub fn rfc3339_opt<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339(t, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
pub fn assert_same_json<T: Serialize + poem_openapi::types::ToJSON>(value: &T) {
    let direct = serde_json::to_value(value).expect("serializes");
    assert_eq!(Some(direct), value.to_json(), "serde and ToJSON disagree");
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use uuid::Uuid;

    use super::assert_same_json;
    use crate::api::auth::CurrentUser;
    use crate::api::dto::{RoleDto, UserDto, UserKindDto};
    use crate::api::limits::{
        CreditsLeftDto, HolderDto, LimitStateDto, RateLimitDto, RateLimitStateDto,
    };
    use crate::api::verify::{AuthorizeResult, Introspection};

    fn at(ms: i64) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc.timestamp_millis_opt(ms).unwrap()
    }

    fn user(full: bool) -> UserDto {
        UserDto {
            id: Uuid::now_v7(),
            tenant_id: Uuid::now_v7(),
            username: "ann \"the\" admin".into(),
            display_name: "Ann\n€".into(),
            email: full.then(|| "ann@example.com".into()),
            kind: if full {
                UserKindDto::Api
            } else {
                UserKindDto::Person
            },
            role: if full {
                RoleDto::TokenManager
            } else {
                RoleDto::Member
            },
            api_access: full,
            active: !full,
            is_system: false,
            has_password: true,
            two_factor: full,
            two_factor_enabled_at: full.then(|| at(1_700_000_000_123)),
            created_at: at(1_600_000_000_000),
            updated_at: at(1_600_000_000_456),
            rate_limits: if full {
                vec![RateLimitDto {
                    name: "burst".into(),
                    window_secs: 60,
                    limit: 100,
                }]
            } else {
                vec![]
            },
        }
    }

    fn limits() -> LimitStateDto {
        LimitStateDto {
            rate_limits: vec![RateLimitStateDto {
                name: "tenant".into(),
                applies_to: HolderDto::Owner,
                limit: 10,
                window_secs: 1,
                remaining: 3,
                reset_secs: 1,
            }],
            credits: Some(CreditsLeftDto {
                remaining: u64::MAX,
                next_refill_at: Some(at(1_800_000_000_000)),
            }),
        }
    }

    #[test]
    fn the_current_user_is_written_as_the_spec_says() {
        for full in [true, false] {
            assert_same_json(&CurrentUser {
                user: user(full),
                tenant: "acme".into(),
                role: RoleDto::Admin,
                token_id: Uuid::now_v7(),
                token_kind: "session".into(),
                token_expires_at: full.then(|| at(1_900_000_000_000)),
                confirmed_until: full.then(|| at(1_900_000_000_001)),
                password_confirmation_required: full,
                methods: vec!["me.get".into(), "tokens.list".into()],
                two_factor_enrolment_required: !full,
                recovery_codes_left: full.then_some(7),
            });
        }
    }

    #[test]
    fn introspection_answers_are_written_as_the_spec_says() {
        assert_same_json(&Introspection::default());
        assert_same_json(&Introspection {
            active: true,
            code: Some("method_not_in_scope".into()),
            detail: Some("tab\there".into()),
            sub: Some(Uuid::now_v7().to_string()),
            username: Some("u".into()),
            tenant: Some("acme".into()),
            tenant_id: Some(Uuid::now_v7()),
            token_id: Some(Uuid::now_v7()),
            token_type: Some("application".into()),
            scope: Some("a.b c.d".into()),
            exp: Some(-5),
            client_ip_allowed: Some(false),
            method_allowed: Some(true),
            limits: Some(limits()),
        });
        assert_same_json(&LimitStateDto {
            rate_limits: vec![],
            credits: Some(CreditsLeftDto {
                remaining: 0,
                next_refill_at: None,
            }),
        });
    }

    #[test]
    fn forward_auth_answers_are_written_as_the_spec_says() {
        assert_same_json(&AuthorizeResult {
            tenant: "acme".into(),
            user: "ann".into(),
            token_id: Uuid::now_v7(),
            method: "platform.environment.control.stopenv".into(),
        });
    }
}
