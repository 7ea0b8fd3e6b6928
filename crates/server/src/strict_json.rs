//! JSON request bodies must have the types the spec gives them. poem-openapi reads a JSON
//! number or boolean into a `String` field (`{"name": false}` becomes the name "false"),
//! which the spec does not allow and clients must not rely on. This layer checks the value
//! types of a JSON body against the operation's request schema before poem-openapi reads
//! it, and refuses a mismatch with 400, as poem-openapi does for its own type errors.
//! Formats, bounds and required fields stay with poem-openapi's validation.

use std::sync::Arc;

use poem::http::{Method, StatusCode};
use poem::{Endpoint, IntoResponse, Request, Response};
use serde_json::Value;

use crate::problem::problem_response;

const MAX_DEPTH: usize = 32;

struct BodyRoute {
    method: Method,
    /// Path segments; `None` is a template parameter.
    segments: Vec<Option<String>>,
    schema: Value,
}

/// The JSON request schemas of the spec's operations.
pub struct BodyTypes {
    routes: Vec<BodyRoute>,
    schemas: Value,
}

impl BodyTypes {
    pub fn from_spec(spec: &Value) -> Self {
        let mut routes = Vec::new();
        if let Some(paths) = spec["paths"].as_object() {
            for (path, item) in paths {
                let Some(ops) = item.as_object() else {
                    continue;
                };
                for (verb, op) in ops {
                    let Ok(method) = Method::from_bytes(verb.to_ascii_uppercase().as_bytes())
                    else {
                        continue;
                    };
                    let Some(content) = op["requestBody"]["content"].as_object() else {
                        continue;
                    };
                    let Some(schema) = content
                        .iter()
                        .find(|(media, _)| media.starts_with("application/json"))
                        .map(|(_, c)| c["schema"].clone())
                    else {
                        continue;
                    };
                    let segments = path
                        .split('/')
                        .map(|s| (!s.starts_with('{')).then(|| s.to_owned()))
                        .collect();
                    routes.push(BodyRoute {
                        method,
                        segments,
                        schema,
                    });
                }
            }
        }
        // Literal segments win over parameters (`/tokens/bulk-delete` over `/tokens/{id}`).
        routes.sort_by_key(|r| r.segments.iter().filter(|s| s.is_none()).count());
        BodyTypes {
            routes,
            schemas: spec["components"]["schemas"].clone(),
        }
    }

    fn schema_for(&self, method: &Method, path: &str) -> Option<&Value> {
        let segments: Vec<&str> = path.split('/').collect();
        self.routes
            .iter()
            .find(|r| {
                r.method == method
                    && r.segments.len() == segments.len()
                    && r.segments
                        .iter()
                        .zip(&segments)
                        .all(|(want, got)| want.as_deref().is_none_or(|w| w == *got))
            })
            .map(|r| &r.schema)
    }

    /// Checks the value types of `value` against `schema`; the error names the first
    /// mismatch.
    pub fn check(&self, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
        self.check_at(schema, value, at, 0)
    }

    fn check_at(
        &self,
        schema: &Value,
        value: &Value,
        at: &str,
        depth: usize,
    ) -> Result<(), String> {
        // Null is poem-openapi's to judge (it is `None` for an optional field).
        if depth > MAX_DEPTH || value.is_null() {
            return Ok(());
        }
        if let Some(reference) = schema["$ref"].as_str() {
            let name = reference.rsplit('/').next().unwrap_or_default();
            return match self.schemas.get(name) {
                Some(target) => self.check_at(target, value, at, depth + 1),
                None => Ok(()),
            };
        }
        if let Some(all) = schema["allOf"].as_array() {
            for member in all {
                self.check_at(member, value, at, depth + 1)?;
            }
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(any) = schema[key].as_array() {
                let mut first_error = None;
                let matched =
                    any.iter()
                        .any(|member| match self.check_at(member, value, at, depth + 1) {
                            Ok(()) => true,
                            Err(e) => {
                                first_error.get_or_insert(e);
                                false
                            }
                        });
                if let (false, Some(e)) = (matched, first_error) {
                    return Err(e);
                }
            }
        }
        let expected = schema["type"].as_str().unwrap_or_default();
        let ok = match expected {
            "string" => value.is_string(),
            "integer" | "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "array" => {
                let Some(items) = value.as_array() else {
                    return Err(format!("{}: expected an array", label(at)));
                };
                for (i, item) in items.iter().enumerate() {
                    self.check_at(&schema["items"], item, &format!("{at}[{i}]"), depth + 1)?;
                }
                true
            }
            "object" => {
                let Some(fields) = value.as_object() else {
                    return Err(format!("{}: expected an object", label(at)));
                };
                for (name, field) in fields {
                    let field_schema = match schema["properties"].get(name) {
                        Some(s) => s,
                        None if schema["additionalProperties"].is_object() => {
                            &schema["additionalProperties"]
                        }
                        None => continue,
                    };
                    let path = if at.is_empty() {
                        name.clone()
                    } else {
                        format!("{at}.{name}")
                    };
                    self.check_at(field_schema, field, &path, depth + 1)?;
                }
                true
            }
            _ => true,
        };
        if ok {
            Ok(())
        } else {
            Err(format!("{}: expected {expected}", label(at)))
        }
    }
}

fn label(at: &str) -> &str {
    if at.is_empty() {
        "the body"
    } else {
        at
    }
}

/// The layer: refuses JSON bodies whose value types do not match the operation's schema.
pub async fn enforce<E: Endpoint>(
    next: Arc<E>,
    mut req: Request,
    types: Arc<BodyTypes>,
) -> poem::Result<Response> {
    let is_json = req
        .headers()
        .get(poem::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    let schema = if is_json {
        types.schema_for(req.method(), req.uri().path()).cloned()
    } else {
        None
    };
    if let Some(schema) = schema {
        let bytes = req.take_body().into_bytes().await?;
        // Malformed JSON is poem-openapi's to report.
        if let Ok(value) = serde_json::from_slice::<Value>(&bytes) {
            if let Err(detail) = types.check(&schema, &value, "") {
                return Ok(problem_response(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    &format!("invalid request body: {detail}"),
                ));
            }
        }
        req.set_body(bytes);
    }
    next.call(req).await.map(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn types() -> BodyTypes {
        BodyTypes::from_spec(&json!({
            "paths": {
                "/api/v1/things/{id}": {"patch": {"requestBody": {"content": {
                    "application/json; charset=utf-8": {"schema": {"$ref": "#/components/schemas/Thing"}}
                }}}},
                "/api/v1/things/bulk": {"patch": {"requestBody": {"content": {
                    "application/json; charset=utf-8": {"schema": {"type": "object"}}
                }}}}
            },
            "components": {"schemas": {
                "Kind": {"type": "string", "enum": ["a", "b"]},
                "Thing": {"type": "object", "properties": {
                    "name": {"type": "string"},
                    "count": {"type": "integer", "nullable": true},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "kind": {"anyOf": [{"$ref": "#/components/schemas/Kind"}], "nullable": true},
                    "any": {}
                }}
            }}
        }))
    }

    #[test]
    fn finds_the_route_literal_first() {
        let t = types();
        let thing = t.schema_for(&Method::PATCH, "/api/v1/things/42").unwrap();
        assert_eq!(thing["$ref"], "#/components/schemas/Thing");
        let bulk = t.schema_for(&Method::PATCH, "/api/v1/things/bulk").unwrap();
        assert_eq!(bulk["type"], "object");
        assert!(t.schema_for(&Method::POST, "/api/v1/things/42").is_none());
        assert!(t.schema_for(&Method::PATCH, "/api/v1/things").is_none());
    }

    #[test]
    fn refuses_coerced_scalars_and_accepts_the_right_types() {
        let t = types();
        let schema = json!({"$ref": "#/components/schemas/Thing"});
        let ok = json!({"name": "x", "count": 3, "tags": ["a"], "kind": "a", "any": [1, {"x": false}], "extra": 1});
        assert_eq!(t.check(&schema, &ok, ""), Ok(()));
        assert_eq!(
            t.check(&schema, &json!({"count": null, "kind": null}), ""),
            Ok(())
        );
        assert_eq!(
            t.check(&schema, &json!({"name": false}), ""),
            Err("name: expected string".into())
        );
        assert_eq!(
            t.check(&schema, &json!({"tags": ["a", 1]}), ""),
            Err("tags[1]: expected string".into())
        );
        assert_eq!(
            t.check(&schema, &json!({"kind": 7}), ""),
            Err("kind: expected string".into())
        );
        assert_eq!(
            t.check(&schema, &json!({"count": "3"}), ""),
            Err("count: expected integer".into())
        );
        assert_eq!(
            t.check(&schema, &json!([1]), ""),
            Err("the body: expected an object".into())
        );
    }
}
