//! Every request is checked against its operation in the published spec before an
//! operation reads it: path, query and header parameters, and JSON or form bodies. What
//! does not fit is refused in one style: 422 `validation_failed` problem JSON listing each
//! refused value as `{field, message}` (`unknown_field` when some are fields or
//! parameters the operation does not take); 400 `malformed_body` only for a body that is
//! not JSON or not a form at all. The framework's own checks (poem-openapi) stay behind as a
//! backstop, but the client sees Sigil's words, the field's name and the allowed values.
//!
//! The same table of the spec's paths answers which methods a path supports (the `Allow`
//! header of a 405).

use std::borrow::Cow;
use std::sync::Arc;

use poem::http::{Method, StatusCode};
use poem::{Endpoint, IntoResponse, Request, Response};
use serde_json::{Map, Value};

use crate::problem::{FieldProblem, Problem};
use crate::schema_check::{Finding, Schemas};

/// The HTTP methods an OpenAPI path item can hold, in the order `Allow` lists them.
const VERBS: [&str; 8] = [
    "get", "head", "post", "put", "patch", "delete", "options", "trace",
];

enum Segment {
    Literal(String),
    Param(String),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Location {
    Path,
    Query,
    Header,
}

struct Parameter {
    name: String,
    /// A header parameter's name, parsed once (a lookup by text parses it every time).
    header: Option<poem::http::HeaderName>,
    location: Location,
    required: bool,
    schema: Value,
}

/// What an operation takes.
struct Operation {
    method: Method,
    parameters: Vec<Parameter>,
    json_body: Option<Value>,
    form_body: Option<Value>,
}

struct PathRoute {
    segments: Vec<Segment>,
    operations: Vec<Operation>,
}

impl PathRoute {
    fn matches(&self, segments: &[&str]) -> bool {
        self.segments.len() == segments.len()
            && self
                .segments
                .iter()
                .zip(segments)
                .all(|(want, got)| match want {
                    Segment::Literal(literal) => literal == got,
                    Segment::Param(_) => !got.is_empty(),
                })
    }

    fn path_value<'a>(&self, name: &str, segments: &[&'a str]) -> Option<&'a str> {
        self.segments
            .iter()
            .zip(segments)
            .find(|(s, _)| matches!(s, Segment::Param(p) if p == name))
            .map(|(_, got)| *got)
    }
}

/// The spec's operations, as the request check and the `Allow` header need them.
pub struct RequestRules {
    routes: Vec<PathRoute>,
    schemas: Schemas,
    /// Query parameter names that carry a credential (security schemes), taken by every
    /// operation.
    credential_params: Vec<String>,
}

impl RequestRules {
    pub fn from_spec(spec: &Value) -> Self {
        let mut routes = Vec::new();
        if let Some(paths) = spec["paths"].as_object() {
            for (path, item) in paths {
                let shared = item["parameters"].as_array().cloned().unwrap_or_default();
                let operations: Vec<Operation> = VERBS
                    .iter()
                    .filter_map(|verb| {
                        let op = item.get(*verb)?;
                        let method =
                            Method::from_bytes(verb.to_ascii_uppercase().as_bytes()).ok()?;
                        Some(operation(method, op, &shared))
                    })
                    .collect();
                if operations.is_empty() {
                    continue;
                }
                let segments = path
                    .split('/')
                    .map(
                        |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                            Some(name) => Segment::Param(name.to_owned()),
                            None => Segment::Literal(s.to_owned()),
                        },
                    )
                    .collect();
                routes.push(PathRoute {
                    segments,
                    operations,
                });
            }
        }
        // As the router matches: a literal segment wins over a parameter at the same
        // place, left to right (`/tokens/bulk-delete` over `/tokens/{id}`).
        routes.sort_by_key(|r| {
            r.segments
                .iter()
                .map(|s| matches!(s, Segment::Param(_)))
                .collect::<Vec<_>>()
        });
        let credential_params = spec["components"]["securitySchemes"]
            .as_object()
            .map(|schemes| {
                schemes
                    .values()
                    .filter(|s| s["type"] == "apiKey" && s["in"] == "query")
                    .filter_map(|s| s["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        RequestRules {
            routes,
            schemas: Schemas::from_spec(spec),
            credential_params,
        }
    }

    fn route_of(&self, segments: &[&str]) -> Option<&PathRoute> {
        self.routes.iter().find(|r| r.matches(segments))
    }

    /// The methods `path` supports, as an `Allow` header lists them (`HEAD` wherever
    /// `GET` is, as the router answers it); `None` for a path outside the spec.
    pub fn allowed(&self, path: &str) -> Option<String> {
        let segments: Vec<&str> = path.split('/').collect();
        let operations = &self.route_of(&segments)?.operations;
        let has = |name: &str| operations.iter().any(|o| o.method.as_str() == name);
        let allowed: Vec<String> = VERBS
            .iter()
            .map(|v| v.to_ascii_uppercase())
            .filter(|v| has(v) || (v == "HEAD" && has("GET")))
            .collect();
        Some(allowed.join(", "))
    }

    /// Checks the request's parameters; the problems found and the names of parameters
    /// the operation does not take.
    fn check_parameters(
        &self,
        route: &PathRoute,
        op: &Operation,
        req: &Request,
        segments: &[&str],
    ) -> (Vec<Finding>, Vec<String>) {
        let mut problems = Vec::new();
        let query: Vec<(String, String)> = req
            .uri()
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        for p in &op.parameters {
            let raw: Option<String> = match p.location {
                Location::Path => route.path_value(&p.name, segments).map(|raw| {
                    percent_encoding::percent_decode_str(raw)
                        .decode_utf8_lossy()
                        .into_owned()
                }),
                Location::Query => query
                    .iter()
                    .find(|(k, _)| k == &p.name)
                    .map(|(_, v)| v.clone()),
                Location::Header => p
                    .header
                    .as_ref()
                    .and_then(|name| req.headers().get(name))
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
            };
            match raw {
                None if p.required => problems.push(Finding {
                    field: p.name.clone(),
                    message: "is required".to_owned(),
                    code: None,
                }),
                None => {}
                Some(raw) => problems.extend(self.check_text(&p.schema, &raw, &p.name)),
            }
        }
        let mut unknown: Vec<String> = query
            .iter()
            .map(|(k, _)| k)
            .filter(|k| {
                !op.parameters
                    .iter()
                    .any(|p| p.location == Location::Query && &p.name == *k)
                    && !self.credential_params.contains(k)
            })
            .cloned()
            .collect();
        unknown.sort();
        unknown.dedup();
        (problems, unknown)
    }

    /// Checks a value that arrived as text (a parameter or a form field) as the type its
    /// schema gives it.
    fn check_text(&self, schema: &Value, raw: &str, field: &str) -> Vec<Finding> {
        match self.typed(schema, raw) {
            Ok(value) => self.schemas.check(schema, &value, field),
            Err(message) => vec![Finding {
                field: field.to_owned(),
                message: message.to_owned(),
                code: None,
            }],
        }
    }

    fn typed(&self, schema: &Value, raw: &str) -> Result<Value, &'static str> {
        match self.schemas.scalar_type(schema) {
            Some("integer") => raw
                .parse::<i64>()
                .map(Value::from)
                .or_else(|_| raw.parse::<u64>().map(Value::from))
                .map_err(|_| "must be an integer"),
            Some("number") => raw
                .parse::<f64>()
                .ok()
                .and_then(|n| serde_json::Number::from_f64(n).map(Value::Number))
                .ok_or("must be a number"),
            Some("boolean") => match raw {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                _ => Err("must be true or false"),
            },
            _ => Ok(Value::String(raw.to_owned())),
        }
    }

    /// Checks a form body against its schema: each field read as the type the schema
    /// gives it.
    fn check_form(&self, schema: &Value, bytes: &[u8]) -> (Vec<Finding>, Vec<String>) {
        let resolved = self.schemas.resolve(schema);
        let mut fields = Map::new();
        let mut problems = Vec::new();
        for (name, raw) in form_pairs(bytes) {
            let declared = &resolved["properties"][name.as_ref()];
            if declared.is_null() {
                fields.insert(name.into_owned(), Value::String(raw.into_owned()));
                continue;
            }
            match self.typed(declared, &raw) {
                Ok(value) => {
                    fields.insert(name.into_owned(), value);
                }
                Err(message) => problems.push(Finding {
                    field: name.into_owned(),
                    message: message.to_owned(),
                    code: None,
                }),
            }
        }
        let value = Value::Object(fields);
        problems.extend(self.schemas.check(schema, &value, ""));
        let known: Vec<&str> = self.credential_params.iter().map(String::as_str).collect();
        let unknown = self.schemas.unknown_fields(schema, &value, &known);
        (problems, unknown)
    }
}

/// The pairs of a form body, as `form_urlencoded::parse` reads them; a part without
/// escapes (`%`, `+`) is borrowed as it is rather than decoded byte by byte (a form
/// carries a 700-byte token).
fn form_pairs(bytes: &[u8]) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    bytes
        .split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = match memchr::memchr(b'=', pair) {
                Some(at) => (&pair[..at], &pair[at + 1..]),
                None => (pair, &pair[pair.len()..]),
            };
            (form_part(name), form_part(value))
        })
}

fn form_part(raw: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(raw) {
        Ok(text) if memchr::memchr2(b'%', b'+', raw).is_none() => Cow::Borrowed(text),
        _ => form_urlencoded::parse(&[b"x=".as_slice(), raw].concat())
            .next()
            .map(|(_, v)| Cow::Owned(v.into_owned()))
            .unwrap_or_default(),
    }
}

fn operation(method: Method, op: &Value, shared: &[Value]) -> Operation {
    let mut parameters = Vec::new();
    for p in shared
        .iter()
        .chain(op["parameters"].as_array().into_iter().flatten())
    {
        let location = match p["in"].as_str() {
            Some("path") => Location::Path,
            Some("query") => Location::Query,
            Some("header") => Location::Header,
            _ => continue,
        };
        let Some(name) = p["name"].as_str() else {
            continue;
        };
        parameters.push(Parameter {
            name: name.to_owned(),
            header: (location == Location::Header)
                .then(|| poem::http::HeaderName::from_bytes(name.as_bytes()).ok())
                .flatten(),
            location,
            required: p["required"] == true || location == Location::Path,
            schema: p["schema"].clone(),
        });
    }
    let content = op["requestBody"]["content"].as_object();
    let body_of = |prefix: &str| {
        content.and_then(|content| {
            content
                .iter()
                .find(|(media, _)| media.starts_with(prefix))
                .map(|(_, c)| c["schema"].clone())
        })
    };
    Operation {
        method,
        parameters,
        json_body: body_of("application/json"),
        form_body: body_of("application/x-www-form-urlencoded"),
    }
}

fn media_type(req: &Request) -> String {
    req.headers()
        .get(poem::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

fn refusal(problems: Vec<Finding>, unknown: Vec<String>) -> Option<Response> {
    if problems.is_empty() && unknown.is_empty() {
        return None;
    }
    // A misspelt field is the likely cause of the other problems (a required field
    // missing), so it names the refusal.
    let has_unknown = !unknown.is_empty();
    // Values that break one rule with a code of its own (`weak_password`) keep that
    // code; anything else is `validation_failed`.
    let shared_code = problems
        .first()
        .and_then(|p| p.code.clone())
        .filter(|code| problems.iter().all(|p| p.code.as_deref() == Some(code)));
    let mut errors: Vec<FieldProblem> = problems.into_iter().map(Into::into).collect();
    errors.extend(unknown.iter().map(|name| FieldProblem {
        field: name.clone(),
        message: "is not taken by this operation".to_owned(),
    }));
    let problem = if has_unknown {
        Problem::unprocessable(
            "unknown_field",
            format!(
                "the request has {} the operation does not take: {}",
                if unknown.len() == 1 {
                    "a field"
                } else {
                    "fields"
                },
                unknown.join(", ")
            ),
            errors,
        )
    } else {
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        let mut named = fields.clone();
        named.dedup();
        Problem::unprocessable(
            shared_code.as_deref().unwrap_or("validation_failed"),
            format!(
                "the request has invalid values: {}; see errors for each",
                named.join(", ")
            ),
            errors,
        )
    };
    Some(
        Response::builder()
            .status(StatusCode::UNPROCESSABLE_ENTITY)
            .content_type("application/problem+json")
            .body(serde_json::to_string(&problem).unwrap_or_default()),
    )
}

fn malformed(what: &str, detail: impl std::fmt::Display) -> Response {
    crate::problem::problem_response(
        StatusCode::BAD_REQUEST,
        "malformed_body",
        &format!("the request body is not {what}: {detail}"),
    )
}

/// The layer: refuses requests whose parameters or body do not fit the operation's spec.
pub async fn enforce<E: Endpoint>(
    next: Arc<E>,
    mut req: Request,
    rules: Arc<RequestRules>,
) -> poem::Result<Response> {
    if let Some(refused) = check(&mut req, &rules).await? {
        return Ok(refused);
    }
    Box::pin(next.call(req))
        .await
        .map(IntoResponse::into_response)
}

/// The request against its operation in the spec: the refusal, or `None` to go on.
/// (Apart from [`enforce`], so that it awaits the rest of the chain at one point only:
/// each await point of a future holds a copy of its own.)
async fn check(req: &mut Request, rules: &RequestRules) -> poem::Result<Option<Response>> {
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.split('/').collect();
    let Some(route) = rules.route_of(&segments) else {
        return Ok(None);
    };
    let Some(op) = route.operations.iter().find(|o| o.method == req.method()) else {
        return Ok(None);
    };
    let (mut problems, mut unknown) = rules.check_parameters(route, op, req, &segments);
    let media = media_type(req);
    let body_schema = match media.as_str() {
        "application/json" => op.json_body.as_ref().map(|s| (s, true)),
        "application/x-www-form-urlencoded" => op.form_body.as_ref().map(|s| (s, false)),
        _ => None,
    };
    if let Some((schema, is_json)) = body_schema {
        // Runs inside `limit_body`, so the body is bounded and read already.
        let bytes = req.take_body().into_bytes().await?;
        // An empty body for an optional one is the operation's to judge.
        if !bytes.is_empty() {
            if is_json {
                let value: Value = match serde_json::from_slice(&bytes) {
                    Ok(v) => v,
                    Err(e) => return Ok(Some(malformed("JSON", e))),
                };
                problems.extend(rules.schemas.check(schema, &value, ""));
                unknown.extend(rules.schemas.unknown_fields(schema, &value, &[]));
            } else {
                let (found, extra) = rules.check_form(schema, &bytes);
                problems.extend(found);
                unknown.extend(extra);
            }
        }
        req.set_body(bytes);
    }
    Ok(refusal(problems, unknown))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn form_pairs_read_as_form_urlencoded_reads_them() {
        for body in [
            "token=eyJ0eXAi.abc-_x&method=a.b",
            "a=1&&b=&c&=d&e==f",
            "n%61me=v%20a+l%2Bue&x=%zz&y=%E2%82%AC&z=%ff",
            "",
            "&",
            "caf\u{e9}=th\u{e9}",
        ] {
            let ours: Vec<(String, String)> = form_pairs(body.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let theirs: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
                .into_owned()
                .collect();
            assert_eq!(ours, theirs, "{body:?}");
        }
        let invalid = b"k=\xff\xfe&v=ok";
        let ours: Vec<(String, String)> = form_pairs(invalid)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let theirs: Vec<(String, String)> = form_urlencoded::parse(invalid).into_owned().collect();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn answers_the_methods_of_a_path() {
        let t = RequestRules::from_spec(&json!({"paths": {
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
    fn reads_text_values_as_their_schema_types() {
        let t = RequestRules::from_spec(&json!({"paths": {}, "components": {"schemas": {
            "Kind": {"type": "string", "enum": ["a", "b"]}
        }}}));
        let limit =
            json!({"type": "integer", "format": "uint64", "minimum": 1.0, "maximum": 200.0});
        assert!(t.check_text(&limit, "5", "limit").is_empty());
        let bad: Vec<String> = ["0", "-1", "x", "201"]
            .iter()
            .flat_map(|raw| t.check_text(&limit, raw, "limit"))
            .map(|p| p.message)
            .collect();
        assert_eq!(
            bad,
            vec![
                "must be between 1 and 200",
                "must be between 1 and 200",
                "must be an integer",
                "must be between 1 and 200"
            ]
        );
        let kind = json!({"$ref": "#/components/schemas/Kind"});
        assert_eq!(
            t.check_text(&kind, "c", "kind")[0].message,
            "must be one of \"a\", \"b\""
        );
        assert_eq!(
            t.check_text(&json!({"type": "boolean"}), "yes", "active")[0].message,
            "must be true or false"
        );
    }
}
