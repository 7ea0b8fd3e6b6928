//! The published OpenAPI document: poem-openapi's output plus the credential schemes every
//! protected operation accepts, and the built-in plugin derived from it.

use serde_json::{json, Value};
use sigil_scope_registry::{Access, HttpRoute, ManifestMethod, PluginManifest};

use sigil_token::SigilMethod;

use crate::api::method_of;

const VERBS: [&str; 7] = ["get", "head", "post", "put", "patch", "delete", "options"];

/// Operations that do not change anything although they are POSTs.
const READ_POSTS: &[&str] = &["introspectToken"];

/// Adds the registry method of each operation, and checks that every operation's
/// credential requirement is the one its method's audience calls for: the schemes come
/// from the caller parameter of the handler, so an operation that forgot it has none,
/// and the spec (and with it the server) is refused.
pub fn finish(raw: &str) -> Result<Value, String> {
    let mut doc: Value = serde_json::from_str(raw).map_err(|e| e.to_string())?;
    if let Some(schemas) = doc["components"]["schemas"].as_object_mut() {
        schemas.values_mut().for_each(normalize_properties);
    }
    let mut errors = Vec::new();
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, item) in paths.iter_mut() {
            for verb in VERBS {
                let Some(op) = item.get_mut(verb) else {
                    continue;
                };
                let op_id = op["operationId"].as_str().unwrap_or_default().to_owned();
                let Some(method) = SigilMethod::from_operation_id(&op_id) else {
                    errors.push(format!("{verb} {path} ({op_id}) has no Sigil method"));
                    continue;
                };
                op["x-sigil-method"] = json!(method.id());
                let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
                if secured == method.is_public() {
                    errors.push(format!(
                        "{op_id}: {} but its handler {} a caller parameter",
                        if method.is_public() {
                            "public"
                        } else {
                            "needs a credential"
                        },
                        if secured { "takes" } else { "lacks" },
                    ));
                }
            }
        }
    }
    close_request_objects(&mut doc);
    if errors.is_empty() {
        Ok(doc)
    } else {
        Err(errors.join("; "))
    }
}

/// Request objects take only the fields they declare (the server refuses others with
/// 422 `unknown_field`, see strict_json.rs): every object schema with declared properties
/// that a JSON request body reaches gets `additionalProperties: false`. Free-form objects
/// (no declared properties, or an `additionalProperties` of their own) stay as they are,
/// and so do members of an `allOf`, where the keyword would refuse the other members'
/// fields.
fn close_request_objects(doc: &mut Value) {
    /// Marks `schema` and the inline schemas inside it; queues the components it names
    /// (with whether they are reached as a member of an `allOf`).
    fn walk(schema: &mut Value, in_all_of: bool, queue: &mut Vec<(String, bool)>) {
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            let name = reference.rsplit('/').next().unwrap_or_default();
            queue.push((name.to_owned(), in_all_of));
            return;
        }
        let Some(obj) = schema.as_object_mut() else {
            return;
        };
        if obj.get("properties").is_some_and(Value::is_object)
            && !obj.contains_key("additionalProperties")
            && !in_all_of
        {
            obj.insert("additionalProperties".into(), json!(false));
        }
        for (key, value) in obj.iter_mut() {
            match key.as_str() {
                "properties" => {
                    if let Some(props) = value.as_object_mut() {
                        for prop in props.values_mut() {
                            walk(prop, false, queue);
                        }
                    }
                }
                "items" | "additionalProperties" => walk(value, false, queue),
                "allOf" | "anyOf" | "oneOf" => {
                    if let Some(members) = value.as_array_mut() {
                        for member in members {
                            walk(member, key == "allOf", queue);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    let mut queue = Vec::new();
    if let Some(paths) = doc["paths"].as_object_mut() {
        for item in paths.values_mut() {
            let Some(ops) = item.as_object_mut() else {
                continue;
            };
            for op in ops.values_mut() {
                let Some(content) = op
                    .pointer_mut("/requestBody/content")
                    .and_then(Value::as_object_mut)
                else {
                    continue;
                };
                for (media, body) in content.iter_mut() {
                    if media.starts_with("application/json") {
                        if let Some(schema) = body.get_mut("schema") {
                            walk(schema, false, &mut queue);
                        }
                    }
                }
            }
        }
    }
    let mut done = Vec::new();
    while let Some(next) = queue.pop() {
        if done.contains(&next) {
            continue;
        }
        if let Some(schema) = doc["components"]["schemas"].get_mut(&next.0) {
            walk(schema, next.1, &mut queue);
        }
        done.push(next);
    }
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
    for op in SigilMethod::ALL.iter().map(|m| m.operation_id()) {
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
