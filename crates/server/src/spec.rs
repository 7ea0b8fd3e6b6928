//! The published OpenAPI document: poem-openapi's output plus the credential schemes every
//! protected operation accepts, and the built-in plugin derived from it.

use serde_json::{json, Value};
use sigil_scope_registry::{Access, HttpRoute, ManifestMethod, PluginManifest};

use crate::api::{method_of, METHODS, PUBLIC_OPERATIONS};

const VERBS: [&str; 7] = ["get", "head", "post", "put", "patch", "delete", "options"];

/// Operations that do not change anything although they are POSTs.
const READ_POSTS: &[&str] = &["introspectToken"];

/// Adds security schemes and the registry method of each operation.
pub fn finish(raw: &str) -> Result<Value, String> {
    let mut doc: Value = serde_json::from_str(raw).map_err(|e| e.to_string())?;
    doc["components"]["securitySchemes"] = json!({
        "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
            "description": "A Sigil token (session, personal or application). `Authorization: authToken <token>` is accepted too."},
        "authTokenHeader": {"type": "apiKey", "in": "header", "name": "Auth-Token"},
        "authTokenQuery": {"type": "apiKey", "in": "query", "name": "auth_token"},
        "sessionQuery": {"type": "apiKey", "in": "query", "name": "session"}
    });
    if let Some(schemas) = doc["components"]["schemas"].as_object_mut() {
        schemas.values_mut().for_each(normalize_properties);
    }
    let security = json!([{"bearerAuth": []}, {"authTokenHeader": []}, {"authTokenQuery": []}, {"sessionQuery": []}]);
    if let Some(paths) = doc["paths"].as_object_mut() {
        for item in paths.values_mut() {
            for verb in VERBS {
                let Some(op) = item.get_mut(verb) else {
                    continue;
                };
                let op_id = op["operationId"].as_str().unwrap_or_default().to_owned();
                if let Some(method) = method_of(&op_id) {
                    op["x-sigil-method"] = json!(method);
                }
                if !PUBLIC_OPERATIONS.contains(&op_id.as_str()) {
                    op["security"] = security.clone();
                }
            }
        }
    }
    Ok(doc)
}

/// Property schemas as generators and validators read them:
/// - poem-openapi publishes an `Option<T>` field as a property that is not required, yet
///   writes `None` as `null` and reads `null` as `None`: say so (`nullable`), so answers
///   validate against the spec and generated clients accept the nulls. Fields with a
///   default (`#[oai(default)]`) are never null and stay as they are.
/// - A reference with a description comes out as `allOf: [{$ref}, {description}]`, and a
///   nullable one needs a wrapper too (siblings of `$ref` are ignored in OpenAPI 3.0).
///   `allOf` of an enum is no object, which client generators refuse; `anyOf` with the one
///   reference says the same and is understood by all of them.
fn normalize_properties(schema: &mut Value) {
    let required: Vec<String> = schema["required"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
        return;
    };
    for (name, prop) in props.iter_mut() {
        let Some(obj) = prop.as_object_mut() else {
            continue;
        };
        let nullable = !required.contains(name) && !obj.contains_key("default");
        let reference = obj.remove("$ref").or_else(|| {
            let members = obj.get("allOf")?.as_array()?;
            let refs: Vec<&Value> = members.iter().filter_map(|m| m.get("$ref")).collect();
            let annotations_only = members.iter().all(|m| {
                m.get("$ref").is_some()
                    || m.as_object().is_some_and(|o| {
                        o.keys()
                            .all(|k| matches!(k.as_str(), "description" | "title"))
                    })
            });
            let reference = match refs.as_slice() {
                [one] if annotations_only => (*one).clone(),
                _ => return None,
            };
            obj.remove("allOf");
            Some(reference)
        });
        match reference {
            Some(reference) if nullable || !obj.is_empty() => {
                obj.insert("anyOf".into(), json!([{ "$ref": reference }]));
            }
            Some(reference) => {
                obj.insert("$ref".into(), reference);
            }
            None => {}
        }
        if nullable {
            obj.insert("nullable".into(), json!(true));
        }
    }
}

/// The built-in plugin `sigil`: one method per operation of the spec. Fails when an
/// operation has no method or a method no operation.
pub fn builtin_plugin(doc: &Value) -> Result<PluginManifest, Vec<String>> {
    let mut methods = Vec::new();
    let mut errors = Vec::new();
    let mut seen = Vec::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            for verb in VERBS {
                let Some(op) = item.get(verb) else { continue };
                let op_id = op["operationId"].as_str().unwrap_or_default();
                let Some(method) = method_of(op_id) else {
                    errors.push(format!(
                        "operation {op_id} ({verb} {path}) has no registry method"
                    ));
                    continue;
                };
                seen.push(op_id.to_owned());
                let access = if matches!(verb, "get" | "head") || READ_POSTS.contains(&op_id) {
                    Access::Read
                } else {
                    Access::Change
                };
                methods.push(ManifestMethod {
                    id: method.to_owned(),
                    http: HttpRoute::new(verb, path),
                    access,
                    description: op["summary"].as_str().unwrap_or_default().to_owned(),
                    docs_url: Some(format!(
                        "/docs#/{}/{op_id}",
                        op["tags"][0].as_str().unwrap_or("default")
                    )),
                });
            }
        }
    }
    for (op, _) in METHODS {
        if !seen.iter().any(|s| s == op) {
            errors.push(format!(
                "method table names {op}, which is not an operation"
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(PluginManifest {
        id: "sigil".into(),
        name: "Sigil API".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        description: Some("Sigil's own REST API".into()),
        docs_url: Some("/docs".into()),
        methods,
        scope_sets: Vec::new(),
    })
}
