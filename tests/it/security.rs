//! Issue 10: reliability and security. Tenant isolation and function-level authorization
//! generated from the live spec (every operation taking an id, every admin-only operation),
//! races (regenerate vs. verification, overlapping bulk deletes, concurrent key rotations,
//! the per-user token limit), limits (page size, tokens per user, scope set size, refused
//! verifications per client address, header size, idle connections) and database faults
//! (PostgreSQL through a proxy the test can cut).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use reqwest::Method;
use serde_json::{json, Value};
use sigil_user::Role;

use crate::harness::{Resp, Tenant, TestServer, User};

fn days(n: i64) -> String {
    (Utc::now() + chrono::Duration::days(n)).to_rfc3339()
}

/// One operation of the live spec.
#[derive(Clone, Debug)]
struct SpecOp {
    id: String,
    verb: Method,
    path: String,
    /// The registry method (`x-sigil-method`).
    method: String,
    path_params: Vec<String>,
    query_params: Vec<String>,
    body_required: bool,
    /// The documented maximum of the `limit` query parameter, if any.
    limit_max: Option<u64>,
}

async fn spec_operations(s: &TestServer) -> Vec<SpecOp> {
    let r = s.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut ops = Vec::new();
    for (path, item) in r.body["paths"].as_object().expect("paths") {
        for (verb, op) in item.as_object().expect("path item") {
            let Ok(verb) = verb.to_uppercase().parse::<Method>() else {
                continue;
            };
            if op.get("operationId").is_none() {
                continue;
            }
            let params = |place: &str| -> Vec<String> {
                op["parameters"]
                    .as_array()
                    .map(|ps| {
                        ps.iter()
                            .filter(|p| p["in"] == place)
                            .map(|p| p["name"].as_str().unwrap().to_owned())
                            .collect()
                    })
                    .unwrap_or_default()
            };
            ops.push(SpecOp {
                id: op["operationId"].as_str().unwrap().to_owned(),
                verb,
                path: path.clone(),
                method: op["x-sigil-method"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{path}: no x-sigil-method"))
                    .to_owned(),
                path_params: params("path"),
                query_params: params("query"),
                body_required: op["requestBody"]["required"] == true,
                limit_max: op["parameters"].as_array().and_then(|ps| {
                    ps.iter()
                        .find(|p| p["in"] == "query" && p["name"] == "limit")
                        .and_then(|p| p["schema"]["maximum"].as_f64())
                        .map(|m| m as u64)
                }),
            });
        }
    }
    assert!(ops.len() > 30, "the spec lists the operations");
    ops
}

/// Methods only the operator may call, and those each role may not call (rights.rs).
fn operator_methods() -> BTreeSet<&'static str> {
    sigil_token::SigilMethod::ALL
        .iter()
        .filter(|m| m.operator_only())
        .map(|m| m.id())
        .collect()
}

fn denied(role: Role) -> BTreeSet<&'static str> {
    sigil_token::rights::denied_for(role)
        .map(|m| m.id())
        .collect()
}

/// What a tenant user of `role` gets for `method` when the object is not theirs to see:
/// the operator's methods are 403 for everyone in a tenant, methods above the role are 403,
/// everything else looks like a missing object (404), never like someone else's object.
fn expected_for_role(method: &str, role: Role) -> (u16, &'static str) {
    if operator_methods().contains(method) {
        (403, "operator_only")
    } else if denied(role).contains(method) {
        (403, "user_lacks_permission")
    } else {
        (404, "not_found")
    }
}

/// What a token whose scope lacks `method` gets.
fn expected_out_of_scope(method: &str) -> (u16, &'static str) {
    if operator_methods().contains(method) {
        (403, "operator_only")
    } else {
        (403, "method_not_in_scope")
    }
}

/// A tenant-private plugin manifest.
fn manifest(id: &str) -> Value {
    json!({
        "id": id,
        "name": format!("{id} plugin"),
        "version": "1.0.0",
        "methods": [{
            "id": format!("{id}.things.list"),
            "http": {"method": "GET", "path": format!("/{id}/things")},
            "access": "read",
            "description": "list things",
        }],
    })
}

/// Tenant A with one object of every kind an id can name, tenant B with users of every
/// role, and callers of A with lower roles or a narrow token.
struct World {
    a: Tenant,
    b: Tenant,
    b_manager: User,
    b_member: User,
    a_manager: User,
    a_member: User,
    /// A personal token of A's admin whose scope is only `me.get`.
    a_narrow: String,
    /// A's objects, by path parameter name.
    ids: BTreeMap<&'static str, String>,
    /// The secret of A's token named by `{token_id}`.
    a_token_secret: String,
}

async fn world(s: &TestServer) -> World {
    let a = s.tenant_admin("alpha").await;
    let b = s.tenant_admin("bravo").await;
    let b_manager = s.user(&b, "bmanager", "token_manager", "person").await;
    let b_member = s.user(&b, "bmember", "member", "person").await;
    let a_manager = s.user(&a, "amanager", "token_manager", "person").await;
    let a_member = s.user(&a, "amember", "member", "person").await;
    let victim = s.user(&a, "victim", "member", "person").await;
    let (_, a_narrow) = s
        .mint(&a.admin, json!({"name": "narrow", "methods": ["me.get"]}))
        .await;
    let (token, a_token_secret) = s
        .mint(
            &victim.token,
            json!({"name": "victim's", "scope_set": "read-only"}),
        )
        .await;
    let r = s
        .post(
            "/api/v1/scope-sets",
            &a.admin,
            json!({"id": "alpha-set", "name": "Alpha set", "methods": ["tokens.list"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = s
        .post(
            "/api/v1/plugins",
            &a.admin,
            json!({"manifest": manifest("alphaplug")}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = s
        .post(
            "/api/v1/webhooks",
            &a.admin,
            json!({"url": "https://alpha.invalid/hook", "event_types": ["token.created"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let webhook = r.body["webhook"]["id"].as_str().unwrap().to_owned();
    let mut ids = BTreeMap::new();
    ids.insert("webhook_id", webhook);
    ids.insert("token_id", token["id"].as_str().unwrap().to_owned());
    ids.insert("user_id", victim.id.clone());
    ids.insert("set_id", "alpha-set".to_owned());
    ids.insert("plugin_id", "alphaplug".to_owned());
    ids.insert("tenant_id", a.id.clone());
    ids.insert("tenant", a.slug.clone());
    World {
        a,
        b,
        b_manager,
        b_member,
        a_manager,
        a_member,
        a_narrow,
        ids,
        a_token_secret,
    }
}

/// Where A's admin reads the object a path parameter names (to see it is unchanged).
fn object_path(param: &str, id: &str) -> String {
    match param {
        "token_id" => format!("/api/v1/tokens/{id}"),
        "user_id" => format!("/api/v1/users/{id}"),
        "set_id" => format!("/api/v1/scope-sets/{id}"),
        "plugin_id" => format!("/api/v1/plugins/{id}"),
        "webhook_id" => format!("/api/v1/webhooks/{id}"),
        // A's tenant as its admin sees it (the operator's view is compared too).
        "tenant_id" | "tenant" => "/api/v1/tenant".to_owned(),
        other => panic!("no object for path parameter {{{other}}}: add it to security.rs"),
    }
}

/// Drops fields that change by merely being used or signed in with.
fn stable(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| {
                    !matches!(
                        k.as_str(),
                        "use_count" | "last_used_at" | "last_used_ip" | "last_login_at"
                    )
                })
                .map(|(k, v)| (k.clone(), stable(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(stable).collect()),
        other => other.clone(),
    }
}

/// Everything of tenant A an attacker could change, as A's admin (and the operator) see it.
async fn snapshot_a(s: &TestServer, w: &World) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for path in [
        "/api/v1/tenant",
        "/api/v1/users?limit=200",
        "/api/v1/tenant/signing-keys",
        "/api/v1/scope-sets",
        "/api/v1/plugins",
        "/api/v1/tokens?limit=200",
    ] {
        let r = s.get(path, &w.a.admin).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        out.insert(path.to_owned(), stable(&r.body));
    }
    for (param, id) in &w.ids {
        let path = object_path(param, id);
        let r = s.get(&path, &w.a.admin).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        out.insert(path, stable(&r.body));
    }
    let op = s.operator_token();
    for path in [
        format!("/api/v1/tenants/{}", w.a.id),
        "/api/v1/tenants?limit=200".to_owned(),
    ] {
        let r = s.get(&path, &op).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        out.insert(path, stable(&r.body));
    }
    out
}

/// A request body (and query) for an operation, good enough to get past input parsing so
/// that the authorization decision is what answers. Every operation that takes an id or is
/// admin-only must have a row; `None` means "no case yet".
fn sample(op: &str) -> Option<(Option<Value>, &'static str)> {
    let policy = || {
        json!({
            "allow_non_expiring_tokens": true, "session_lifetime_secs": 60,
            "allow_query_credentials": true, "ip_allowlist": ["10.0.0.0/8"],
            "require_password_confirmation": false, "password_confirmation_secs": 60,
            "login_max_failures": 1, "login_lockout_secs": 3600, "max_tokens_per_user": 1,
            "key_overlap_secs": 0, "max_token_lifetime_days": 3650,
        })
    };
    Some(match op {
        // Objects named by id.
        "getToken" | "deleteToken" | "copyToken" | "regenerateToken" => (None, ""),
        "updateToken" => (
            Some(json!({"name": "pwned", "enabled": false, "scope_set": "read-change"})),
            "",
        ),
        "getUser" | "deactivateUser" | "deleteUser" | "resetUserTwoFactor" => (None, ""),
        "updateUser" => (
            Some(json!({"role": "admin", "display_name": "pwned", "password": "Pwned-horse-42"})),
            "",
        ),
        "getScopeSet" => (None, ""),
        "deleteScopeSet" => (None, "?force=true"),
        "updateScopeSet" => (Some(json!({"name": "pwned", "methods": ["me.get"]})), ""),
        "getPlugin" | "deletePlugin" => (None, ""),
        "getTenant" | "disableTenant" => (None, ""),
        "updateTenant" => (Some(json!({"name": "pwned", "enabled": false})), ""),
        // Public: the tenant's public keys (checked separately).
        "getJwks" => (None, ""),
        // Admin-only without an id.
        "createUser" => (
            Some(
                json!({"username": "mallory", "role": "admin", "kind": "person", "password": "Mallory-horse-42"}),
            ),
            "",
        ),
        "listUsers" | "listSigningKeys" => (None, ""),
        "updateTenantPolicy" => (Some(policy()), ""),
        "rotateSigningKey" => (Some(json!({"overlap_secs": 0})), ""),
        "registerPlugin" => (Some(json!({"manifest": manifest("evilplug")})), ""),
        "createScopeSet" => (
            Some(json!({"id": "evil-set", "name": "Evil", "methods": ["users.*"]})),
            "",
        ),
        "createTenant" => (Some(json!({"slug": "evil"})), ""),
        // Webhooks (admins): an attacker's endpoint would receive the tenant's events.
        "getWebhook" | "deleteWebhook" | "sendTestWebhook" | "listWebhookDeliveries" => (None, ""),
        "updateWebhook" => (
            Some(json!({"url": "https://evil.invalid/hook", "event_types": []})),
            "",
        ),
        "createWebhook" => (Some(json!({"url": "https://evil.invalid/hook"})), ""),
        "listWebhooks" => (None, ""),
        "listTenants" => (None, ""),
        _ => return None,
    })
}

fn fill(path: &str, ids: &BTreeMap<&'static str, String>) -> String {
    let mut out = path.to_owned();
    for (name, value) in ids {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    assert!(!out.contains('{'), "no sample for a parameter of {path}");
    out
}

async fn call_op(
    s: &TestServer,
    op: &SpecOp,
    w: &World,
    token: &str,
) -> (Resp, Option<Value>, String) {
    let (body, query) = sample(&op.id).unwrap_or_else(|| {
        panic!(
            "operation {} ({}) has no case in tests/it/security.rs `sample`",
            op.id, op.method
        )
    });
    assert!(
        body.is_some() || !op.body_required,
        "operation {} needs a sample body",
        op.id
    );
    let path = format!("{}{query}", fill(&op.path, &w.ids));
    let r = s
        .call(op.verb.clone(), &path, Some(token), body.clone())
        .await;
    (r, body, path)
}

fn assert_refused(r: &Resp, want: (u16, &str), who: &str, op: &SpecOp, path: &str) {
    assert_eq!(
        (r.status.as_u16(), r.code()),
        want,
        "{} {path} ({}) as {who}: {}",
        op.verb,
        op.id,
        r.body
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/problem+json"),
        "{}: {}",
        op.id,
        r.body
    );
}

#[tokio::test]
async fn other_tenants_cannot_reach_objects_by_id() {
    let s = TestServer::start().await;
    let ops = spec_operations(&s).await;
    let w = world(&s).await;
    let before = snapshot_a(&s, &w).await;
    let callers: [(&str, &str, Option<Role>); 4] = [
        ("B's admin", &w.b.admin, Some(Role::Admin)),
        (
            "B's token manager",
            &w.b_manager.token,
            Some(Role::TokenManager),
        ),
        ("B's member", &w.b_member.token, Some(Role::Member)),
        ("A's out-of-scope token", &w.a_narrow, None),
    ];
    let public_with_id = ["getJwks"];
    let mut covered = BTreeSet::new();
    for op in ops.iter().filter(|o| !o.path_params.is_empty()) {
        if public_with_id.contains(&op.id.as_str()) {
            // Public keys only: no private half, and the same for everyone.
            let (r, _, path) = call_op(&s, op, &w, &w.b.admin).await;
            assert_eq!(r.status, 200, "{path}: {}", r.body);
            for key in r.body["keys"].as_array().unwrap() {
                assert!(key.get("d").is_none(), "no private key in the JWKS: {key}");
            }
            covered.insert(op.id.clone());
            continue;
        }
        for (who, token, role) in &callers {
            let (r, _, path) = call_op(&s, op, &w, token).await;
            let want = match role {
                Some(role) => expected_for_role(&op.method, *role),
                None => expected_out_of_scope(&op.method),
            };
            assert_refused(&r, want, who, op, &path);
            // The object is untouched.
            for param in &op.path_params {
                let obj = object_path(param, &w.ids[param.as_str()]);
                let now = s.get(&obj, &w.a.admin).await;
                assert_eq!(
                    stable(&now.body),
                    before[&obj],
                    "{} as {who} changed {obj}",
                    op.id
                );
            }
        }
        covered.insert(op.id.clone());
    }
    // Ids in query parameters: another tenant's ids find nothing.
    let mut query_covered = BTreeSet::new();
    let a_user = &w.ids["user_id"];
    let a_token = &w.ids["token_id"];
    for op in ops.iter() {
        for param in op.query_params.iter().filter(|p| p.ends_with("_id")) {
            let value = match param.as_str() {
                "owner_id" | "actor_id" => a_user.clone(),
                "target_id" => a_token.clone(),
                "tenant_id" => w.a.id.clone(),
                other => panic!("{}: no case for query parameter {other}", op.id),
            };
            let path = format!("{}?{param}={value}", op.path);
            let r = s.call(op.verb.clone(), &path, Some(&w.b.admin), None).await;
            if param == "tenant_id" {
                r.expect(403, "operator_only");
            } else {
                assert_eq!(r.status, 200, "{path}: {}", r.body);
                let text = r.body.to_string();
                assert!(
                    !text.contains(a_user) && !text.contains(a_token),
                    "{path} as B's admin shows A's objects: {text}"
                );
            }
            query_covered.insert(format!("{}?{param}", op.id));
        }
    }
    assert!(
        query_covered.contains("listTokens?owner_id")
            && query_covered.contains("listAuditEvents?tenant_id"),
        "{query_covered:?}"
    );
    // Every id-taking operation of the spec was exercised, and nothing else went by.
    let with_ids: BTreeSet<String> = ops
        .iter()
        .filter(|o| !o.path_params.is_empty())
        .map(|o| o.id.clone())
        .collect();
    assert_eq!(covered, with_ids);
    assert!(covered.len() >= 18, "{covered:?}");
    assert_eq!(snapshot_a(&s, &w).await, before, "tenant A is unchanged");
    // A's token still works.
    let r = s.get("/api/v1/users/me", &w.a_token_secret).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn lower_roles_cannot_call_admin_operations() {
    let s = TestServer::start().await;
    let ops = spec_operations(&s).await;
    let w = world(&s).await;
    let before = snapshot_a(&s, &w).await;
    // Every restricted method of rights.rs is an operation of the spec.
    let restricted = denied(Role::Member);
    let spec_methods: BTreeSet<&str> = ops.iter().map(|o| o.method.as_str()).collect();
    for m in &restricted {
        assert!(
            spec_methods.contains(m),
            "rights.rs names {m}, the spec has no such operation"
        );
    }
    let callers: [(&str, &str, Option<Role>); 3] = [
        ("A's member", &w.a_member.token, Some(Role::Member)),
        (
            "A's token manager",
            &w.a_manager.token,
            Some(Role::TokenManager),
        ),
        ("A's out-of-scope token", &w.a_narrow, None),
    ];
    let mut covered = BTreeSet::new();
    for op in ops
        .iter()
        .filter(|o| restricted.contains(o.method.as_str()))
    {
        for (who, token, role) in &callers {
            let want = match role {
                Some(role) if !denied(*role).contains(op.method.as_str()) => continue,
                Some(_) if operator_methods().contains(op.method.as_str()) => {
                    (403, "operator_only")
                }
                Some(_) => (403, "user_lacks_permission"),
                None => expected_out_of_scope(&op.method),
            };
            let (r, _, path) = call_op(&s, op, &w, token).await;
            assert_refused(&r, want, who, op, &path);
        }
        covered.insert(op.method.clone());
    }
    let want: BTreeSet<String> = restricted.iter().map(|m| (*m).to_owned()).collect();
    assert_eq!(covered, want, "every restricted method was called");
    assert_eq!(snapshot_a(&s, &w).await, before, "tenant A is unchanged");
    // The same operations work for A's admin (the refusals above are about the role).
    let r = s.get("/api/v1/users", &w.a.admin).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

// ---------------------------------------------------------------------------------------
// Races.

#[tokio::test]
async fn regenerate_racing_verifications_never_revives_the_old_secret() {
    // Hundreds of refusals from one address on purpose: no refusal limit here.
    let s = TestServer::start_with(|c| c.refusal_limit_per_minute = 0).await;
    let t = s.tenant_admin("acme").await;
    let (token, mut secret) = s.mint(&t.admin, json!({"scope_set": "read-only"})).await;
    let id = token["id"].as_str().unwrap().to_owned();
    for round in 0..3 {
        let old = secret.clone();
        let stop = AtomicBool::new(false);
        let started = AtomicU64::new(0);
        let verifiers = (0..6).map(|_| async {
            let mut seen = BTreeMap::<String, u64>::new();
            while !stop.load(Ordering::Acquire) {
                let r = s.get("/api/v1/users/me", &old).await;
                started.fetch_add(1, Ordering::Relaxed);
                *seen
                    .entry(format!("{} {}", r.status.as_u16(), r.code()))
                    .or_default() += 1;
            }
            seen
        });
        let regenerate = async {
            // Let verifications get going (and cache the old secret) first.
            while started.load(Ordering::Relaxed) < 30 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let r = s
                .call(
                    Method::POST,
                    &format!("/api/v1/tokens/{id}/regenerate"),
                    Some(&t.admin),
                    None,
                )
                .await;
            assert_eq!(r.status, 200, "round {round}: {}", r.body);
            // From the answer on, the old secret never works again, from any of 4 clients.
            let after = (0..4).map(|_| async {
                for _ in 0..75 {
                    s.get("/api/v1/users/me", &old)
                        .await
                        .expect(401, "token_replaced");
                }
            });
            futures::future::join_all(after).await;
            stop.store(true, Ordering::Release);
            r.body["secret"].as_str().unwrap().to_owned()
        };
        let (seen, new_secret) = futures::join!(futures::future::join_all(verifiers), regenerate);
        for outcomes in &seen {
            for outcome in outcomes.keys() {
                assert!(
                    outcome == "200 " || outcome == "401 token_replaced",
                    "round {round}: racing verification answered {outcome}: {seen:?}"
                );
            }
        }
        let r = s.get("/api/v1/users/me", &new_secret).await;
        assert_eq!(r.status, 200, "round {round}: {}", r.body);
        secret = new_secret;
    }
}

#[tokio::test]
async fn overlapping_bulk_deletes_remove_each_token_once() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let mut tokens = Vec::new();
    for i in 0..30 {
        let (tok, secret) = s
            .mint(
                &t.admin,
                json!({"name": format!("t{i}"), "scope_set": "read-only"}),
            )
            .await;
        tokens.push((tok["id"].as_str().unwrap().to_owned(), secret));
    }
    // Eight requests over overlapping windows of nine tokens, plus single deletes of the
    // same tokens, all at once.
    let bulk = (0..8).map(|i| {
        let ids: Vec<&str> = tokens[i * 3..(i * 3 + 9).min(30)]
            .iter()
            .map(|(id, _)| id.as_str())
            .collect();
        let s = &s;
        let admin = &t.admin;
        async move {
            let r = s
                .post("/api/v1/tokens/bulk-delete", admin, json!({"ids": ids}))
                .await;
            (ids, r)
        }
    });
    let singles = [4usize, 4, 4, 13, 13, 27].map(|i| {
        let s = &s;
        let admin = &t.admin;
        let id = tokens[i].0.clone();
        async move {
            let r = s.delete(&format!("/api/v1/tokens/{id}"), admin).await;
            (id, r)
        }
    });
    let (bulk, singles) = futures::join!(
        futures::future::join_all(bulk),
        futures::future::join_all(singles)
    );
    let mut removed: Vec<String> = Vec::new();
    for (ids, r) in &bulk {
        match r.status.as_u16() {
            200 => {
                let got: BTreeSet<String> = r.body["removed"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x["id"].as_str().unwrap().to_owned())
                    .collect();
                let asked: BTreeSet<String> = ids.iter().map(|x| (*x).to_owned()).collect();
                assert_eq!(got, asked, "all or nothing: {}", r.body);
                assert_eq!(r.body["count"], ids.len());
                removed.extend(got);
            }
            _ => {
                r.expect(422, "unknown_tokens");
            }
        }
    }
    for (id, r) in &singles {
        match r.status.as_u16() {
            204 => removed.push(id.clone()),
            _ => {
                r.expect(404, "not_found");
            }
        }
    }
    let unique: BTreeSet<&String> = removed.iter().collect();
    assert_eq!(
        unique.len(),
        removed.len(),
        "a token was reported deleted twice: {removed:?}"
    );
    assert!(!removed.is_empty());
    // The end state is what the answers said.
    for (id, secret) in &tokens {
        let got = s.get(&format!("/api/v1/tokens/{id}"), &t.admin).await;
        let me = s.get("/api/v1/users/me", secret).await;
        if unique.contains(id) {
            got.expect(404, "not_found");
            me.expect(401, "token_unknown");
        } else {
            assert_eq!(
                got.status, 200,
                "{id} was not reported deleted: {}",
                got.body
            );
            assert_eq!(me.status, 200, "{}", me.body);
        }
    }
    let list = s.get("/api/v1/tokens?limit=200", &t.admin).await;
    assert_eq!(list.body["total"], 30 - unique.len(), "{}", list.body);
}

#[tokio::test]
async fn ten_concurrent_rotations_leave_one_active_key_and_old_tokens_working() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    // Minted before, never used before the rotations (so nothing is cached).
    let mut secrets = Vec::new();
    for i in 0..3 {
        let (_, secret) = s
            .mint(
                &t.admin,
                json!({"name": format!("t{i}"), "scope_set": "read-only"}),
            )
            .await;
        secrets.push(secret);
    }
    let rotations = (0..10).map(|_| {
        s.post(
            "/api/v1/tenant/signing-keys/rotate",
            &t.admin,
            json!({"overlap_secs": 3600}),
        )
    });
    let answers = futures::future::join_all(rotations).await;
    let mut kids = BTreeSet::new();
    for r in &answers {
        assert_eq!(r.status, 201, "{}", r.body);
        kids.insert(r.body["kid"].as_str().unwrap().to_owned());
    }
    assert_eq!(kids.len(), 10, "ten new keys");
    let keys = s.get("/api/v1/tenant/signing-keys", &t.admin).await;
    let active: Vec<&Value> = keys.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["state"] == "active")
        .collect();
    assert_eq!(active.len(), 1, "{}", keys.body);
    assert!(kids.contains(active[0]["kid"].as_str().unwrap()));
    for secret in &secrets {
        let r = s.get("/api/v1/users/me", secret).await;
        assert_eq!(
            r.status, 200,
            "a token minted before the rotations: {}",
            r.body
        );
    }
    // New tokens are signed by the active key and verify too.
    let (_, fresh) = s.mint(&t.admin, json!({"scope_set": "read-only"})).await;
    assert_eq!(s.get("/api/v1/users/me", &fresh).await.status, 200);
    let header = fresh.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header).unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], active[0]["kid"]);
}

// ---------------------------------------------------------------------------------------
// Limits.

/// `path` with `{webhook_id}` naming a webhook endpoint of `t` (made for the purpose).
async fn with_webhook(s: &TestServer, t: &Tenant, path: &str) -> String {
    if !path.contains("{webhook_id}") {
        return path.to_owned();
    }
    let r = s
        .post(
            "/api/v1/webhooks",
            &t.admin,
            json!({"url": "https://lists.invalid/hook"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    path.replace("{webhook_id}", r.body["webhook"]["id"].as_str().unwrap())
}

#[tokio::test]
async fn page_sizes_are_capped_on_every_list() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let op_token = s.operator_token();
    let ops = spec_operations(&s).await;
    let mut lists = BTreeSet::new();
    for op in ops
        .iter()
        .filter(|o| o.query_params.iter().any(|p| p == "limit"))
    {
        let token = if operator_methods().contains(op.method.as_str()) {
            &op_token
        } else {
            &t.admin
        };
        // Lists of tenant data page by at most 200; the method catalog (read from the
        // in-memory registry) by at most 1000.
        let max = op
            .limit_max
            .unwrap_or_else(|| panic!("{}: limit without a maximum", op.id));
        let cap = if op.id == "listMethods" { 1000 } else { 200 };
        assert!(max <= cap, "{}: limit up to {max}", op.id);
        for (limit, ok) in [
            (max, true),
            (max + 1, false),
            (1_000_000, false),
            (0, false),
        ] {
            let path = format!("{}?limit={limit}", with_webhook(&s, &t, &op.path).await);
            let r = s.call(op.verb.clone(), &path, Some(token), None).await;
            if ok {
                assert_eq!(r.status, 200, "{path}: {}", r.body);
            } else {
                r.expect(422, "validation_failed");
            }
        }
        lists.insert(op.id.clone());
    }
    for list in [
        "listTokens",
        "listUsers",
        "listTenants",
        "listMethods",
        "listAuditEvents",
    ] {
        assert!(lists.contains(list), "{list} takes a limit: {lists:?}");
    }
}

async fn set_policy(s: &TestServer, t: &Tenant, change: impl FnOnce(&mut Value)) {
    let mut policy = s.get("/api/v1/tenant", &t.admin).await.body["policy"].clone();
    change(&mut policy);
    let r = s
        .call(
            Method::PUT,
            "/api/v1/tenant/policy",
            Some(&t.admin),
            Some(policy),
        )
        .await;
    assert_eq!(r.status, 200, "updateTenantPolicy: {}", r.body);
}

#[tokio::test]
async fn tokens_per_user_are_capped_even_when_created_at_once() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    set_policy(&s, &t, |p| p["max_tokens_per_user"] = json!(3)).await;
    let bob = s.user(&t, "bob", "member", "person").await;
    let body = || json!({"name": "x", "scope_set": "read-only", "expires_at": days(5)});
    let mut first = None;
    for _ in 0..3 {
        let r = s.post("/api/v1/tokens", &bob.token, body()).await;
        assert_eq!(r.status, 201, "{}", r.body);
        first.get_or_insert(r.body["token"]["id"].as_str().unwrap().to_owned());
    }
    s.post("/api/v1/tokens", &bob.token, body())
        .await
        .expect(409, "token_limit_reached");
    let first = first.unwrap();
    s.call(
        Method::POST,
        &format!("/api/v1/tokens/{first}/copy"),
        Some(&bob.token),
        None,
    )
    .await
    .expect(409, "token_limit_reached");
    // An admin minting for bob is held to bob's limit too.
    s.post(
        "/api/v1/tokens",
        &t.admin,
        json!({"name": "x", "scope_set": "read-only", "expires_at": days(5), "owner_id": bob.id}),
    )
    .await
    .expect(409, "token_limit_reached");
    // Deleting one makes room for one.
    let r = s
        .delete(&format!("/api/v1/tokens/{first}"), &bob.token)
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = s.post("/api/v1/tokens", &bob.token, body()).await;
    assert_eq!(r.status, 201, "{}", r.body);

    // Eight creations at once for a user with none: exactly three succeed.
    let carol = s.user(&t, "carol", "member", "person").await;
    let racing = (0..8).map(|_| s.post("/api/v1/tokens", &carol.token, body()));
    let answers = futures::future::join_all(racing).await;
    let created = answers.iter().filter(|r| r.status == 201).count();
    for r in answers.iter().filter(|r| r.status != 201) {
        r.expect(409, "token_limit_reached");
    }
    assert_eq!(
        created,
        3,
        "{:?}",
        answers.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    let list = s.get("/api/v1/tokens", &carol.token).await;
    assert_eq!(list.body["total"], 3, "{}", list.body);
}

#[tokio::test]
async fn scope_sets_and_id_lists_are_bounded() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let entries = |n: usize| -> Vec<String> { (0..n).map(|i| format!("x{i}.y.z")).collect() };
    let r = s
        .post(
            "/api/v1/scope-sets",
            &t.admin,
            json!({"id": "big", "name": "Big", "methods": entries(501)}),
        )
        .await;
    assert!(matches!(r.status.as_u16(), 400 | 422), "{}", r.body);
    assert!(!r.code().is_empty());
    let r = s
        .post(
            "/api/v1/scope-sets",
            &t.admin,
            json!({"id": "small", "name": "Small", "methods": ["tokens.list"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let before = s.get("/api/v1/scope-sets/small", &t.admin).await.body;
    let r = s
        .patch(
            "/api/v1/scope-sets/small",
            &t.admin,
            json!({"methods": entries(501)}),
        )
        .await;
    assert!(matches!(r.status.as_u16(), 400 | 422), "{}", r.body);
    assert_eq!(
        s.get("/api/v1/scope-sets/small", &t.admin).await.body,
        before
    );
    // A token's own method list and a bulk delete are bounded too.
    let r = s
        .post(
            "/api/v1/tokens",
            &t.admin,
            json!({"name": "x", "methods": entries(1001), "expires_at": days(5)}),
        )
        .await;
    r.expect(422, "invalid_scope");
    assert_eq!(r.errors(), vec!["methods: must have at most 1000 entries"]);
    let ids: Vec<String> = (0..501).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let r = s
        .post("/api/v1/tokens/bulk-delete", &t.admin, json!({"ids": ids}))
        .await;
    r.expect(422, "validation_failed");
    assert_eq!(r.errors(), vec!["ids: must have at most 500 entries"]);
}

#[tokio::test]
async fn huge_headers_get_a_client_error() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let big = "a".repeat(100 * 1024);
    for (name, value) in [
        ("x-junk", big.clone()),
        ("authorization", format!("Bearer {big}")),
        ("auth-token", big.clone()),
    ] {
        let mut req = s.client.get(s.url("/api/v1/users/me")).header(name, value);
        if name == "x-junk" {
            // With a valid credential: the size alone refuses it.
            req = req.bearer_auth(&t.admin);
        }
        match req.send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                assert!(
                    status == 431 || status == 400 || (name != "x-junk" && status == 401),
                    "a 100 KB {name} header: {status}"
                );
            }
            // Closing the connection instead of answering is a refusal too, not a 500.
            Err(e) => assert!(!e.is_timeout(), "{name}: {e}"),
        }
    }
    // Many small headers.
    let mut req = s
        .client
        .get(s.url("/api/v1/users/me"))
        .bearer_auth(&t.admin);
    for i in 0..300 {
        req = req.header(format!("x-h{i}"), "v");
    }
    if let Ok(r) = req.send().await {
        assert!(
            matches!(r.status().as_u16(), 400 | 431),
            "300 headers: {}",
            r.status()
        );
    }
    // The server is fine afterwards.
    assert_eq!(s.get("/api/v1/users/me", &t.admin).await.status, 200);
}

/// Opens a raw connection, sends `data`, and returns how long the server kept it open
/// (up to `limit`), reading whatever it answers.
async fn held_open(addr: SocketAddr, data: &[u8], limit: Duration) -> (Duration, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = Instant::now();
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    sock.write_all(data).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(
            tokio::time::Instant::from_std(started + limit),
            sock.read(&mut buf),
        )
        .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    (
        started.elapsed(),
        String::from_utf8_lossy(&got).into_owned(),
    )
}

#[tokio::test]
async fn slow_and_idle_connections_are_closed() {
    let s = TestServer::start_with(|c| {
        c.header_read_timeout_secs = 1;
        c.idle_timeout_secs = 2;
    })
    .await;
    let addr: SocketAddr = s.base.trim_start_matches("http://").parse().unwrap();
    let limit = Duration::from_secs(15);
    // A request head that stops half-way (slowloris).
    let (held, _) = held_open(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", limit).await;
    assert!(
        held < Duration::from_secs(5),
        "an unfinished head held {held:?}"
    );
    // A connection that never sends anything.
    let (held, _) = held_open(addr, b"", limit).await;
    assert!(
        held < Duration::from_secs(5),
        "a silent connection held {held:?}"
    );
    // A head trickled a byte at a time, never silent for long: cut at the head deadline.
    {
        use tokio::io::AsyncWriteExt;
        let started = Instant::now();
        let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut cut = false;
        for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
            if sock.write_all(&[*b]).await.is_err() {
                cut = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(
            cut,
            "a trickled head was still open after {:?}",
            started.elapsed()
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
    // A kept-alive connection after a complete request is closed once idle.
    let (held, answer) = held_open(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", limit).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        held < Duration::from_secs(8),
        "an idle keep-alive held {held:?}"
    );
    // A slow body after a prompt head is not a slow head: it is answered.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
        let body = br#"{"tenant":"nope","username":"x","password":"y"}"#;
        let head = format!(
            "POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        sock.write_all(head.as_bytes()).await.unwrap();
        for chunk in body.chunks(12) {
            tokio::time::sleep(Duration::from_millis(600)).await;
            sock.write_all(chunk).await.unwrap();
        }
        let mut answer = String::new();
        tokio::time::timeout(limit, sock.read_to_string(&mut answer))
            .await
            .unwrap()
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    }
    // Two requests on one connection, the second after a pause shorter than the idle limit.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
        sock.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = sock.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        sock.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        sock.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
}

#[tokio::test]
async fn refused_verifications_are_limited_per_client_address() {
    let s = TestServer::start_with(|c| {
        c.refusal_limit_per_minute = 20;
        // The test names its client addresses through a trusted proxy (itself).
        c.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await;
    let t = s.tenant_admin("acme").await;
    let (_, good) = s.mint(&t.admin, json!({"scope_set": "read-only"})).await;
    let (gone, gone_secret) = s.mint(&t.admin, json!({"scope_set": "read-only"})).await;
    let r = s
        .delete(
            &format!("/api/v1/tokens/{}", gone["id"].as_str().unwrap()),
            &t.admin,
        )
        .await;
    assert_eq!(r.status, 204);
    let from = |ip: &str, token: &str| {
        s.client
            .get(s.url("/api/v1/users/me"))
            .header("x-forwarded-for", ip)
            .bearer_auth(token)
            .send()
    };
    let attacker = "203.0.113.7";
    for i in 0..20 {
        let bad = if i % 2 == 0 {
            "garbage"
        } else {
            gone_secret.as_str()
        };
        let r = Resp::from(from(attacker, bad).await.unwrap()).await;
        assert_eq!(r.status, 401, "refusal {i} keeps its code: {}", r.body);
        assert!(r.code().starts_with("token_"), "{}", r.body);
    }
    for bad in ["garbage", gone_secret.as_str(), "another-guess"] {
        let r = Resp::from(from(attacker, bad).await.unwrap()).await;
        r.expect(429, "too_many_refusals");
        let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "Retry-After {retry}");
    }
    // Forward auth from the same address is limited as well.
    let r = Resp::from(
        s.client
            .get(s.url("/api/v1/authorize"))
            .header("x-forwarded-for", attacker)
            .header("x-original-uri", "/api/v1/users/me")
            .bearer_auth("garbage")
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.expect(429, "too_many_refusals");
    // A valid credential from the same address keeps working, via either path.
    let r = Resp::from(from(attacker, &good).await.unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s
        .client
        .get(s.url("/api/v1/authorize"))
        .header("x-forwarded-for", attacker)
        .header("x-original-uri", "/api/v1/users/me")
        .bearer_auth(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Other addresses are not affected.
    let r = Resp::from(from("198.51.100.9", "garbage").await.unwrap()).await;
    r.expect(401, "token_malformed");
    // Rights refusals (403) of a valid credential are not counted.
    let (_, narrow) = s
        .mint(&t.admin, json!({"name": "narrow", "methods": ["me.get"]}))
        .await;
    for _ in 0..25 {
        let r = Resp::from(
            s.client
                .get(s.url("/api/v1/tokens"))
                .header("x-forwarded-for", "198.51.100.10")
                .bearer_auth(&narrow)
                .send()
                .await
                .unwrap(),
        )
        .await;
        r.expect(403, "method_not_in_scope");
    }
    let r = Resp::from(from("198.51.100.10", "garbage").await.unwrap()).await;
    r.expect(401, "token_malformed");
}

// ---------------------------------------------------------------------------------------
// Database faults.

/// A TCP proxy to the database that the test can cut (every connection closed, new ones
/// closed at once) and restore.
struct CutProxy {
    addr: SocketAddr,
    open: Arc<AtomicBool>,
    cuts: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    async fn start(target: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicBool::new(true));
        let (cuts, _) = tokio::sync::watch::channel(0u64);
        let task = {
            let open = open.clone();
            let cuts = cuts.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((mut client, _)) = listener.accept().await else {
                        return;
                    };
                    if !open.load(Ordering::Acquire) {
                        drop(client);
                        continue;
                    }
                    let target = target.clone();
                    let mut cut = cuts.subscribe();
                    tokio::spawn(async move {
                        let Ok(mut server) = tokio::net::TcpStream::connect(&target).await else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = cut.changed() => {}
                        }
                    });
                }
            })
        };
        Self {
            addr,
            open,
            cuts,
            task,
        }
    }

    fn cut(&self) {
        self.open.store(false, Ordering::Release);
        self.cuts.send_modify(|n| *n += 1);
    }

    fn restore(&self) {
        self.open.store(true, Ordering::Release);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

/// `host:port` of a PostgreSQL URL.
fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap().to_owned()
}

fn assert_unavailable(r: &Resp, what: &str) {
    assert_eq!(r.status, 503, "{what}: {}", r.body);
    r.expect(503, "service_unavailable");
    let retry: u64 = r
        .header("retry-after")
        .unwrap_or_else(|| panic!("{what}: no Retry-After"))
        .parse()
        .unwrap();
    assert!(retry >= 1, "{what}");
}

async fn authorize(s: &TestServer, secret: &str) -> Resp {
    Resp::from(
        s.client
            .get(s.url("/api/v1/authorize"))
            .header("x-original-uri", "/api/v1/users/me")
            .bearer_auth(secret)
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn database_outage_answers_503_keeps_cached_verification_and_recovers() {
    let Some(base) = crate::harness::pg_base_url() else {
        eprintln!(
            "skipped: database faults are tested on PostgreSQL (set SIGIL_TEST_DATABASE_URL)"
        );
        return;
    };
    let target = host_port(&base);
    let proxy = CutProxy::start(target.clone()).await;
    let via = proxy.addr.to_string();
    let s = TestServer::start_with(|c| {
        c.database_url = c.database_url.replacen(&target, &via, 1);
        c.refusal_limit_per_minute = 0;
    })
    .await;
    let t = s.tenant_admin("acme").await;
    let (cached, cached_secret) = s.mint(&t.admin, json!({"scope_set": "read-only"})).await;
    let cached_id = cached["id"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        assert_eq!(authorize(&s, &cached_secret).await.status, 200);
    }
    s.flush_usage().await;
    let (_, fresh_secret) = s.mint(&t.admin, json!({"scope_set": "read-only"})).await;
    let (last, _) = s.mint(&t.admin, json!({"scope_set": "read-only"})).await;
    let last_id = last["id"].as_str().unwrap().to_owned();

    // Cut while requests are in flight: each answers 201 or 503, never 500.
    let done = AtomicU64::new(0);
    let creates = (0..24).map(|i| {
        let s = &s;
        let admin = &t.admin;
        let done = &done;
        async move {
            let r = s
                .post(
                    "/api/v1/tokens",
                    admin,
                    json!({"name": format!("inflight{i}"), "scope_set": "read-only", "expires_at": days(5)}),
                )
                .await;
            done.fetch_add(1, Ordering::Relaxed);
            r
        }
    });
    let cutter = async {
        while done.load(Ordering::Relaxed) < 4 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        proxy.cut();
    };
    let (inflight, ()) = futures::join!(futures::future::join_all(creates), cutter);
    let mut created = Vec::new();
    for r in &inflight {
        match r.status.as_u16() {
            201 => created.push(r.body["token"]["id"].as_str().unwrap().to_owned()),
            _ => assert_unavailable(r, "createToken cut in flight"),
        }
    }
    let started = Instant::now();
    // Everything that needs the database answers 503 with Retry-After, never 500.
    let r = s.get("/api/v1/tokens", &t.admin).await;
    assert_unavailable(&r, "listTokens");
    let r = s
        .post(
            "/api/v1/tokens",
            &t.admin,
            json!({"name": "x", "scope_set": "read-only", "expires_at": days(5)}),
        )
        .await;
    assert_unavailable(&r, "createToken");
    let r = s.get("/api/v1/tenant", &t.admin).await;
    assert_unavailable(&r, "getMyTenant");
    let r = s
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"tenant": "acme", "username": "admin", "password": t.admin_password})),
        )
        .await;
    assert_unavailable(&r, "login");
    // A credential not seen before cannot be checked: 503, not a refusal.
    let r = s.get("/api/v1/users/me", &fresh_secret).await;
    assert_unavailable(&r, "verifying an uncached token");
    let r = s.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(r.status, 503, "{}", r.body);
    // A token verified before the outage keeps working (forward auth needs no database).
    for _ in 0..5 {
        let r = authorize(&s, &cached_secret).await;
        assert_eq!(
            r.status, 200,
            "cached verification during the outage: {}",
            r.body
        );
    }
    // Garbage is still refused precisely.
    authorize(&s, "garbage")
        .await
        .expect(401, "token_malformed");
    // A flush while the database is away keeps the counts for later.
    assert!(s.state().usage.flush(&s.state().db).await.is_err());
    let outage = started.elapsed();
    assert!(outage < Duration::from_secs(120), "503s took {outage:?}");

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = s.call(Method::GET, "/readyz", None, None).await;
        if r.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz did not recover: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s.flush_usage().await;
    let got = s
        .get(&format!("/api/v1/tokens/{cached_id}"), &t.admin)
        .await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(
        got.body["use_count"], 8,
        "uses during the outage were kept: {}",
        got.body
    );
    let got = s.get(&format!("/api/v1/tokens/{last_id}"), &t.admin).await;
    assert_eq!(
        got.status, 200,
        "a token created before the cut: {}",
        got.body
    );
    for id in &created {
        let got = s.get(&format!("/api/v1/tokens/{id}"), &t.admin).await;
        assert_eq!(
            got.status, 200,
            "a token answered 201 during the cut: {}",
            got.body
        );
    }
    let (_, after) = s.mint(&t.admin, json!({"scope_set": "read-only"})).await;
    assert_eq!(s.get("/api/v1/users/me", &after).await.status, 200);
    assert_eq!(s.get("/api/v1/users/me", &fresh_secret).await.status, 200);
    let login = s.login("acme", "admin", &t.admin_password).await;
    assert_eq!(s.get("/api/v1/tenant", &login).await.status, 200);
}

#[tokio::test]
async fn sqlite_held_by_another_writer_answers_503_not_500() {
    if crate::harness::pg_base_url().is_some() {
        eprintln!("skipped: SQLite locking (runs without SIGIL_TEST_DATABASE_URL)");
        return;
    }
    use sqlx::Connection;
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let (_, secret) = s.mint(&t.admin, json!({"scope_set": "read-only"})).await;
    // Another process (a backup, the CLI) holds the write lock for longer than the busy
    // timeout.
    let mut other = sqlx::sqlite::SqliteConnection::connect(&s.database_url)
        .await
        .unwrap();
    sqlx::Executor::execute(&mut other, "BEGIN IMMEDIATE")
        .await
        .unwrap();
    let r = s
        .post(
            "/api/v1/tokens",
            &t.admin,
            json!({"name": "x", "scope_set": "read-only", "expires_at": days(5)}),
        )
        .await;
    assert_unavailable(&r, "createToken while another writer holds SQLite");
    // (Everything else waits meanwhile: SQLite runs on one pooled connection.)
    sqlx::Executor::execute(&mut other, "ROLLBACK")
        .await
        .unwrap();
    other.close().await.unwrap();
    let r = s
        .post(
            "/api/v1/tokens",
            &t.admin,
            json!({"name": "x", "scope_set": "read-only", "expires_at": days(5)}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(s.get("/api/v1/users/me", &secret).await.status, 200);
}

/// Everything the database holds, as bytes: the SQLite files, or every PostgreSQL table
/// as text.
async fn database_dump(s: &TestServer) -> Vec<u8> {
    if s.database_url.starts_with("sqlite:") {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&s._dir.0).unwrap() {
            let path = entry.unwrap().path();
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("sigil.db"))
            {
                out.extend(std::fs::read(&path).unwrap());
            }
        }
        assert!(out.len() > 4096, "the SQLite files were read");
        return out;
    }
    use sqlx::{Connection, Row};
    let mut conn = sqlx::PgConnection::connect(&s.database_url).await.unwrap();
    let tables = sqlx::query(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let mut out = String::new();
    for t in tables {
        let name: String = t.get(0);
        let row = sqlx::query(&format!(
            "SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM \"{name}\" t"
        ))
        .fetch_one(&mut conn)
        .await
        .unwrap();
        let text: String = row.get(0);
        out.push_str(&text);
        out.push('\n');
    }
    assert!(out.contains("argon2"), "the tables were read");
    out.into_bytes()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn database_contents_hold_no_usable_secret() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let bob = s.user(&t, "bob", "member", "person").await;
    let (token, secret) = s.mint(&t.admin, json!({"scope_set": "read-only"})).await;
    assert_eq!(s.get("/api/v1/users/me", &secret).await.status, 200);
    let r = s
        .post("/api/v1/tenant/signing-keys/rotate", &t.admin, json!({}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    s.flush_usage().await;
    let dump = database_dump(&s).await;
    let signature = secret.rsplit('.').next().unwrap();
    let master = s.state().config.master_key.clone();
    for (what, needle) in [
        ("a token secret", secret.as_str()),
        ("a token's signature", signature),
        ("a login session", t.admin.as_str()),
        ("a member's session", bob.token.as_str()),
        ("the admin's password", t.admin_password.as_str()),
        ("a member's password", bob.password.as_str()),
        ("the master key", master.as_str()),
        // Ed25519 PKCS#8 private keys start with these bytes (DER, and base64 of it).
        ("a plain private key (base64)", "MC4CAQAwBQYDK2VwBCIEI"),
    ] {
        assert!(
            !contains(&dump, needle.as_bytes()),
            "the database holds {what}"
        );
    }
    let der = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    assert!(
        !contains(&dump, &der),
        "the database holds a plain private key"
    );
    // What it holds instead: the SHA-256 of each secret and argon2id password hashes.
    let hash = sigil_core::crypto::sha256_hex(secret.as_bytes());
    assert!(
        contains(&dump, hash.as_bytes()),
        "the token's SHA-256 is stored"
    );
    assert!(
        contains(&dump, b"$argon2id$"),
        "passwords are argon2id hashes"
    );
    // A stolen hash is no credential.
    s.get("/api/v1/users/me", &hash)
        .await
        .expect(401, "token_malformed");
    assert_eq!(token["use_count"], 0);
}
