//! Issue 10: reliability and security. Tenant isolation and function-level authorization
//! generated from the live spec (every operation taking an id, every admin-only operation),
//! races (regenerate vs. verification, overlapping bulk deletes, concurrent key rotations,
//! the per-user token limit), limits (page size, tokens per user, scope set size, refused
//! verifications per client address, header size, idle connections) and database faults
//! (PostgreSQL through a proxy the test can cut).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

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
            });
        }
    }
    assert!(ops.len() > 30, "the spec lists the operations");
    ops
}

/// Methods only the operator may call, and those each role may not call (rights.rs).
fn operator_methods() -> BTreeSet<&'static str> {
    sigil_token::rights::OPERATOR_METHODS
        .iter()
        .copied()
        .collect()
}

fn denied(role: Role) -> BTreeSet<&'static str> {
    sigil_token::rights::denied_for(role).collect()
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
    let mut ids = BTreeMap::new();
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
        "getUser" | "deactivateUser" | "deleteUser" => (None, ""),
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
    let s = TestServer::start().await;
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
    let active: Vec<&Value> = keys
        .body
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
