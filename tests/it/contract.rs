//! The HTTP behaviour generated OpenAPI clients rely on: every 405 names the allowed
//! methods, request bodies take only the fields the spec declares (and the spec says so),
//! and a body the operation does not read never costs the client its keep-alive
//! connection.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::harness::{Resp, TestServer};

const VERBS: [&str; 7] = ["get", "head", "post", "put", "patch", "delete", "options"];
const SOME_ID: &str = "0b6f2c4e-59a5-4c1e-9a55-3a9c1f1f2d7e";

async fn live_spec(s: &TestServer) -> Value {
    s.client
        .get(s.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A concrete path for a template: every parameter becomes [`SOME_ID`].
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|s| if s.starts_with('{') { SOME_ID } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

fn allow_set(header: &str) -> BTreeSet<String> {
    header
        .split(',')
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty())
        .collect()
}

#[tokio::test]
async fn every_405_names_the_allowed_methods() {
    let s = TestServer::start().await;
    let spec = live_spec(&s).await;
    let paths = spec["paths"].as_object().unwrap();
    let mut checked = 0;
    for (template, item) in paths {
        let mut allowed: BTreeSet<String> = VERBS
            .iter()
            .filter(|v| item.get(**v).is_some())
            .map(|v| v.to_ascii_uppercase())
            .collect();
        if allowed.contains("GET") {
            allowed.insert("HEAD".into());
        }
        let path = concrete(template);
        for verb in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
            if allowed.contains(verb) {
                continue;
            }
            let method = Method::from_bytes(verb.as_bytes()).unwrap();
            let r = s.call(method, &path, None, Some(json!({}))).await;
            assert_eq!(
                r.status.as_u16(),
                405,
                "{verb} {path}: {} {}",
                r.status,
                r.body
            );
            r.expect(405, "method_not_allowed");
            let header = r
                .header("allow")
                .unwrap_or_else(|| panic!("{verb} {path}: 405 without Allow"));
            assert_eq!(allow_set(header), allowed, "{verb} {path}: Allow {header}");
            assert!(
                r.body["detail"].as_str().unwrap().contains(verb),
                "{}",
                r.body
            );
            checked += 1;
        }
    }
    assert!(checked > 50, "only {checked} refusals checked");

    // The router's choice between a literal segment and a parameter is followed.
    let r = s.call(Method::DELETE, "/api/v1/users/me", None, None).await;
    r.expect(405, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("GET, HEAD, PATCH"));
    let r = s
        .call(Method::PUT, "/api/v1/tokens/hygiene", None, None)
        .await;
    r.expect(405, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    let r = s
        .call(
            Method::PUT,
            &format!("/api/v1/tokens/{SOME_ID}"),
            None,
            None,
        )
        .await;
    r.expect(405, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("GET, HEAD, PATCH, DELETE"));
    // HEAD where there is no GET.
    let r = s.call(Method::HEAD, "/api/v1/auth/login", None, None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.header("allow"), Some("POST"));
    // Supported methods are not affected.
    let r = s.call(Method::HEAD, "/healthz", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
}

/// The JSON request body schemas of the spec's operations: (method, path template, schema).
fn json_bodies(spec: &Value) -> Vec<(String, String, Value)> {
    let mut found = Vec::new();
    for (template, item) in spec["paths"].as_object().unwrap() {
        for verb in VERBS {
            let Some(content) = item[verb]["requestBody"]["content"].as_object() else {
                continue;
            };
            for (media, body) in content {
                if media.starts_with("application/json") {
                    found.push((
                        verb.to_ascii_uppercase(),
                        template.clone(),
                        body["schema"].clone(),
                    ));
                }
            }
        }
    }
    found
}

/// `schema` with its `$ref` followed.
fn resolved<'a>(spec: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => spec.pointer(r.trim_start_matches('#')).unwrap(),
        None => schema,
    }
}

fn closed(schema: &Value) -> bool {
    schema["properties"].is_object() && schema["additionalProperties"] == json!(false)
}

#[tokio::test]
async fn every_json_body_refuses_unknown_fields() {
    let s = TestServer::start().await;
    let spec = live_spec(&s).await;
    let bodies = json_bodies(&spec);
    assert!(bodies.len() >= 15, "{} JSON bodies", bodies.len());
    let unknown = json!({"surely_not_a_field": 1, "nor_this": {"a": 1}});
    let mut checked = 0;
    for (verb, template, schema) in &bodies {
        let method = Method::from_bytes(verb.as_bytes()).unwrap();
        let path = concrete(template);
        let root = resolved(&spec, schema);
        let items = resolved(&spec, &root["items"]);
        let (body, at) = if closed(root) {
            (unknown.clone(), "")
        } else if root["type"] == "array" && closed(items) {
            (json!([unknown]), "[0].")
        } else {
            // A free-form body (its fields are not the server's to know): not refused
            // for them.
            let body = if root["type"] == "array" {
                json!([unknown])
            } else {
                unknown.clone()
            };
            let r = s.call(method, &path, None, Some(body)).await;
            assert_ne!(r.code(), "unknown_field", "{verb} {path}: {}", r.body);
            continue;
        };
        let r = s.call(method, &path, None, Some(body)).await;
        r.expect(422, "unknown_field");
        let detail = r.body["detail"].as_str().unwrap();
        assert!(
            detail.contains("surely_not_a_field") && detail.contains("nor_this"),
            "{verb} {path}: {detail}"
        );
        // Each undeclared field is named (besides, say, the required ones missing).
        let unknown: Vec<String> = r
            .errors()
            .into_iter()
            .filter(|e| e.ends_with(": is not taken by this operation"))
            .collect();
        assert_eq!(
            unknown,
            vec![
                format!("{at}nor_this: is not taken by this operation"),
                format!("{at}surely_not_a_field: is not taken by this operation")
            ],
            "{verb} {path}"
        );
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} closed bodies");
}

#[tokio::test]
async fn a_misspelt_token_field_makes_no_token() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let expires = (chrono::Utc::now() + chrono::Duration::days(3)).to_rfc3339();
    let r = s
        .post(
            "/api/v1/tokens",
            &t.admin,
            json!({"name": "ci", "read": true, "expires_at": expires,
                "ipfilter": ["10.0.0.0/8"], "enable": false}),
        )
        .await;
    r.expect(422, "unknown_field");
    assert_eq!(
        r.errors(),
        vec![
            "enable: is not taken by this operation",
            "ipfilter: is not taken by this operation"
        ]
    );
    let listed = s.get("/api/v1/tokens", &t.admin).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    assert!(
        !listed.body.to_string().contains("\"ci\""),
        "no token was made: {}",
        listed.body
    );
    // Spelt right, the same request works and says what it did.
    let r = s
        .post(
            "/api/v1/tokens",
            &t.admin,
            json!({"name": "ci", "read": true, "expires_at": expires,
                "ip_filter": ["10.0.0.0/8"], "enabled": false}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["token"]["enabled"], json!(false), "{}", r.body);
    assert_eq!(
        r.body["token"]["ip_filter"],
        json!(["10.0.0.0/8"]),
        "{}",
        r.body
    );
    // An update is held to the same rule.
    let id = r.body["token"]["id"].as_str().unwrap().to_owned();
    let r = s
        .patch(
            &format!("/api/v1/tokens/{id}"),
            &t.admin,
            json!({"enable": true}),
        )
        .await;
    r.expect(422, "unknown_field");
    let got = s.get(&format!("/api/v1/tokens/{id}"), &t.admin).await;
    assert_eq!(got.body["enabled"], json!(false), "{}", got.body);
}

fn manifest(extra: Value) -> Value {
    let mut m = json!({
        "id": "shop",
        "name": "Shop",
        "version": "1.0.0",
        "methods": [
            {"id": "shop.orders.list", "http": {"method": "GET", "path": "/orders"}, "access": "read"},
            {"id": "shop.orders.cancel", "http": {"method": "POST", "path": "/orders/{id}/cancel"}, "access": "change"}
        ],
        "scope_sets": [{"id": "shop-read", "name": "Shop (read)", "methods": ["shop.orders.*"], "access": "read"}]
    });
    if let (Some(m), Value::Object(extra)) = (m.as_object_mut(), extra) {
        m.extend(extra);
    }
    m
}

#[tokio::test]
async fn nested_unknown_fields_are_named_by_their_path() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let mut m = manifest(json!({"homepage": "https://shop.example"}));
    m["methods"][1]["http"]["verb"] = json!("POST");
    m["scope_sets"][0]["colour"] = json!("red");
    let r = s
        .post("/api/v1/plugins", &t.admin, json!({"manifest": m}))
        .await;
    r.expect(422, "unknown_field");
    assert_eq!(
        r.error_fields(),
        vec![
            "manifest.homepage",
            "manifest.methods[1].http.verb",
            "manifest.scope_sets[0].colour",
        ]
    );
}

/// Every object schema a JSON request body reaches, by JSON pointer into the spec.
fn request_objects(spec: &Value) -> Vec<(String, Value)> {
    fn walk(
        spec: &Value,
        schema: &Value,
        at: String,
        seen: &mut BTreeSet<String>,
        out: &mut Vec<(String, Value)>,
    ) {
        if let Some(reference) = schema["$ref"].as_str() {
            let pointer = reference.trim_start_matches('#').to_owned();
            if seen.insert(pointer.clone()) {
                let target = spec.pointer(&pointer).unwrap().clone();
                walk(spec, &target, pointer, seen, out);
            }
            return;
        }
        if schema["properties"].is_object() {
            out.push((at.clone(), schema.clone()));
            for (name, prop) in schema["properties"].as_object().unwrap() {
                walk(spec, prop, format!("{at}/properties/{name}"), seen, out);
            }
        }
        if schema["items"].is_object() {
            walk(spec, &schema["items"], format!("{at}/items"), seen, out);
        }
        for key in ["allOf", "anyOf", "oneOf"] {
            for (i, member) in schema[key].as_array().into_iter().flatten().enumerate() {
                walk(spec, member, format!("{at}/{key}/{i}"), seen, out);
            }
        }
    }
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (verb, template, schema) in json_bodies(spec) {
        walk(
            spec,
            &schema,
            format!("{verb} {template}"),
            &mut seen,
            &mut out,
        );
    }
    out
}

#[tokio::test]
async fn the_spec_says_request_objects_are_closed() {
    let s = TestServer::start().await;
    let spec = live_spec(&s).await;
    let objects = request_objects(&spec);
    // Each says whether it takes other fields: `false` (refused), or a schema for them
    // (a free-form object by design).
    for (at, schema) in &objects {
        assert!(
            schema.get("additionalProperties").is_some(),
            "{at} does not say whether it takes unknown fields"
        );
    }
    let closed_objects = objects.iter().filter(|(_, s)| closed(s)).count();
    assert!(
        closed_objects >= 20,
        "{closed_objects} of {} request objects are closed",
        objects.len()
    );
    let names: BTreeSet<&str> = objects
        .iter()
        .filter_map(|(at, _)| at.strip_prefix("/components/schemas/"))
        .collect();
    for name in [
        "CreateTokenBody",
        "UpdateTokenBody",
        "ManifestDto",
        "HttpRouteDto",
    ] {
        assert!(
            names.contains(name),
            "{name} is not a request object: {names:?}"
        );
        assert!(
            closed(&spec["components"]["schemas"][name]),
            "{name} takes unknown fields"
        );
    }
    // The free-form OpenAPI document stays free-form.
    let openapi = &spec["components"]["schemas"]["RegisterPluginBody"]["properties"]["openapi"];
    assert!(openapi.get("additionalProperties").is_none(), "{openapi}");
    assert!(openapi.get("type").is_none(), "{openapi}");
    // Form bodies are closed too; those of operations that take a credential declare
    // the `auth_token` field (the legacy POST parameter).
    let login = &spec["components"]["schemas"]["LoginForm"];
    assert_eq!(login["additionalProperties"], false, "{login}");
    assert!(login["properties"].get("auth_token").is_none(), "{login}");
    let introspect = &spec["components"]["schemas"]["IntrospectForm"];
    assert_eq!(introspect["additionalProperties"], false, "{introspect}");
    assert_eq!(introspect["properties"]["auth_token"]["type"], "string");
}

/// One HTTP/1.1 answer read off a raw connection: status, lower-cased headers, body.
struct RawAnswer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawAnswer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

async fn read_answer(conn: &mut BufReader<TcpStream>) -> std::io::Result<RawAnswer> {
    let mut line = String::new();
    if conn.read_line(&mut line).await? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if conn.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((n, v)) = l.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let mut answer = RawAnswer {
        status,
        headers,
        body: Vec::new(),
    };
    if let Some(len) = answer.header("content-length") {
        let len: usize = len.parse().map_err(std::io::Error::other)?;
        answer.body = vec![0; len];
        conn.read_exact(&mut answer.body).await?;
    } else if answer
        .header("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        loop {
            line.clear();
            conn.read_line(&mut line).await?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(std::io::Error::other)?;
            let mut chunk = vec![0; size + 2];
            conn.read_exact(&mut chunk).await?;
            if size == 0 {
                break;
            }
            answer.body.extend_from_slice(&chunk[..size]);
        }
    }
    Ok(answer)
}

/// Writes a request's head and then, separately (so that it may arrive after the server
/// has the head), its body.
async fn send_split(conn: &mut BufReader<TcpStream>, head: &str, body: &[u8]) {
    conn.get_mut().write_all(head.as_bytes()).await.unwrap();
    conn.get_mut().flush().await.unwrap();
    if !body.is_empty() {
        tokio::task::yield_now().await;
        conn.get_mut().write_all(body).await.unwrap();
    }
}

#[tokio::test]
async fn unread_bodies_keep_the_connection() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let host = s.base.trim_start_matches("http://").to_owned();
    let stream = TcpStream::connect(&host).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let mut conn = BufReader::new(stream);
    for i in 0..1000 {
        // A GET with a body, and now and then a POST of an operation that takes none.
        let (head, want) = if i % 50 == 49 {
            (
                format!(
                    "POST /api/v1/users/{SOME_ID}/deactivate HTTP/1.1\r\nHost: {host}\r\n\
                     Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
                     Content-Length: 2\r\n\r\n",
                    t.admin
                ),
                404,
            )
        } else {
            (
                format!(
                    "GET /api/v1/users/me HTTP/1.1\r\nHost: {host}\r\n\
                     Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
                     Content-Length: 2\r\n\r\n",
                    t.admin
                ),
                200,
            )
        };
        send_split(&mut conn, &head, b"{}").await;
        let answer = tokio::time::timeout(Duration::from_secs(10), read_answer(&mut conn))
            .await
            .unwrap_or_else(|_| panic!("request {i}: no answer in time"))
            .unwrap_or_else(|e| panic!("request {i}: no answer on the connection: {e}"));
        assert_eq!(
            answer.status,
            want,
            "request {i}: {}",
            String::from_utf8_lossy(&answer.body)
        );
        assert_ne!(
            answer.header("connection"),
            Some("close"),
            "request {i} ends the connection"
        );
    }
}

#[tokio::test]
async fn pooled_client_keeps_one_connection_through_unread_bodies() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = s.url("/api/v1/users/me");
    for i in 0..1000 {
        let r = client
            .get(&url)
            .bearer_auth(&t.admin)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        let r = Resp::from(r).await;
        assert_eq!(r.status, StatusCode::OK, "request {i}: {}", r.body);
    }
}

#[tokio::test]
async fn a_body_left_unread_ends_the_connection_openly() {
    let s = TestServer::start().await;
    let host = s.base.trim_start_matches("http://").to_owned();
    let stream = TcpStream::connect(&host).await.unwrap();
    let mut conn = BufReader::new(stream);
    // Over the body limit: refused before it is read, and the answer says the
    // connection ends.
    let head = format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        64 * 1024 * 1024
    );
    send_split(&mut conn, &head, b"{").await;
    let answer = tokio::time::timeout(Duration::from_secs(10), read_answer(&mut conn))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.status, 413);
    assert_eq!(answer.header("connection"), Some("close"));
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "{}", String::from_utf8_lossy(&rest));
}

/// The fields of the list envelope, in the spec's order.
const ENVELOPE: [&str; 4] = ["items", "total", "offset", "limit"];

#[tokio::test]
async fn every_list_answers_one_envelope() {
    let s = TestServer::start().await;
    let spec = live_spec(&s).await;
    let t = s.tenant_admin("acme").await;
    let mut lists = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        let Some(op) = item.get("get") else { continue };
        let id = op["operationId"].as_str().unwrap();
        if !id.starts_with("list") {
            continue;
        }
        lists.push(id.to_owned());
        // Declared: `offset` 0..=1000000 and `limit` 1..=200 as query parameters …
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        let param = |name: &str| {
            params
                .iter()
                .find(|p| p["name"] == name && p["in"] == "query")
                .unwrap_or_else(|| panic!("{id} has no `{name}` query parameter"))["schema"]
                .clone()
        };
        let (offset, limit) = (param("offset"), param("limit"));
        assert_eq!(offset["minimum"], 0.0, "{id} offset: {offset}");
        assert_eq!(offset["maximum"], 1_000_000.0, "{id} offset: {offset}");
        assert_eq!(limit["minimum"], 1.0, "{id} limit: {limit}");
        assert_eq!(limit["maximum"], 200.0, "{id} limit: {limit}");
        // … and the envelope as the answer.
        let content = op["responses"]["200"]["content"].as_object().unwrap();
        let schema_ref = content.values().next().unwrap()["schema"]["$ref"]
            .as_str()
            .unwrap_or_else(|| panic!("{id} answers no named object"));
        let name = schema_ref.trim_start_matches("#/components/schemas/");
        let schema = &spec["components"]["schemas"][name];
        let required: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        assert_eq!(required[..4], ENVELOPE, "{id} ({name}): {schema}");
        assert_eq!(schema["properties"]["items"]["type"], "array", "{id}");
        let extra: Vec<&str> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .filter(|f| !ENVELOPE.contains(f))
            .collect();
        let allowed: &[&str] = if id == "listAuditEvents" {
            &["next_cursor"]
        } else {
            &[]
        };
        assert_eq!(extra, allowed, "{id} ({name}) has other fields");

        // The live answer has the same shape, and honours the page asked for.
        let caller = if id == "listTenants" {
            s.operator_token()
        } else {
            t.admin.clone()
        };
        // A list under an object (a webhook's deliveries) pages that object's items.
        let path = if path.contains("{webhook_id}") {
            let r = s
                .post(
                    "/api/v1/webhooks",
                    &t.admin,
                    json!({"url": "https://lists.invalid/hook"}),
                )
                .await;
            assert_eq!(r.status, 201, "{}", r.body);
            path.replace("{webhook_id}", r.body["webhook"]["id"].as_str().unwrap())
        } else {
            path.clone()
        };
        let url = format!("{path}?offset=1&limit=1");
        let r = s.get(&url, &caller).await;
        assert_eq!(r.status, 200, "{id}: {}", r.body);
        assert!(r.body["items"].as_array().unwrap().len() <= 1, "{id}");
        assert!(r.body["total"].is_u64(), "{id}: {}", r.body);
        assert_eq!(r.body["offset"], 1, "{id}: {}", r.body);
        assert_eq!(r.body["limit"], 1, "{id}: {}", r.body);
        for bad in ["offset=-1", "limit=0", "limit=201"] {
            let r = s.get(&format!("{path}?{bad}"), &caller).await;
            assert_eq!(r.status, 422, "{id}?{bad}: {}", r.body);
            assert_eq!(r.code(), "validation_failed", "{id}?{bad}: {}", r.body);
        }
    }
    lists.sort();
    assert_eq!(
        lists,
        [
            "listAuditEvents",
            "listMethods",
            "listPlugins",
            "listScopeSets",
            "listSigningKeys",
            "listTenants",
            "listTokens",
            "listUsers",
            "listWebhookDeliveries",
            "listWebhooks",
        ]
    );
}

/// One validation style: every refused body, query, path or header value answers 422
/// problem JSON naming each field, in Sigil's words, with the allowed values or bounds;
/// 400 only for a body that is not JSON at all.
#[tokio::test]
async fn every_refused_value_is_named_in_one_style() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    // Several body problems at once, each named by its path.
    let r = s
        .post(
            "/api/v1/users",
            &t.admin,
            json!({"username": "", "role": "owner", "display_name": 7, "api_access": "yes"}),
        )
        .await;
    r.expect(422, "validation_failed");
    assert_eq!(
        r.errors(),
        vec![
            "api_access: must be true or false",
            "display_name: must be a string",
            r#"role: must be one of "admin", "token_manager", "member""#,
            "username: must not be empty",
        ]
    );
    // A date without its time, and a null where a value is required.
    let r = s
        .post(
            "/api/v1/tokens",
            &t.admin,
            json!({"name": null, "read": true, "expires_at": "2030-01-31"}),
        )
        .await;
    r.expect(422, "validation_failed");
    assert_eq!(
        r.errors(),
        vec![
            "expires_at: must be a date and time in RFC 3339 form, such as 2027-01-31T12:00:00Z",
            "name: must not be null",
        ]
    );
    // A name of white space only: the token rule's own code, as the spec states it.
    let r = s
        .post(
            "/api/v1/tokens",
            &t.admin,
            json!({"name": " \t ", "read": true, "expires_at": "2030-01-31T00:00:00Z"}),
        )
        .await;
    r.expect(422, "invalid_token");
    assert_eq!(
        r.errors(),
        vec!["name: must not be empty or white space only"]
    );
    // A policy with one field: every missing required field is named.
    let r = s
        .call(
            Method::PUT,
            "/api/v1/tenant/policy",
            Some(&t.admin),
            Some(json!({"allow_non_expiring_tokens": true})),
        )
        .await;
    r.expect(422, "validation_failed");
    assert!(
        r.errors()
            .contains(&"session_lifetime_secs: is required".to_owned()),
        "{}",
        r.body
    );
    // Query parameters: bounds, types, allowed values, and a parameter the operation
    // does not take.
    let r = s
        .get("/api/v1/users?limit=500&active=maybe&kind=robot", &t.admin)
        .await;
    r.expect(422, "validation_failed");
    assert_eq!(
        r.errors(),
        vec![
            r#"kind: must be one of "person", "api""#,
            "active: must be true or false",
            "limit: must be between 1 and 200",
        ]
    );
    let r = s.get("/api/v1/tokens?enable=false", &t.admin).await;
    r.expect(422, "unknown_field");
    assert_eq!(r.errors(), vec!["enable: is not taken by this operation"]);
    // A path parameter.
    let r = s.get("/api/v1/tokens/not-a-uuid", &t.admin).await;
    r.expect(422, "validation_failed");
    assert_eq!(
        r.errors(),
        vec!["token_id: must be a UUID, such as 0190f2a4-7c3e-7b6a-9d1e-3f2a1b0c9d8e"]
    );
    // A form field, read as the type the schema gives it.
    let r = Resp::from(
        s.client
            .post(s.url("/api/v1/introspect"))
            .bearer_auth(&t.admin)
            .form(&[("token", "x"), ("client_ip", "not an ip")])
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.expect(422, "invalid_client_ip");
    assert_eq!(
        r.errors(),
        vec!["client_ip: must be an IP address, such as 203.0.113.7 or 2001:db8::1"]
    );
    // Not JSON at all: 400, and nothing was made.
    let r = Resp::from(
        s.client
            .post(s.url("/api/v1/users"))
            .bearer_auth(&t.admin)
            .header("content-type", "application/json")
            .body("{\"username\": \"eve\",")
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.expect(400, "malformed_body");
    let users = s.get("/api/v1/users?q=eve", &t.admin).await;
    assert_eq!(users.body["total"], 0, "{}", users.body);
}
