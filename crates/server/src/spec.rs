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
    declare_form_credentials(&mut doc);
    close_request_objects(&mut doc);
    declare_cross_field_rules(&mut doc);
    if errors.is_empty() {
        Ok(doc)
    } else {
        Err(errors.join("; "))
    }
}

/// Rules the server enforces that poem-openapi's validators cannot state, so that the
/// spec promises what the server accepts (schema fuzzing checks both ways):
/// - a field with a default takes `null` for it;
/// - an integer's format bounds it (`uint32`: 0..=4294967295, ...): the server refuses a
///   number outside it, so `minimum`/`maximum` say so where no validator did;
/// - createToken needs a scope: `scope_set`, `methods`, `read: true` or `change: true`
///   (`scope_required`), and createToken/updateToken take `scope_set` or `methods`, not
///   both (`ambiguous_scope`);
/// - registerPlugin takes exactly one of `manifest` and `openapi` (`manifest_required`);
///   with `openapi`, the plugin `id` too (`id_required`).
///
/// Runs after close_request_objects: the members added here are partial views of the
/// same object and must not be closed.
fn declare_cross_field_rules(doc: &mut Value) {
    fn bound_integers(schema: &mut Value) {
        match schema {
            Value::Object(obj) => {
                if obj.get("type").and_then(Value::as_str) == Some("integer") {
                    let range = match obj.get("format").and_then(Value::as_str) {
                        Some("uint8") => Some((json!(0), json!(u8::MAX))),
                        Some("uint16") => Some((json!(0), json!(u16::MAX))),
                        Some("uint32") => Some((json!(0), json!(u32::MAX))),
                        Some("uint64") => Some((json!(0), json!(u64::MAX))),
                        Some("int8") => Some((json!(i8::MIN), json!(i8::MAX))),
                        Some("int16") => Some((json!(i16::MIN), json!(i16::MAX))),
                        Some("int32") => Some((json!(i32::MIN), json!(i32::MAX))),
                        Some("int64") => Some((json!(i64::MIN), json!(i64::MAX))),
                        _ => None,
                    };
                    if let Some((min, max)) = range {
                        obj.entry("minimum").or_insert(min);
                        obj.entry("maximum").or_insert(max);
                    }
                }
                obj.values_mut().for_each(bound_integers);
            }
            Value::Array(items) => items.iter_mut().for_each(bound_integers),
            _ => {}
        }
    }
    bound_integers(doc);

    let schemas = &mut doc["components"]["schemas"];
    // A field with a default (`#[oai(default)]`) takes `null` for the default too.
    if let Some(all) = schemas.as_object_mut() {
        for schema in all.values_mut() {
            let required = schema["required"].clone();
            let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
                continue;
            };
            for (name, prop) in props.iter_mut() {
                let is_required = required
                    .as_array()
                    .is_some_and(|r| r.iter().any(|v| v.as_str() == Some(name.as_str())));
                if let Some(prop) = prop.as_object_mut() {
                    if prop.contains_key("default") && !is_required {
                        prop.insert("nullable".into(), json!(true));
                    }
                }
            }
        }
    }
    // `x-sigil-code`: the problem code a value breaking the rule is refused with (the
    // domain's own code, the same whichever layer finds it); `x-sigil-message`: what a
    // broken pattern means, in words (request_check.rs).
    let password = json!({
        "minLength": sigil_user::PasswordParams::default().min_length,
        "maxLength": 256,
        "x-sigil-code": "weak_password"
    });
    let ip_net = |code: &str| {
        json!({
            "pattern": ip_pattern(true),
            "x-sigil-code": code,
            "x-sigil-message": "must be an IP address or a CIDR block, such as 203.0.113.7 or 10.0.0.0/8"
        })
    };
    let email = json!({
        "pattern": EMAIL_PATTERN,
        "x-sigil-code": "invalid_user",
        "x-sigil-message": "must be an email address (local@domain.tld, no spaces), or empty to remove it"
    });
    let client_ip = json!({
        "pattern": ip_pattern(false),
        "x-sigil-code": "invalid_client_ip",
        "x-sigil-message": "must be an IP address, such as 203.0.113.7 or 2001:db8::1"
    });
    let username = json!({
        "pattern": "^[A-Za-z0-9._@-]{1,64}$",
        "x-sigil-code": "invalid_username",
        "x-sigil-message": "must be 1-64 characters of letters, digits, '.', '_', '-' and '@'"
    });
    let webhook_secret = json!({
        // 24-62 bytes: 8-20 groups and a tail of 0-2 bytes; 63-64: 21 groups and 0-1.
        "pattern": concat!(
            "^whsec_(([A-Za-z0-9+/]{4}){8,20}",
            "([A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?",
            "|([A-Za-z0-9+/]{4}){21}([A-Za-z0-9+/][AQgw]==)?)$"
        ),
        "x-sigil-code": "invalid_webhook_secret",
        "x-sigil-message": "must be whsec_ followed by the base64 of 24 to 64 random bytes"
    });
    let ws = format!("[{WHITE_SPACE}]*");
    let plugin_id = json!({
        "pattern": format!("^{ws}[a-z0-9][a-z0-9_-]{{0,63}}{ws}$"),
        "x-sigil-code": "invalid_manifest",
        "x-sigil-message": "must be 1-64 characters of a-z, 0-9, '_' and '-', starting with a letter or digit"
    });
    // Some character that `str::trim` keeps (the class is spelt out: `\S` means other
    // things in other regex engines).
    let text = |code: &str| {
        json!({
            "pattern": format!("[^{WHITE_SPACE}]"),
            "x-sigil-code": code,
            "x-sigil-message": "must not be empty or white space only"
        })
    };
    let one_method = json!({ "minItems": 1, "x-sigil-code": "invalid_scope" });
    let rules = [
        // The password policy (crates/user/src/password.rs); it also refuses a password
        // that contains the username, which no schema can say.
        ("CreateUserBody", "/properties/password", password.clone()),
        ("UpdateUserBody", "/properties/password", password.clone()),
        (
            "ChangePasswordBody",
            "/properties/new_password",
            password.clone(),
        ),
        ("CreateTenantBody", "/properties/admin_password", password),
        // validate_slug (crates/scope-registry/src/store/sets.rs); a built-in set's id is
        // a conflict (409 `scope_set_exists`).
        (
            "CreateScopeSetBody",
            "/properties/id",
            json!({
                "pattern": "^[a-z0-9_-]{2,63}$",
                "x-sigil-code": "invalid_scope_set_id",
                "x-sigil-message": "must be 2-63 characters of a-z, 0-9, '-' and '_'"
            }),
        ),
        // Secret::parse (crates/webhook/src/signing.rs): canonical padded base64.
        (
            "CreateWebhookBody",
            "/properties/secret",
            webhook_secret.clone(),
        ),
        ("UpdateWebhookBody", "/properties/secret", webhook_secret),
        // PluginManifest::validate (crates/scope-registry/src/manifest.rs), after trimming.
        ("ManifestDto", "/properties/id", plugin_id.clone()),
        ("RegisterPluginBody", "/properties/id", plugin_id),
        // validate_slug (crates/tenant/src/service.rs).
        (
            "CreateTenantBody",
            "/properties/slug",
            json!({
                "pattern": "^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$",
                "x-sigil-code": "invalid_slug",
                "x-sigil-message": "must be 2-63 characters of a-z, 0-9 and '-', not starting or ending with '-'"
            }),
        ),
        // Names checked after trimming: not white space only.
        ("CreateTokenBody", "/properties/name", text("invalid_token")),
        ("UpdateTokenBody", "/properties/name", text("invalid_token")),
        ("CreateTenantBody", "/properties/name", text("invalid_name")),
        ("UpdateTenantBody", "/properties/name", text("invalid_name")),
        (
            "CreateUserBody",
            "/properties/display_name",
            text("invalid_user"),
        ),
        (
            "UpdateUserBody",
            "/properties/display_name",
            text("invalid_user"),
        ),
        (
            "UpdateCurrentUserBody",
            "/properties/display_name",
            text("invalid_user"),
        ),
        ("ManifestDto", "/properties/name", text("invalid_manifest")),
        (
            "ManifestDto",
            "/properties/version",
            text("invalid_manifest"),
        ),
        (
            "ManifestScopeSetDto",
            "/properties/name",
            text("invalid_manifest"),
        ),
        // validate_username (crates/user/src/validate.rs).
        ("CreateUserBody", "/properties/username", username.clone()),
        ("CreateTenantBody", "/properties/admin_username", username),
        // validate_contact (crates/user/src/validate.rs); empty clears the address.
        ("CreateUserBody", "/properties/email", email.clone()),
        ("UpdateUserBody", "/properties/email", email.clone()),
        ("UpdateCurrentUserBody", "/properties/email", email.clone()),
        // A custom scope needs at least one method (`invalid_scope`).
        ("CreateTokenBody", "/properties/methods", one_method.clone()),
        ("UpdateTokenBody", "/properties/methods", one_method.clone()),
        // IPs and CIDRs (parse_ip_net, crates/tenant/src/policy.rs).
        (
            "CreateTokenBody",
            "/properties/ip_filter/items",
            ip_net("invalid_ip_filter"),
        ),
        (
            "UpdateTokenBody",
            "/properties/ip_filter/items",
            ip_net("invalid_ip_filter"),
        ),
        (
            "PolicyDto",
            "/properties/ip_allowlist/items",
            ip_net("invalid_policy"),
        ),
        // An IP address, nothing around it (introspectToken).
        ("IntrospectBody", "/properties/client_ip", client_ip.clone()),
        ("IntrospectForm", "/properties/client_ip", client_ip.clone()),
    ];
    for (schema, pointer, rule) in rules {
        if let (Some(target), Some(rule)) = (
            schemas
                .get_mut(schema)
                .and_then(|s| s.pointer_mut(pointer))
                .and_then(Value::as_object_mut),
            rule.as_object(),
        ) {
            for (key, value) in rule {
                target.insert(key.clone(), value.clone());
            }
        }
    }
    // Rules between fields (createToken: one of scope_set / methods / read / change, not
    // scope_set with methods; registerPlugin: a manifest, or an OpenAPI document with an
    // id) are said in the operations' descriptions, not as `anyOf` / `oneOf` / `not`:
    // the client generators in tests/clients cannot generate those cleanly.
}

/// Characters `str::trim` and `char::is_whitespace` take for white space (Unicode
/// White_Space), as a regex class body.
const WHITE_SPACE: &str =
    r"\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

/// An email address as validate_contact accepts it: no white space, something before the
/// first `@`, a dot after it; or empty (no address).
const EMAIL_PATTERN: &str = concat!(
    r"^$|^[^@\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+@",
    r"[^\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*\.",
    r"[^\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
);

/// An IPv4 or IPv6 address as `IpAddr::from_str` reads it; with `net`, a CIDR may follow
/// and white space may surround it (parse_ip_net trims).
fn ip_pattern(net: bool) -> String {
    let octet = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
    let v4 = format!("{octet}(\\.{octet}){{3}}");
    let h = "[0-9a-fA-F]{1,4}";
    let v6 = [
        format!("({h}:){{7}}{h}"),
        format!("({h}:){{1,7}}:"),
        format!("({h}:){{1,6}}:{h}"),
        format!("({h}:){{1,5}}(:{h}){{1,2}}"),
        format!("({h}:){{1,4}}(:{h}){{1,3}}"),
        format!("({h}:){{1,3}}(:{h}){{1,4}}"),
        format!("({h}:){{1,2}}(:{h}){{1,5}}"),
        format!("{h}:(:{h}){{1,6}}"),
        format!(":((:{h}){{1,7}}|:)"),
        format!("({h}:){{6}}{v4}"),
        format!("::({h}:){{0,5}}{v4}"),
        format!("({h}:){{1,4}}:{v4}"),
    ]
    .join("|");
    if net {
        let ws = format!("[{WHITE_SPACE}]*");
        format!(
            "^{ws}({v4}(/([0-9]|[12][0-9]|3[0-2]))?|({v6})(/([0-9]|[1-9][0-9]|1[01][0-9]|12[0-8]))?){ws}$"
        )
    } else {
        format!("^({v4}|{v6})$")
    }
}

/// Request objects take only the fields they declare (the server refuses others with
/// 422 `unknown_field`, see request_check.rs): every object schema with declared properties
/// that a JSON request body reaches gets `additionalProperties: false`. Free-form objects
/// (no declared properties, or an `additionalProperties` of their own) stay as they are,
/// and so do members of an `allOf`, where the keyword would refuse the other members'
/// fields.
/// Form bodies take the credential as a field too (`auth_token`, as the query parameter
/// of that name: the legacy `auth_token` POST parameter), so their schemas declare it.
fn declare_form_credentials(doc: &mut Value) {
    let mut forms = Vec::new();
    if let Some(paths) = doc["paths"].as_object() {
        let ops = paths
            .values()
            .filter_map(Value::as_object)
            .flat_map(|o| o.values());
        // Only operations that take a credential.
        for op in ops.filter(|op| op["security"].as_array().is_some_and(|s| !s.is_empty())) {
            let schema =
                &op["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"];
            if let Some(name) = schema["$ref"].as_str().and_then(|r| r.rsplit('/').next()) {
                forms.push(name.to_owned());
            }
        }
    }
    for name in forms {
        if let Some(props) = doc["components"]["schemas"][&name]["properties"].as_object_mut() {
            props.entry("auth_token").or_insert_with(|| {
                json!({
                    "type": "string",
                    "maxLength": 8192,
                    "nullable": true,
                    "description": "The caller's credential, instead of the Authorization header (when the tenant policy allows credentials in forms)."
                })
            });
        }
    }
}

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
                    if media.starts_with("application/json")
                        || media.starts_with("application/x-www-form-urlencoded")
                    {
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
                    cost: 1,
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
