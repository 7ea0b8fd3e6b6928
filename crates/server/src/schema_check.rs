//! Checks one request value against its schema in the published spec and says, in Sigil's
//! words, everything that is wrong with it: each problem with the field it is in (`name`,
//! `scope.methods[2]`), allowed values listed, bounds and formats spelled out. The spec is
//! the one source of the rules, so what the spec promises and what the server refuses
//! cannot drift apart.

use std::collections::{BTreeMap, HashMap};

use regex::Regex;
use serde_json::Value;

/// One refused value: where, what is wrong, and the problem code the spec gives the rule
/// it breaks (`x-sigil-code`, e.g. `weak_password`), if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub field: String,
    pub message: String,
    pub code: Option<String>,
}

impl From<Finding> for crate::problem::FieldProblem {
    fn from(f: Finding) -> Self {
        Self {
            field: f.field,
            message: f.message,
        }
    }
}

const MAX_DEPTH: usize = 32;

/// The spec's component schemas, with their patterns compiled once.
pub struct Schemas {
    components: Value,
    patterns: HashMap<String, Regex>,
}

impl Schemas {
    pub fn from_spec(spec: &Value) -> Self {
        let mut patterns = HashMap::new();
        collect_patterns(spec, &mut patterns);
        Schemas {
            components: spec["components"]["schemas"].clone(),
            patterns,
        }
    }

    /// Follows `$ref`s to the schema they name.
    pub fn resolve<'a>(&'a self, mut schema: &'a Value) -> &'a Value {
        for _ in 0..MAX_DEPTH {
            match schema["$ref"].as_str() {
                Some(reference) => {
                    let name = reference.rsplit('/').next().unwrap_or_default();
                    match self.components.get(name) {
                        Some(target) => schema = target,
                        None => return schema,
                    }
                }
                None => return schema,
            }
        }
        schema
    }

    /// The JSON type a schema gives its values (through `$ref`, `allOf` and a single
    /// `anyOf`/`oneOf` member), for reading query, header and form values as that type.
    pub fn scalar_type<'a>(&'a self, schema: &'a Value) -> Option<&'a str> {
        let schema = self.resolve(schema);
        if let Some(t) = schema["type"].as_str() {
            return Some(t);
        }
        for key in ["allOf", "anyOf", "oneOf"] {
            if let Some(first) = schema[key].as_array().and_then(|a| a.first()) {
                return self.scalar_type(first);
            }
        }
        None
    }

    /// Every problem of `value` against `schema`; `at` names the value.
    pub fn check(&self, schema: &Value, value: &Value, at: &str) -> Vec<Finding> {
        let mut problems = Vec::new();
        self.check_at(schema, value, at, 0, &mut problems);
        problems
    }

    fn check_at(
        &self,
        schema: &Value,
        value: &Value,
        at: &str,
        depth: usize,
        out: &mut Vec<Finding>,
    ) {
        if depth > MAX_DEPTH {
            return;
        }
        let start = out.len();
        self.check_value(schema, value, at, depth, out);
        // The rule's own code, for the problems found at this schema or below it.
        if let Some(code) = schema["x-sigil-code"].as_str() {
            for found in &mut out[start..] {
                found.code.get_or_insert_with(|| code.to_owned());
            }
        }
    }

    fn check_value(
        &self,
        schema: &Value,
        value: &Value,
        at: &str,
        depth: usize,
        out: &mut Vec<Finding>,
    ) {
        let schema = self.resolve(schema);
        if value.is_null() {
            if !self.nullable(schema) {
                out.push(mismatch(at, "must not be null"));
            }
            return;
        }
        if let Some(all) = schema["allOf"].as_array() {
            for member in all {
                self.check_at(member, value, at, depth + 1, out);
            }
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(any) = schema[key].as_array() {
                let mut first = None;
                for member in any {
                    let mut found = Vec::new();
                    self.check_at(member, value, at, depth + 1, &mut found);
                    if found.is_empty() {
                        first = None;
                        break;
                    }
                    first.get_or_insert(found);
                }
                out.extend(first.unwrap_or_default());
            }
        }
        match schema["type"].as_str() {
            Some("string") => match value.as_str() {
                Some(text) => self.check_string(schema, text, at, out),
                None => out.push(mismatch(at, &format!("must be {}", describe(schema)))),
            },
            Some("integer") => check_integer(schema, value, at, out),
            Some("number") => match value.as_f64() {
                Some(n) => check_bounds(schema, n, at, out),
                None => out.push(mismatch(at, "must be a number")),
            },
            Some("boolean") if !value.is_boolean() => {
                out.push(mismatch(at, "must be true or false"));
            }
            Some("array") => match value.as_array() {
                Some(items) => {
                    check_count(schema, items.len(), at, out);
                    for (i, item) in items.iter().enumerate() {
                        let path = format!("{at}[{i}]");
                        self.check_at(&schema["items"], item, &path, depth + 1, out);
                    }
                }
                None => out.push(mismatch(at, "must be an array")),
            },
            Some("object") => match value.as_object() {
                Some(fields) => self.check_object(schema, fields, at, depth, out),
                None => out.push(mismatch(at, "must be an object")),
            },
            _ => {}
        }
    }

    fn nullable(&self, schema: &Value) -> bool {
        if schema["nullable"] == true {
            return true;
        }
        // A schema that says nothing of the type (`{}`, any JSON value) takes null too.
        let composed = ["allOf", "anyOf", "oneOf", "$ref"]
            .iter()
            .any(|key| schema.get(*key).is_some());
        if schema.get("type").is_none() && schema.get("enum").is_none() && !composed {
            return true;
        }
        ["anyOf", "oneOf"].iter().any(|key| {
            schema[*key]
                .as_array()
                .is_some_and(|any| any.iter().any(|m| self.nullable(self.resolve(m))))
        })
    }

    fn check_object(
        &self,
        schema: &Value,
        fields: &serde_json::Map<String, Value>,
        at: &str,
        depth: usize,
        out: &mut Vec<Finding>,
    ) {
        let required: Vec<&str> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for name in &required {
            if !fields.contains_key(*name) {
                out.push(mismatch(&join(at, name), "is required"));
            }
        }
        for (name, field) in fields {
            let path = join(at, name);
            let declared = schema["properties"].get(name);
            let field_schema = match declared {
                Some(s) => s,
                None if schema["additionalProperties"].is_object() => {
                    &schema["additionalProperties"]
                }
                // Undeclared fields are reported by `unknown_fields`.
                None => continue,
            };
            // An optional field may be null: it means "not given".
            if field.is_null() && !required.contains(&name.as_str()) && declared.is_some() {
                continue;
            }
            self.check_at(field_schema, field, &path, depth + 1, out);
        }
    }

    fn check_string(&self, schema: &Value, text: &str, at: &str, out: &mut Vec<Finding>) {
        if let Some(allowed) = schema["enum"].as_array() {
            if !allowed.iter().any(|v| v.as_str() == Some(text)) {
                out.push(problem(at, &format!("must be {}", one_of(allowed))));
            }
            return;
        }
        let length = text.chars().count();
        let min = schema["minLength"].as_u64();
        let max = schema["maxLength"].as_u64();
        let found = out.len();
        match (min, max) {
            (Some(1), _) if length == 0 => out.push(problem(at, "must not be empty")),
            (Some(min), _) if (length as u64) < min => {
                out.push(problem(at, &format!("must have at least {min} characters")));
            }
            (_, Some(max)) if length as u64 > max => {
                out.push(problem(at, &format!("must have at most {max} characters")));
            }
            _ => {}
        }
        match schema["format"].as_str() {
            Some("date-time") if chrono::DateTime::parse_from_rfc3339(text).is_err() => {
                out.push(problem(
                    at,
                    "must be a date and time in RFC 3339 form, such as 2027-01-31T12:00:00Z",
                ))
            }
            Some("uuid") if uuid::Uuid::parse_str(text).is_err() => out.push(problem(
                at,
                "must be a UUID, such as 0190f2a4-7c3e-7b6a-9d1e-3f2a1b0c9d8e",
            )),
            _ => {}
        }
        // One message per value: a wrong length says enough.
        if out.len() > found {
            return;
        }
        if let Some(pattern) = schema["pattern"].as_str() {
            if let Some(re) = self.patterns.get(pattern) {
                if !re.is_match(text) {
                    if let Some(message) = schema["x-sigil-message"].as_str() {
                        out.push(problem(at, message));
                        return;
                    }
                    let what = schema["description"]
                        .as_str()
                        .filter(|d| d.len() < 120)
                        .map(|d| format!(" ({})", d.trim_end_matches('.')))
                        .unwrap_or_default();
                    out.push(problem(
                        at,
                        &format!("does not have the expected form{what}: pattern {pattern}"),
                    ));
                }
            }
        }
    }

    /// The fields of `value` that `schema` does not declare, as JSON paths (`ipfilter`,
    /// `scope.foo`, `methods[2].bar`), sorted. `also_known` are top-level names taken
    /// anyway (credential parameters of a form).
    pub fn unknown_fields(
        &self,
        schema: &Value,
        value: &Value,
        also_known: &[&str],
    ) -> Vec<String> {
        let mut found = Vec::new();
        self.unknown_in(&[schema], value, "", 0, &mut found);
        found.retain(|f| !also_known.contains(&f.as_str()));
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
            match self.components.get(name) {
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
                // The alternatives the value fits (all of them when none does: the
                // value check has refused it already).
                let fitting: Vec<&Value> = any
                    .iter()
                    .filter(|m| self.check(m, value, "").is_empty())
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

fn collect_patterns(value: &Value, into: &mut HashMap<String, Regex>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(pattern)) = map.get("pattern") {
                if !into.contains_key(pattern) {
                    match Regex::new(pattern) {
                        Ok(re) => {
                            into.insert(pattern.clone(), re);
                        }
                        Err(e) => tracing::warn!(%pattern, error = %e, "spec pattern not checked"),
                    }
                }
            }
            map.values().for_each(|v| collect_patterns(v, into));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_patterns(v, into)),
        _ => {}
    }
}

fn check_integer(schema: &Value, value: &Value, at: &str, out: &mut Vec<Finding>) {
    let n = match (value.as_i64(), value.as_u64()) {
        (Some(n), _) => n as i128,
        (None, Some(n)) => n as i128,
        _ => {
            let message = if value.is_number() {
                "must be a whole number"
            } else {
                "must be an integer"
            };
            out.push(mismatch(at, message));
            return;
        }
    };
    let (low, high): (i128, i128) = match schema["format"].as_str() {
        Some("int32") => (i32::MIN.into(), i32::MAX.into()),
        Some("int64") => (i64::MIN.into(), i64::MAX.into()),
        Some("uint16") => (0, u16::MAX.into()),
        Some("uint32") => (0, u32::MAX.into()),
        Some("uint64") => (0, u64::MAX.into()),
        _ => (i128::MIN, i128::MAX),
    };
    let low = schema["minimum"]
        .as_f64()
        .map_or(low, |m| low.max(m.ceil() as i128));
    let high = schema["maximum"]
        .as_f64()
        .map_or(high, |m| high.min(m.floor() as i128));
    if n < low || n > high {
        out.push(problem(at, &range_message(low, high)));
    }
}

fn range_message(low: i128, high: i128) -> String {
    let unbounded_low = low <= i64::MIN as i128;
    let unbounded_high = high >= u32::MAX as i128 * 2;
    match (unbounded_low, unbounded_high) {
        (true, true) => "is out of range".to_owned(),
        (true, false) => format!("must be at most {high}"),
        (false, true) => format!("must be at least {low}"),
        (false, false) => format!("must be between {low} and {high}"),
    }
}

fn check_bounds(schema: &Value, n: f64, at: &str, out: &mut Vec<Finding>) {
    if let Some(min) = schema["minimum"].as_f64().filter(|m| n < *m) {
        out.push(problem(at, &format!("must be at least {min}")));
    }
    if let Some(max) = schema["maximum"].as_f64().filter(|m| n > *m) {
        out.push(problem(at, &format!("must be at most {max}")));
    }
}

fn check_count(schema: &Value, count: usize, at: &str, out: &mut Vec<Finding>) {
    if let Some(min) = schema["minItems"].as_u64().filter(|m| (count as u64) < *m) {
        out.push(problem(at, &format!("must have at least {min} entries")));
    }
    if let Some(max) = schema["maxItems"].as_u64().filter(|m| count as u64 > *m) {
        out.push(problem(at, &format!("must have at most {max} entries")));
    }
}

/// How to describe the expected value of a string schema.
fn describe(schema: &Value) -> String {
    match (schema["enum"].as_array(), schema["format"].as_str()) {
        (Some(allowed), _) => one_of(allowed),
        (None, Some("date-time")) => "a date and time in RFC 3339 form (a string)".to_owned(),
        (None, Some("uuid")) => "a UUID (a string)".to_owned(),
        _ => "a string".to_owned(),
    }
}

fn one_of(allowed: &[Value]) -> String {
    let names: Vec<String> = allowed
        .iter()
        .map(|v| match v.as_str() {
            Some(s) => format!("\"{s}\""),
            None => v.to_string(),
        })
        .collect();
    match names.as_slice() {
        [one] => one.clone(),
        _ => format!("one of {}", names.join(", ")),
    }
}

fn problem(at: &str, message: &str) -> Finding {
    Finding {
        field: if at.is_empty() {
            "body".to_owned()
        } else {
            at.to_owned()
        },
        message: message.to_owned(),
        code: None,
    }
}

/// A value of the wrong type, missing or null: a plain validation problem, whatever rule
/// the field has a code for.
fn mismatch(at: &str, message: &str) -> Finding {
    Finding {
        code: Some("validation_failed".to_owned()),
        ..problem(at, message)
    }
}

pub fn join(at: &str, name: &str) -> String {
    if at.is_empty() {
        name.to_owned()
    } else {
        format!("{at}.{name}")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schemas() -> Schemas {
        Schemas::from_spec(&json!({"components": {"schemas": {
            "Kind": {"type": "string", "enum": ["a", "b"]},
            "Thing": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 5},
                "count": {"type": "integer", "format": "uint32", "maximum": 10.0, "nullable": true},
                "tags": {"type": "array", "maxItems": 2, "items": {"type": "string", "pattern": "^[a-z]+$"}},
                "kind": {"anyOf": [{"$ref": "#/components/schemas/Kind"}], "nullable": true},
                "at": {"type": "string", "format": "date-time"},
                "any": {}
            }}
        }}}))
    }

    fn messages(problems: Vec<Finding>) -> Vec<String> {
        problems
            .into_iter()
            .map(|p| format!("{}: {}", p.field, p.message))
            .collect()
    }

    #[test]
    fn accepts_what_the_schema_allows() {
        let s = schemas();
        let thing = json!({"$ref": "#/components/schemas/Thing"});
        let ok = json!({"name": "x", "count": 3, "tags": ["a"], "kind": "a", "any": [1, {"x": false}],
            "at": "2027-01-01T00:00:00Z"});
        assert!(s.check(&thing, &ok, "").is_empty());
        assert!(s
            .check(
                &thing,
                &json!({"name": "x", "count": null, "kind": null}),
                ""
            )
            .is_empty());
    }

    #[test]
    fn names_every_problem_in_plain_words() {
        let s = schemas();
        let thing = json!({"$ref": "#/components/schemas/Thing"});
        let bad = json!({"count": -1, "tags": ["a", 1, "B"], "kind": "c", "at": "2027-01-01"});
        assert_eq!(
            messages(s.check(&thing, &bad, "")),
            vec![
                "name: is required",
                "at: must be a date and time in RFC 3339 form, such as 2027-01-31T12:00:00Z",
                "count: must be between 0 and 10",
                "kind: must be one of \"a\", \"b\"",
                "tags: must have at most 2 entries",
                "tags[1]: must be a string",
                "tags[2]: does not have the expected form: pattern ^[a-z]+$",
            ]
        );
        assert_eq!(
            messages(s.check(&thing, &json!({"name": ""}), "")),
            vec!["name: must not be empty"]
        );
        assert_eq!(
            messages(s.check(&thing, &json!({"name": null, "count": 1.5}), "")),
            vec!["count: must be a whole number", "name: must not be null"]
        );
        assert_eq!(
            messages(s.check(&thing, &json!([1]), "")),
            vec!["body: must be an object"]
        );
    }

    #[test]
    fn names_every_undeclared_field() {
        let s = Schemas::from_spec(&json!({"components": {"schemas": {
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
        }}}));
        let body = json!({"$ref": "#/components/schemas/Body"});
        let ok = json!({
            "name": "n", "scope": {"a": "x"}, "list": [{"a": "y"}], "both": {"a": "1", "b": "2"},
            "either": {"a": "z"}, "doc": {"openapi": "3.0.0", "paths": {"/x": {}}},
            "free": {"anything": [1]}, "labels": {"k": {"a": "v"}}, "open": {"x": 1, "y": 2}
        });
        assert_eq!(s.unknown_fields(&body, &ok, &[]), Vec::<String>::new());
        let bad = json!({
            "ipfilter": ["10.0.0.0/8"], "name": "n", "scope": {"a": "x", "foo": 1},
            "list": [{"a": "y"}, {"c": 1}], "both": {"c": 2}, "either": {"d": 3},
            "labels": {"k": {"e": 4}}, "enable": false, "auth_token": "t"
        });
        assert_eq!(
            s.unknown_fields(&body, &bad, &["auth_token"]),
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
    }
}
