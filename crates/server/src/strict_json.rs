//! JSON request bodies must have the types and the fields the spec gives them.
//! poem-openapi reads a JSON number or boolean into a `String` field (`{"name": false}`
//! becomes the name "false") and drops fields it does not know (`{"enable": false}` for
//! `enabled` would be ignored), neither of which the spec allows nor clients may rely on.
//! This layer checks a JSON body against the operation's request schema before
//! poem-openapi reads it: a value of the wrong type is refused with 400, as poem-openapi
//! does for its own type errors; fields the schema does not declare are refused with 422
//! `unknown_field`, naming each (objects whose schema is free-form, such as an OpenAPI
//! document passed as a value, take any field). Formats, bounds and required fields stay
//! with poem-openapi's validation.
//!
//! The same table of the spec's path templates answers which methods a path supports
//! (the `Allow` header of a 405).

use std::collections::BTreeMap;
use std::sync::Arc;

use poem::http::{Method, StatusCode};
use poem::{Endpoint, IntoResponse, Request, Response};
use serde_json::Value;

use crate::problem::{problem_response, Problem};

const MAX_DEPTH: usize = 32;

/// The HTTP methods an OpenAPI path item can hold, in the order `Allow` lists them.
const VERBS: [&str; 8] = [
    "get", "head", "post", "put", "patch", "delete", "options", "trace",
];

struct PathRoute {
    /// Path segments; `None` is a template parameter.
    segments: Vec<Option<String>>,
    /// The path's operations, with their JSON request schema when they take one.
    methods: Vec<(Method, Option<Value>)>,
}

impl PathRoute {
    fn matches(&self, segments: &[&str]) -> bool {
        self.segments.len() == segments.len()
            && self
                .segments
                .iter()
                .zip(segments)
                .all(|(want, got)| match want {
                    Some(literal) => literal == got,
                    None => !got.is_empty(),
                })
    }
}

/// The spec's path templates, their operations and JSON request schemas.
pub struct BodyTypes {
    routes: Vec<PathRoute>,
    schemas: Value,
}

impl BodyTypes {
    pub fn from_spec(spec: &Value) -> Self {
        let mut routes = Vec::new();
        if let Some(paths) = spec["paths"].as_object() {
            for (path, item) in paths {
                let mut methods = Vec::new();
                for verb in VERBS {
                    let Some(op) = item.get(verb) else {
                        continue;
                    };
                    let Ok(method) = Method::from_bytes(verb.to_ascii_uppercase().as_bytes())
                    else {
                        continue;
                    };
                    let schema = op["requestBody"]["content"]
                        .as_object()
                        .and_then(|content| {
                            content
                                .iter()
                                .find(|(media, _)| media.starts_with("application/json"))
                                .map(|(_, c)| c["schema"].clone())
                        });
                    methods.push((method, schema));
                }
                if methods.is_empty() {
                    continue;
                }
                let segments = path
                    .split('/')
                    .map(|s| (!s.starts_with('{')).then(|| s.to_owned()))
                    .collect();
                routes.push(PathRoute { segments, methods });
            }
        }
        // As the router matches: a literal segment wins over a parameter at the same
        // place, left to right (`/tokens/bulk-delete` over `/tokens/{id}`, `/users/me`
        // over `/users/{id}`).
        routes.sort_by_key(|r| r.segments.iter().map(Option::is_none).collect::<Vec<_>>());
        BodyTypes {
            routes,
            schemas: spec["components"]["schemas"].clone(),
        }
    }

    /// The path template a request path is routed to.
    fn route_of(&self, path: &str) -> Option<&PathRoute> {
        let segments: Vec<&str> = path.split('/').collect();
        self.routes.iter().find(|r| r.matches(&segments))
    }

    fn schema_for(&self, method: &Method, path: &str) -> Option<&Value> {
        self.route_of(path)?
            .methods
            .iter()
            .find(|(m, _)| m == method)?
            .1
            .as_ref()
    }

    /// The methods `path` supports, as an `Allow` header lists them (`HEAD` wherever
    /// `GET` is, as the router answers it); `None` for a path outside the spec.
    pub fn allowed(&self, path: &str) -> Option<String> {
        let methods = &self.route_of(path)?.methods;
        let has = |name: &str| methods.iter().any(|(m, _)| m.as_str() == name);
        let allowed: Vec<String> = VERBS
            .iter()
            .map(|v| v.to_ascii_uppercase())
            .filter(|v| has(v) || (v == "HEAD" && has("GET")))
            .collect();
        Some(allowed.join(", "))
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
                    self.check_at(field_schema, field, &join(at, name), depth + 1)?;
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

    /// The fields of `value` that `schema` does not declare, as JSON paths (`ipfilter`,
    /// `scope.foo`, `methods[2].bar`), sorted.
    pub fn unknown_fields(&self, schema: &Value, value: &Value) -> Vec<String> {
        let mut found = Vec::new();
        self.unknown_in(&[schema], value, "", 0, &mut found);
        found.sort();
        found.dedup();
        found
    }

    /// `schemas` all describe `value` (the alternatives of a `anyOf`, the members of an
    /// `allOf`): a field is known when any of them declares it.
    fn unknown_in(
        &self,
        schemas: &[&Value],
        value: &Value,
        at: &str,
        depth: usize,
        found: &mut Vec<String>,
    ) {
        if depth > MAX_DEPTH || !(value.is_object() || value.is_array()) {
            return;
        }
        let mut shape = Shape::default();
        for schema in schemas {
            self.shape_of(schema, value, depth, &mut shape);
        }
        match value {
            Value::Object(fields) => {
                for (name, field) in fields {
                    let path = join(at, name);
                    if let Some(declared) = shape.properties.get(name.as_str()) {
                        self.unknown_in(declared, field, &path, depth + 1, found);
                    } else if !shape.additional.is_empty() {
                        self.unknown_in(&shape.additional, field, &path, depth + 1, found);
                    } else if shape.closed && !shape.open {
                        found.push(path);
                    }
                }
            }
            Value::Array(items) if !shape.items.is_empty() => {
                for (i, item) in items.iter().enumerate() {
                    let path = format!("{at}[{i}]");
                    self.unknown_in(&shape.items, item, &path, depth + 1, found);
                }
            }
            _ => {}
        }
    }

    /// Gathers what `schema` says about the fields or items of `value`.
    fn shape_of<'a>(
        &'a self,
        schema: &'a Value,
        value: &Value,
        depth: usize,
        shape: &mut Shape<'a>,
    ) {
        if depth > MAX_DEPTH {
            shape.open = true;
            return;
        }
        // Siblings of `$ref` are ignored (OpenAPI 3.0).
        if let Some(reference) = schema["$ref"].as_str() {
            let name = reference.rsplit('/').next().unwrap_or_default();
            match self.schemas.get(name) {
                Some(target) => self.shape_of(target, value, depth + 1, shape),
                None => shape.open = true,
            }
            return;
        }
        let mut composed = false;
        if let Some(all) = schema["allOf"].as_array() {
            composed = true;
            for member in all {
                self.shape_of(member, value, depth + 1, shape);
            }
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(any) = schema[key].as_array() {
                composed = true;
                // The alternatives the value's types fit (all of them when none does:
                // the type check has refused it already).
                let fitting: Vec<&Value> = any
                    .iter()
                    .filter(|m| self.check_at(m, value, "", depth + 1).is_ok())
                    .collect();
                let members = if fitting.is_empty() {
                    any.iter().collect()
                } else {
                    fitting
                };
                for member in members {
                    self.shape_of(member, value, depth + 1, shape);
                }
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        if let Some(properties) = properties {
            shape.closed = true;
            for (name, property) in properties {
                shape
                    .properties
                    .entry(name.as_str())
                    .or_default()
                    .push(property);
            }
        }
        match schema.get("additionalProperties") {
            Some(Value::Bool(false)) => shape.closed = true,
            Some(extra @ Value::Object(o)) if !o.is_empty() => shape.additional.push(extra),
            // `true` or `{}`: any field.
            Some(_) => shape.open = true,
            None => {
                // An object without declared properties is free-form, and so is a
                // schema that says nothing of the value's type (`{}`).
                let typed = schema.get("type").is_some();
                let object = schema["type"] == "object";
                if properties.is_none() && (object || (!typed && !composed)) {
                    shape.open = true;
                }
            }
        }
        if let Some(items) = schema.get("items") {
            shape.items.push(items);
        }
    }
}

/// What the schemas of a value say about its fields and items.
#[derive(Default)]
struct Shape<'a> {
    /// Some schema declares the object's fields.
    closed: bool,
    /// Some schema takes any field.
    open: bool,
    properties: BTreeMap<&'a str, Vec<&'a Value>>,
    /// Schemas of the fields not declared by name.
    additional: Vec<&'a Value>,
    items: Vec<&'a Value>,
}

fn join(at: &str, name: &str) -> String {
    if at.is_empty() {
        name.to_owned()
    } else {
        format!("{at}.{name}")
    }
}

fn label(at: &str) -> &str {
    if at.is_empty() {
        "the body"
    } else {
        at
    }
}

/// 422 `unknown_field`, naming each field the schema does not declare.
fn unknown_fields_response(paths: &[String]) -> Response {
    let detail = format!(
        "the request body has {}: {}",
        if paths.len() == 1 {
            "a field the operation does not take"
        } else {
            "fields the operation does not take"
        },
        paths.join(", ")
    );
    let problem = Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "unknown_field", detail)
        .with_errors(
            paths
                .iter()
                .map(|p| format!("{p}: unknown field"))
                .collect(),
        );
    Response::builder()
        .status(StatusCode::UNPROCESSABLE_ENTITY)
        .content_type("application/problem+json")
        .body(serde_json::to_string(&problem).unwrap_or_default())
}

/// The layer: refuses JSON bodies whose value types do not match the operation's schema
/// (400) or that carry fields it does not declare (422).
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
            let unknown = types.unknown_fields(&schema, &value);
            if !unknown.is_empty() {
                return Ok(unknown_fields_response(&unknown));
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

    #[test]
    fn answers_the_methods_of_a_path() {
        let t = BodyTypes::from_spec(&json!({"paths": {
            "/api/v1/users/me": {"get": {}, "patch": {}},
            "/api/v1/users/{id}": {"get": {}, "delete": {}, "parameters": []},
            "/api/v1/users/{id}/deactivate": {"post": {}},
        }}));
        assert_eq!(
            t.allowed("/api/v1/users/me").as_deref(),
            Some("GET, HEAD, PATCH")
        );
        assert_eq!(
            t.allowed("/api/v1/users/42").as_deref(),
            Some("GET, HEAD, DELETE")
        );
        assert_eq!(
            t.allowed("/api/v1/users/me/deactivate").as_deref(),
            Some("POST")
        );
        assert_eq!(t.allowed("/api/v1/users//deactivate"), None);
        assert_eq!(t.allowed("/api/v1/nothing"), None);
    }

    #[test]
    fn names_every_undeclared_field() {
        let t = BodyTypes::from_spec(&json!({
            "paths": {},
            "components": {"schemas": {
                "Inner": {"type": "object", "properties": {"a": {"type": "string"}}},
                "Closed": {"type": "object", "properties": {"b": {"type": "string"}},
                    "additionalProperties": false},
                "Body": {"type": "object", "properties": {
                    "name": {"type": "string"},
                    "scope": {"anyOf": [{"$ref": "#/components/schemas/Inner"}], "nullable": true},
                    "list": {"type": "array", "items": {"$ref": "#/components/schemas/Inner"}},
                    "both": {"allOf": [{"$ref": "#/components/schemas/Inner"},
                        {"$ref": "#/components/schemas/Closed"}]},
                    "either": {"oneOf": [{"type": "string"}, {"$ref": "#/components/schemas/Inner"}]},
                    "doc": {"description": "any JSON", "nullable": true},
                    "free": {"type": "object"},
                    "labels": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/Inner"}},
                    "open": {"type": "object", "properties": {"x": {"type": "integer"}},
                        "additionalProperties": true}
                }}
            }}
        }));
        let schema = json!({"$ref": "#/components/schemas/Body"});
        let ok = json!({
            "name": "n", "scope": {"a": "x"}, "list": [{"a": "y"}], "both": {"a": "1", "b": "2"},
            "either": {"a": "z"}, "doc": {"openapi": "3.0.0", "paths": {"/x": {}}},
            "free": {"anything": [1]}, "labels": {"k": {"a": "v"}}, "open": {"x": 1, "y": 2}
        });
        assert_eq!(t.unknown_fields(&schema, &ok), Vec::<String>::new());
        assert_eq!(
            t.unknown_fields(&schema, &json!({"either": "just a string", "scope": null})),
            Vec::<String>::new()
        );
        let bad = json!({
            "ipfilter": ["10.0.0.0/8"], "name": "n", "scope": {"a": "x", "foo": 1},
            "list": [{"a": "y"}, {"c": 1}], "both": {"c": 2}, "either": {"d": 3},
            "labels": {"k": {"e": 4}}, "enable": false
        });
        assert_eq!(
            t.unknown_fields(&schema, &bad),
            vec![
                "both.c",
                "either.d",
                "enable",
                "ipfilter",
                "labels.k.e",
                "list[1].c",
                "scope.foo"
            ]
        );
        assert_eq!(
            t.unknown_fields(&schema, &json!([{"x": 1}])),
            Vec::<String>::new()
        );
    }
}
