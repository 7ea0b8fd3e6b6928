//! Issue 4: the scope registry — the built-in plugin, plugin registration from manifests
//! and OpenAPI documents, `--plugin` files, predefined and custom scope sets, method search,
//! tenant isolation, and registry changes reaching verification at once. Plugin namespaces
//! and what a registration widens are in `namespaces.rs`.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::{Tenant, TestServer};

const PLATFORM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/plugins/platform.json"
);

fn platform_manifest() -> Value {
    serde_json::from_str(&std::fs::read_to_string(PLATFORM).unwrap()).unwrap()
}

async fn with_platform() -> TestServer {
    TestServer::start_with(|c| c.plugins = vec![PLATFORM.into()]).await
}

/// A manifest for plugin `id` with methods `(suffix, verb, access)` named `{id}.{suffix}`.
fn manifest(id: &str, version: &str, methods: &[(&str, &str, &str)]) -> Value {
    json!({
        "id": id,
        "name": format!("{id} plugin"),
        "version": version,
        "methods": methods.iter().map(|(m, verb, access)| json!({
            "id": format!("{id}.{m}"),
            "http": {"method": verb, "path": format!("/{id}/{}", m.replace('.', "/"))},
            "access": access,
            "description": format!("{m} of {id}"),
        })).collect::<Vec<_>>(),
    })
}

fn crm(version: &str) -> Value {
    manifest(
        "crm",
        version,
        &[
            ("contacts.list", "GET", "read"),
            ("contacts.create", "POST", "change"),
            ("contacts.delete", "DELETE", "change"),
        ],
    )
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Every method visible to the caller for a listMethods query (all pages).
async fn list_methods(s: &TestServer, token: &str, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let sep = if query.is_empty() { "" } else { "&" };
        let r = s
            .get(
                &format!("/api/v1/methods?{query}{sep}limit=100&offset={}", out.len()),
                token,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let items = r.body["items"].as_array().unwrap().clone();
        let total = r.body["total"].as_u64().unwrap() as usize;
        out.extend(items.iter().cloned());
        if items.is_empty() || out.len() >= total {
            assert_eq!(out.len(), total, "pages add up to total");
            return out;
        }
    }
}

fn ids(methods: &[Value]) -> Vec<String> {
    methods
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

/// POST /api/v1/introspect with `{token, method}` as `caller`.
async fn introspect(s: &TestServer, caller: &str, token: &str, method: &str) -> Value {
    let r = s
        .post(
            "/api/v1/introspect",
            caller,
            json!({"token": token, "method": method}),
        )
        .await;
    assert_eq!(r.status, 200, "introspect: {}", r.body);
    r.body
}

fn scope_of(answer: &Value) -> BTreeSet<String> {
    answer["scope"]
        .as_str()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

async fn register(s: &TestServer, token: &str, body: Value) -> crate::harness::Resp {
    s.post("/api/v1/plugins", token, body).await
}

#[tokio::test]
async fn builtin_plugin_covers_every_operation_exactly_once() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let spec = s.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(spec.status, 200);

    // operationId -> (method, verb, path) from the published spec.
    let mut ops: BTreeMap<String, (String, String, String)> = BTreeMap::new();
    for (path, item) in spec.body["paths"].as_object().unwrap() {
        for (verb, op) in item.as_object().unwrap() {
            if !["get", "head", "post", "put", "patch", "delete", "options"]
                .contains(&verb.as_str())
            {
                continue;
            }
            let op_id = op["operationId"].as_str().unwrap().to_owned();
            let method = op["x-sigil-method"]
                .as_str()
                .unwrap_or_else(|| panic!("{op_id} has no x-sigil-method"))
                .to_owned();
            let prev = ops.insert(
                op_id.clone(),
                (method, verb.to_ascii_uppercase(), path.clone()),
            );
            assert!(prev.is_none(), "operationId {op_id} appears twice");
        }
    }
    assert!(ops.len() >= 40, "{} operations", ops.len());

    let r = s.get("/api/v1/plugins/sigil", &t.admin).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["built_in"], true);
    assert_eq!(r.body["visibility"], "global");
    let methods = r.body["methods"].as_array().unwrap();
    let mut by_id: BTreeMap<String, &Value> = BTreeMap::new();
    for m in methods {
        let id = m["id"].as_str().unwrap().to_owned();
        assert_eq!(m["plugin"], "sigil");
        assert!(by_id.insert(id.clone(), m).is_none(), "method {id} twice");
    }
    // Every operation has exactly one method, and every method exactly one operation.
    assert_eq!(by_id.len(), ops.len(), "one method per operation");
    let mut used = BTreeSet::new();
    for (op_id, (method, verb, path)) in &ops {
        assert!(used.insert(method.clone()), "{method} maps two operations");
        let m = by_id
            .get(method)
            .unwrap_or_else(|| panic!("{op_id} → {method} is not a method of sigil"));
        assert_eq!(m["http_method"], verb.as_str(), "{op_id}");
        assert_eq!(m["path"], path.as_str(), "{op_id}");
        let expected = if verb == "GET" || verb == "HEAD" || op_id == "introspectToken" {
            "read"
        } else {
            "change"
        };
        assert_eq!(m["access"], expected, "access of {op_id} ({verb})");
        assert!(m["docs_url"].is_string(), "{op_id} links its docs");
    }
    assert_eq!(by_id["sigil.introspect"]["access"], "read");
    assert_eq!(by_id["tokens.create"]["access"], "change");

    // listMethods agrees with getPlugin.
    let listed = list_methods(&s, &t.admin, "plugin=sigil").await;
    assert_eq!(
        sorted(ids(&listed)),
        by_id.keys().cloned().collect::<Vec<_>>()
    );
    // The operator sees the same built-in plugin.
    let r = s.get("/api/v1/plugins/sigil", &s.operator_token()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["methods"].as_array().unwrap().len(), ops.len());
}

#[tokio::test]
async fn manifest_registration_global_by_operator_private_by_tenant_admin() {
    let s = TestServer::start().await;
    let op = s.operator_token();
    let acme = s.tenant_admin("acme").await;
    let globex = s.tenant_admin("globex").await;

    // Operator → global.
    let r = register(&s, &op, json!({"manifest": crm("1.0.0")})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["plugin"]["visibility"], "global");
    assert_eq!(r.body["plugin"]["built_in"], false);
    assert_eq!(r.body["removed_methods"], json!([]));
    for t in [&acme, &globex] {
        let methods = list_methods(&s, &t.admin, "plugin=crm").await;
        let got: BTreeMap<String, String> = methods
            .iter()
            .map(|m| {
                (
                    m["id"].as_str().unwrap().to_owned(),
                    m["access"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            got,
            BTreeMap::from([
                ("crm.contacts.create".to_owned(), "change".to_owned()),
                ("crm.contacts.delete".to_owned(), "change".to_owned()),
                ("crm.contacts.list".to_owned(), "read".to_owned()),
            ])
        );
        let m = methods
            .iter()
            .find(|m| m["id"] == "crm.contacts.delete")
            .unwrap();
        assert_eq!(m["http_method"], "DELETE");
        assert_eq!(m["path"], "/crm/contacts/delete");
        assert_eq!(m["description"], "contacts.delete of crm");
    }

    // Tenant admin → private to the tenant.
    let r = register(
        &s,
        &acme.admin,
        json!({"manifest": manifest("billing", "0.1.0", &[("invoices.list", "get", "read"), ("invoices.pay", "post", "change")])}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["plugin"]["visibility"], "tenant");
    let got = list_methods(&s, &acme.admin, "plugin=billing").await;
    assert_eq!(
        sorted(ids(&got)),
        vec!["billing.invoices.list", "billing.invoices.pay"]
    );
    assert_eq!(got[0]["http_method"], "GET", "verbs are stored uppercase");
    let r = s.get("/api/v1/plugins/billing", &acme.admin).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["visibility"], "tenant");
    // Not visible to the operator's global view nor to another tenant.
    assert!(list_methods(&s, &globex.admin, "plugin=billing")
        .await
        .is_empty());
    s.get("/api/v1/plugins/billing", &globex.admin)
        .await
        .expect(404, "not_found");
    let listed = s.get("/api/v1/plugins", &globex.admin).await;
    let names: Vec<String> = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(names.contains(&"crm".to_owned()) && names.contains(&"sigil".to_owned()));
    assert!(!names.contains(&"billing".to_owned()), "{names:?}");
    let listed = s.get("/api/v1/plugins", &op).await;
    assert!(!listed.body.to_string().contains("billing"));

    // A member may read the registry but not register.
    let bob = s.user(&acme, "bob", "member", "person").await;
    assert_eq!(s.get("/api/v1/plugins", &bob.token).await.status, 200);
    register(
        &s,
        &bob.token,
        json!({"manifest": manifest("x1", "1", &[("a", "GET", "read")])}),
    )
    .await
    .expect(403, "user_lacks_permission");
}

#[tokio::test]
async fn openapi_documents_become_plugins() {
    let s = TestServer::start().await;
    let op = s.operator_token();
    let t = s.tenant_admin("acme").await;
    let doc = json!({
        "openapi": "3.0.3",
        "info": {"title": "Inventory", "version": "1.2.0", "description": "Stock keeping"},
        "servers": [{"url": "https://inv.example.com/api"}],
        "tags": [{"name": "Stock Admin", "description": "Manage the stock"}],
        "paths": {
            "/items": {
                "get": {"operationId": "listItems", "tags": ["Items"], "summary": "List items",
                        "externalDocs": {"url": "https://inv.example.com/docs/list"}},
                "post": {"operationId": "createItem", "tags": ["Items", "Stock Admin"], "summary": "Create an item"}
            },
            "/items/{id}": {
                "head": {"operationId": "itemExists"},
                "put": {"operationId": "replaceItem", "tags": ["Stock Admin"]},
                "patch": {"operationId": "patchItem"},
                "delete": {"operationId": "deleteItem", "tags": ["Stock Admin"]}
            },
            "/items/search": {
                "post": {"operationId": "searchItems", "tags": ["Items"], "x-sigil-access": "read"}
            },
            "/cache": {
                "get": {"operationId": "purgeHTTPCache", "x-sigil-access": "change"}
            }
        }
    });
    let r = register(&s, &op, json!({"openapi": doc, "id": "inventory"})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["plugin"]["name"], "Inventory");
    assert_eq!(r.body["plugin"]["version"], "1.2.0");
    assert_eq!(
        sorted(strs(&r.body["plugin"]["scope_sets"])),
        vec!["inventory.items", "inventory.stock-admin"]
    );

    let methods = list_methods(&s, &t.admin, "plugin=inventory").await;
    let got: BTreeMap<String, (String, String, String)> = methods
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap().to_owned(),
                (
                    m["http_method"].as_str().unwrap().to_owned(),
                    m["path"].as_str().unwrap().to_owned(),
                    m["access"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect();
    let want = |verb: &str, path: &str, access: &str| {
        (verb.to_owned(), path.to_owned(), access.to_owned())
    };
    assert_eq!(
        got,
        BTreeMap::from([
            (
                "inventory.list_items".to_owned(),
                want("GET", "/api/items", "read")
            ),
            (
                "inventory.create_item".to_owned(),
                want("POST", "/api/items", "change")
            ),
            (
                "inventory.item_exists".to_owned(),
                want("HEAD", "/api/items/{id}", "read")
            ),
            (
                "inventory.replace_item".to_owned(),
                want("PUT", "/api/items/{id}", "change")
            ),
            (
                "inventory.patch_item".to_owned(),
                want("PATCH", "/api/items/{id}", "change")
            ),
            (
                "inventory.delete_item".to_owned(),
                want("DELETE", "/api/items/{id}", "change")
            ),
            (
                "inventory.search_items".to_owned(),
                want("POST", "/api/items/search", "read")
            ),
            (
                "inventory.purge_http_cache".to_owned(),
                want("GET", "/api/cache", "change")
            ),
        ])
    );
    // docs_url where the operation has one, absent otherwise.
    for m in &methods {
        if m["id"] == "inventory.list_items" {
            assert_eq!(m["docs_url"], "https://inv.example.com/docs/list");
            assert_eq!(m["description"], "List items");
        } else {
            assert!(m["docs_url"].is_null(), "{m}");
        }
    }

    // Tags became predefined sets {plugin}.{tag-slug}.
    let r = s
        .get("/api/v1/scope-sets/inventory.stock-admin", &t.admin)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["kind"], "predefined");
    assert_eq!(r.body["plugin"], "inventory");
    assert_eq!(r.body["name"], "Stock Admin");
    assert_eq!(r.body["description"], "Manage the stock");
    assert_eq!(
        sorted(strs(&r.body["methods"])),
        vec![
            "inventory.create_item",
            "inventory.delete_item",
            "inventory.replace_item"
        ]
    );
    let r = s.get("/api/v1/scope-sets/inventory.items", &t.admin).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        sorted(strs(&r.body["methods"])),
        vec![
            "inventory.create_item",
            "inventory.list_items",
            "inventory.search_items"
        ]
    );

    // A tenant admin may import a private plugin the same way.
    let small = json!({"openapi": "3.1.0", "info": {"title": "Mine", "version": "1"},
        "paths": {"/ping": {"get": {"operationId": "Ping.GetStatus"}}}});
    let r = register(&s, &t.admin, json!({"openapi": small, "id": "mine"})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["plugin"]["visibility"], "tenant");
    let got = list_methods(&s, &t.admin, "plugin=mine").await;
    assert_eq!(ids(&got), vec!["mine.ping.get_status"]);
    assert_eq!(got[0]["access"], "read");

    // The same document again changes nothing.
    let r = register(&s, &op, json!({"openapi": doc, "id": "inventory"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["removed_methods"], json!([]));
    assert_eq!(r.body["plugin"]["methods"].as_array().unwrap().len(), 8);

    // Broken documents are 422 with every problem listed.
    let bad = json!({"openapi": "3.0.0", "info": {"title": "Bad", "version": "1"}, "paths": {
        "/a": {"get": {"summary": "no id"}},
        "/b": {"post": {"operationId": "doB", "x-sigil-access": "write"}}
    }});
    let r = register(&s, &op, json!({"openapi": bad, "id": "bad"})).await;
    r.expect(422, "invalid_openapi");
    let errors = r.errors();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors.iter().any(|e| e.contains("operationId")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("x-sigil-access")),
        "{errors:?}"
    );
    let r = register(&s, &op, json!({"openapi": {"swagger": "2.0"}, "id": "old"})).await;
    r.expect(422, "invalid_openapi");
    assert!(!r.errors().is_empty());
    // The plugin id is required for a document.
    register(&s, &op, json!({"openapi": small}))
        .await
        .expect(422, "id_required");
}

#[tokio::test]
async fn invalid_manifests_are_refused_with_every_problem() {
    let s = TestServer::start().await;
    let op = s.operator_token();
    // A plugin id the spec's pattern refuses is named before the rest is looked at.
    let r = register(
        &s,
        &op,
        json!({"manifest": {"id": "Bad Id", "name": " ", "version": "1", "methods": []}}),
    )
    .await;
    r.expect(422, "invalid_manifest");
    assert_eq!(
        r.errors(),
        vec![
            "manifest.id: must be 1-64 characters of a-z, 0-9, '_' and '-', starting with a letter or digit",
            "manifest.name: must not be empty or white space only"
        ]
    );
    let bad = json!({
        "id": "bad",
        "name": "Bad",
        "version": "1.0",
        "methods": [
            {"id": "bad.a", "http": {"method": "TRACE", "path": "no-slash"}, "access": "read"},
            {"id": "bad.a", "http": {"method": "GET", "path": "/a"}, "access": "read"},
            {"id": "Bad..B", "http": {"method": "GET", "path": "/b"}, "access": "read"}
        ],
        "scope_sets": [{"id": "s", "name": "S", "methods": ["zzz.*"]}]
    });
    let r = register(&s, &op, json!({"manifest": bad})).await;
    r.expect(422, "invalid_manifest");
    let errors = r.errors();
    for needle in [
        "TRACE",
        "must start with '/'",
        "duplicate method id",
        "method 'Bad..B'",
        "'zzz.*' matches no method",
    ] {
        assert!(
            errors.iter().any(|e| e.contains(needle)),
            "missing {needle:?} in {errors:?}"
        );
    }
    // Neither or both of manifest/openapi.
    register(&s, &op, json!({}))
        .await
        .expect(422, "manifest_required");
    register(
        &s,
        &op,
        json!({"manifest": crm("1"), "openapi": {"openapi": "3.0.0"}, "id": "crm"}),
    )
    .await
    .expect(422, "manifest_required");
    // The built-in id is reserved.
    register(
        &s,
        &op,
        json!({"manifest": manifest("sigil", "99", &[("x", "GET", "read")])}),
    )
    .await
    .expect(409, "reserved_plugin");
    // A method outside the plugin's namespace (here: one the built-in plugin defines).
    let clash = json!({"id": "clash", "name": "Clash", "version": "1", "methods": [
        {"id": "tokens.list", "http": {"method": "GET", "path": "/clash"}, "access": "read"}]});
    let r = register(&s, &op, json!({"manifest": clash})).await;
    r.expect(422, "method_outside_namespace");
    assert_eq!(r.errors().len(), 1, "{}", r.body);
    // A route another plugin has.
    let clash = json!({"id": "clash", "name": "Clash", "version": "1", "methods": [
        {"id": "clash.tokens", "http": {"method": "GET", "path": "/api/v1/tokens"}, "access": "read"}]});
    let r = register(&s, &op, json!({"manifest": clash})).await;
    r.expect(409, "registry_conflict");
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("route GET /api/v1/tokens conflicts with method 'tokens.list'"),
        "{}",
        r.body
    );
    // Nothing was stored.
    let r = s.get("/api/v1/plugins", &op).await;
    let names: Vec<&str> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["sigil"]);
}

#[tokio::test]
async fn versions_reregistration_upgrade_and_downgrade() {
    let s = TestServer::start().await;
    let op = s.operator_token();
    let t = s.tenant_admin("acme").await;
    let r = register(&s, &op, json!({"manifest": crm("1.9.0")})).await;
    assert_eq!(r.status, 201, "{}", r.body);

    // Same content again: 200, nothing removed.
    let r = register(&s, &op, json!({"manifest": crm("1.9.0")})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["plugin"]["version"], "1.9.0");
    assert_eq!(r.body["removed_methods"], json!([]));
    assert_eq!(r.body["plugin"]["methods"].as_array().unwrap().len(), 3);

    // A newer version (numerically: 1.10 > 1.9) that drops one method and adds another.
    let v2 = manifest(
        "crm",
        "1.10.0",
        &[
            ("contacts.list", "GET", "read"),
            ("contacts.create", "POST", "change"),
            ("contacts.update", "PATCH", "change"),
        ],
    );
    let r = register(&s, &op, json!({"manifest": v2})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["plugin"]["version"], "1.10.0");
    assert_eq!(r.body["removed_methods"], json!(["crm.contacts.delete"]));
    assert_eq!(
        sorted(ids(&list_methods(&s, &t.admin, "plugin=crm").await)),
        vec![
            "crm.contacts.create",
            "crm.contacts.list",
            "crm.contacts.update"
        ]
    );

    // Older, or equal but different: 409.
    let r = register(&s, &op, json!({"manifest": crm("1.9.0")})).await;
    r.expect(409, "version_not_newer");
    let r = register(&s, &op, json!({"manifest": crm("1.10.0")})).await;
    r.expect(409, "version_not_newer");
    let r = s.get("/api/v1/plugins/crm", &t.admin).await;
    assert_eq!(r.body["version"], "1.10.0", "unchanged after refusals");

    // Pre-releases come before their release (semver order), numeric parts compare as
    // numbers, and build metadata is ignored.
    let mut current = "1.10.0".to_owned();
    for (version, newer) in [
        ("2.0.0-beta.9", true),
        ("2.0.0-beta.10", true),
        ("2.0.0-beta.2", false),
        ("2.0.0-rc.1", true),
        ("2.0.0", true),
        ("2.0.0-rc.2", false),
        ("2.0.0+build.7", false),
        ("2.0.1", true),
    ] {
        let r = register(&s, &op, json!({"manifest": crm(version)})).await;
        if newer {
            assert_eq!(r.status, 200, "{current} → {version}: {}", r.body);
            assert_eq!(r.body["plugin"]["version"], version);
            current = version.to_owned();
        } else {
            assert_eq!(
                r.code(),
                "version_not_newer",
                "{current} → {version}: {}",
                r.body
            );
            r.expect(409, "version_not_newer");
        }
    }
}

#[tokio::test]
async fn deleting_a_plugin_removes_its_methods_from_tokens() {
    let s = TestServer::start().await;
    let op = s.operator_token();
    let t = s.tenant_admin("acme").await;
    let r = register(&s, &op, json!({"manifest": crm("1.0.0")})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let (_, secret) = s
        .mint(
            &t.admin,
            json!({"methods": ["crm.contacts.list", "crm.contacts.delete", "tokens.list"]}),
        )
        .await;
    let a = introspect(&s, &t.admin, &secret, "crm.contacts.list").await;
    assert_eq!(a["active"], true, "{a}");
    assert_eq!(a["method_allowed"], true);
    assert_eq!(
        scope_of(&a),
        BTreeSet::from([
            "crm.contacts.list".to_owned(),
            "crm.contacts.delete".to_owned(),
            "tokens.list".to_owned()
        ])
    );

    let r = s.delete("/api/v1/plugins/crm", &op).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["id"], "crm");
    assert_eq!(
        sorted(strs(&r.body["removed_methods"])),
        vec![
            "crm.contacts.create",
            "crm.contacts.delete",
            "crm.contacts.list"
        ]
    );
    assert!(r.body["note"].as_str().unwrap().contains('3'));

    // The token is still valid for what remains, and the plugin methods are gone.
    let a = introspect(&s, &t.admin, &secret, "tokens.list").await;
    assert_eq!(a["active"], true, "{a}");
    assert_eq!(scope_of(&a), BTreeSet::from(["tokens.list".to_owned()]));
    let r = s
        .post(
            "/api/v1/introspect",
            &t.admin,
            json!({"token": secret, "method": "crm.contacts.list"}),
        )
        .await;
    r.expect(422, "unknown_methods");
    s.get("/api/v1/plugins/crm", &t.admin)
        .await
        .expect(404, "not_found");
    assert!(list_methods(&s, &t.admin, "plugin=crm").await.is_empty());
    s.delete("/api/v1/plugins/crm", &op)
        .await
        .expect(404, "not_found");

    // Registering it again gives the method back to the token that named it.
    let r = register(&s, &op, json!({"manifest": crm("1.0.0")})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let a = introspect(&s, &t.admin, &secret, "crm.contacts.delete").await;
    assert_eq!(a["active"], true, "{a}");
}

#[tokio::test]
async fn plugin_file_is_loaded_with_its_predefined_sets() {
    let s = with_platform().await;
    let t = s.tenant_admin("acme").await;
    let m = platform_manifest();

    let r = s.get("/api/v1/plugins/platform", &t.admin).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["version"], m["version"]);
    assert_eq!(r.body["visibility"], "global");
    assert_eq!(r.body["built_in"], false);

    let r = s.get("/api/v1/scope-sets", &t.admin).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let sets: BTreeMap<String, Value> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap().to_owned(), s.clone()))
        .collect();
    for (id, name) in [
        ("platform.extended-access", "Extended Access"),
        ("platform.ide-plugins", "IDE Plugins"),
        ("platform.marketplace", "Marketplace"),
        ("platform.maven-plugin", "Maven Plugin"),
    ] {
        let set = sets.get(id).unwrap_or_else(|| panic!("{id} missing"));
        assert_eq!(set["name"], name);
        assert_eq!(set["kind"], "predefined");
        assert_eq!(set["plugin"], "platform");
    }
    assert_eq!(sets["read-only"]["kind"], "predefined");
    assert_eq!(sets["read-change"]["kind"], "predefined");
    assert_eq!(sets.len(), 6, "{:?}", sets.keys());
    let r = s.get("/api/v1/scope-sets?q=maven", &t.admin).await;
    let found: Vec<&str> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    assert_eq!(found, vec!["platform.maven-plugin"]);

    // getScopeSet resolves globs over the plugin's methods.
    let all: Vec<(String, String)> = m["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["id"].as_str().unwrap().to_owned(),
                x["access"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let matching = |prefixes: &[&str]| -> Vec<String> {
        sorted(
            all.iter()
                .filter(|(id, _)| {
                    prefixes.iter().any(|p| match p.strip_suffix('*') {
                        Some(pre) => id.starts_with(pre),
                        None => id == p,
                    })
                })
                .map(|(id, _)| id.clone())
                .collect(),
        )
    };
    for def in m["scope_sets"].as_array().unwrap() {
        let id = format!("platform.{}", def["id"].as_str().unwrap());
        let r = s.get(&format!("/api/v1/scope-sets/{id}"), &t.admin).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let entries = strs(&def["methods"]);
        let entries: Vec<&str> = entries.iter().map(String::as_str).collect();
        let want = matching(&entries);
        assert!(!want.is_empty());
        assert_eq!(sorted(strs(&r.body["methods"])), want, "{id}");
        assert_eq!(r.body["method_count"], want.len());
    }
    let r = s
        .get("/api/v1/scope-sets/platform.ide-plugins", &t.admin)
        .await;
    assert_eq!(
        sorted(strs(&r.body["methods"])),
        vec![
            "platform.environment.control.getenvinfo",
            "platform.ide.plugin.deploy",
            "platform.ide.plugin.getenvs"
        ]
    );
    // read-only holds every read method visible, including the plugin's.
    let r = s.get("/api/v1/scope-sets/read-only", &t.admin).await;
    let ro = strs(&r.body["methods"]);
    assert!(ro.contains(&"platform.environment.control.getenvs".to_owned()));
    assert!(!ro.contains(&"platform.environment.control.stopenv".to_owned()));
    assert!(ro.contains(&"tokens.list".to_owned()));
    assert!(!ro.contains(&"tokens.create".to_owned()));

    // A token with a predefined set works for its methods only.
    let (_, secret) = s
        .mint(&t.admin, json!({"scope_set": "platform.marketplace"}))
        .await;
    let a = introspect(&s, &t.admin, &secret, "platform.marketplace.app.install").await;
    assert_eq!(a["active"], true, "{a}");
    let a = introspect(
        &s,
        &t.admin,
        &secret,
        "platform.environment.control.stopenv",
    )
    .await;
    assert_eq!(a["active"], false, "{a}");
    assert_eq!(a["code"], "method_not_in_scope");
}

#[tokio::test]
async fn custom_scope_sets_by_tenant_admins() {
    let s = with_platform().await;
    let t = s.tenant_admin("acme").await;
    let bob = s.user(&t, "bob", "member", "person").await;
    let m = platform_manifest();
    let env_read: Vec<String> = sorted(
        m["methods"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| {
                x["id"]
                    .as_str()
                    .unwrap()
                    .starts_with("platform.environment.")
                    && x["access"] == "read"
            })
            .map(|x| x["id"].as_str().unwrap().to_owned())
            .collect(),
    );
    assert!(env_read.len() >= 3);

    let r = s
        .post(
            "/api/v1/scope-sets",
            &t.admin,
            json!({"id": "env-read", "name": "Environments (read)", "description": "look only",
                   "methods": ["platform.environment.*", "platform.users.account.getbalance", "platform.users.account.getuserinfo"],
                   "access": "read"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let mut want = env_read.clone();
    want.push("platform.users.account.getbalance".into());
    want.push("platform.users.account.getuserinfo".into());
    let want = sorted(want);
    assert_eq!(r.body["kind"], "custom");
    assert_eq!(r.body["access"], "read");
    assert_eq!(sorted(strs(&r.body["methods"])), want);
    let r = s.get("/api/v1/scope-sets/env-read", &t.admin).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(sorted(strs(&r.body["methods"])), want);
    assert_eq!(r.body["method_count"], want.len());
    assert_eq!(
        strs(&r.body["entries"]),
        vec![
            "platform.environment.*",
            "platform.users.account.getbalance",
            "platform.users.account.getuserinfo"
        ]
    );
    assert!(!strs(&r.body["methods"]).contains(&"platform.environment.control.stopenv".to_owned()));

    // Unknown ids and globs matching nothing: 422 naming them.
    let r = s
        .post(
            "/api/v1/scope-sets",
            &t.admin,
            json!({"id": "broken", "name": "Broken",
                   "methods": ["platform.environment.*", "nope.method", "zzz.*"]}),
        )
        .await;
    r.expect(422, "unknown_methods");
    assert_eq!(
        r.error_fields(),
        vec!["methods[1]", "methods[2]"],
        "{}",
        r.body
    );
    s.get("/api/v1/scope-sets/broken", &t.admin)
        .await
        .expect(404, "not_found");
    // Duplicate id, and the id of a predefined set.
    let r = s
        .post(
            "/api/v1/scope-sets",
            &t.admin,
            json!({"id": "env-read", "name": "Again", "methods": ["tokens.list"]}),
        )
        .await;
    r.expect(409, "scope_set_exists");
    let r = s
        .post(
            "/api/v1/scope-sets",
            &t.admin,
            json!({"id": "read-only", "name": "Again", "methods": ["tokens.list"]}),
        )
        .await;
    assert!(r.status.is_client_error(), "{}", r.body);

    // Members may list and get but not change.
    let r = s.get("/api/v1/scope-sets", &bob.token).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["id"] == "env-read"));
    let r = s.get("/api/v1/scope-sets?kind=custom", &bob.token).await;
    assert_eq!(
        r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec!["env-read"]
    );
    let r = s.get("/api/v1/scope-sets/env-read", &bob.token).await;
    assert_eq!(r.status, 200, "{}", r.body);
    s.post(
        "/api/v1/scope-sets",
        &bob.token,
        json!({"id": "mine", "name": "Mine", "methods": ["tokens.list"]}),
    )
    .await
    .expect(403, "user_lacks_permission");
    s.patch(
        "/api/v1/scope-sets/env-read",
        &bob.token,
        json!({"name": "Hijacked"}),
    )
    .await
    .expect(403, "user_lacks_permission");
    s.delete("/api/v1/scope-sets/env-read?force=true", &bob.token)
        .await
        .expect(403, "user_lacks_permission");

    // A token using the set gets its read methods only.
    let (_, secret) = s.mint(&t.admin, json!({"scope_set": "env-read"})).await;
    let a = introspect(
        &s,
        &t.admin,
        &secret,
        "platform.environment.control.getenvs",
    )
    .await;
    assert_eq!(a["active"], true, "{a}");
    assert_eq!(scope_of(&a), want.iter().cloned().collect::<BTreeSet<_>>());
    let a = introspect(
        &s,
        &t.admin,
        &secret,
        "platform.environment.control.stopenv",
    )
    .await;
    assert_eq!(a["active"], false, "{a}");
    assert_eq!(a["code"], "method_not_in_scope");

    // updateScopeSet: rename and drop the read restriction.
    let r = s
        .patch(
            "/api/v1/scope-sets/env-read",
            &t.admin,
            json!({"name": "Environments", "methods": ["platform.environment.control.*"], "access": "change"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["name"], "Environments");
    let r = s.get("/api/v1/scope-sets/env-read", &t.admin).await;
    let got = strs(&r.body["methods"]);
    assert!(got.contains(&"platform.environment.control.stopenv".to_owned()));
    assert!(got
        .iter()
        .all(|x| x.starts_with("platform.environment.control.")));
    assert_eq!(r.body["name"], "Environments");
    assert_eq!(r.body["description"], "look only", "kept");
    let r = s
        .patch(
            "/api/v1/scope-sets/env-read",
            &t.admin,
            json!({"methods": ["platform.environment.nothing.*"]}),
        )
        .await;
    r.expect(422, "unknown_methods");
    assert_eq!(
        r.errors(),
        vec![
            r#"methods[0]: "platform.environment.nothing.*" matches no method of the registry; listMethods shows them"#
        ]
    );
    s.patch("/api/v1/scope-sets/nope", &t.admin, json!({"name": "x"}))
        .await
        .expect(404, "not_found");

    // deleteScopeSet: refused while a token uses it, unless forced.
    let a = introspect(
        &s,
        &t.admin,
        &secret,
        "platform.environment.control.stopenv",
    )
    .await;
    assert_eq!(a["active"], true, "{a}");
    s.delete("/api/v1/scope-sets/env-read", &t.admin)
        .await
        .expect(409, "scope_set_in_use");
    assert_eq!(
        s.get("/api/v1/scope-sets/env-read", &t.admin).await.status,
        200
    );
    let r = s
        .delete("/api/v1/scope-sets/env-read?force=true", &t.admin)
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    s.get("/api/v1/scope-sets/env-read", &t.admin)
        .await
        .expect(404, "not_found");
    // The token is left with nothing from the deleted set.
    let a = introspect(
        &s,
        &t.admin,
        &secret,
        "platform.environment.control.stopenv",
    )
    .await;
    assert_eq!(a["active"], false, "{a}");
    assert_eq!(a["code"], "method_not_in_scope");
    // An unused set is deleted without force.
    let r = s
        .post(
            "/api/v1/scope-sets",
            &t.admin,
            json!({"id": "spare", "name": "Spare", "methods": ["tokens.list"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        s.delete("/api/v1/scope-sets/spare", &t.admin).await.status,
        204
    );
}

#[tokio::test]
async fn list_methods_searches_filters_and_pages() {
    let s = with_platform().await;
    let t = s.tenant_admin("acme").await;
    let m = platform_manifest();
    let manifest_methods = m["methods"].as_array().unwrap();

    // Search over ids, case-insensitively.
    let r = s.get("/api/v1/methods?q=STOPENV", &t.admin).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        ids(r.body["items"].as_array().unwrap()),
        vec!["platform.environment.control.stopenv"]
    );
    assert_eq!(r.body["total"], 1);
    // ... and over descriptions ("cloudlet" and "artifact" are in descriptions only).
    let r = s.get("/api/v1/methods?q=cloudlet", &t.admin).await;
    assert_eq!(
        ids(r.body["items"].as_array().unwrap()),
        vec!["platform.environment.control.changetopology"]
    );
    let r = s.get("/api/v1/methods?q=Artifact", &t.admin).await;
    assert_eq!(
        ids(r.body["items"].as_array().unwrap()),
        vec!["platform.maven.plugin.deploy"]
    );
    let r = s.get("/api/v1/methods?q=no-such-thing", &t.admin).await;
    assert_eq!(r.body["total"], 0);
    assert_eq!(r.body["items"], json!([]));
    // Search combined with the plugin filter: "token" matches sigil methods, not platform's.
    let r = s
        .get("/api/v1/methods?q=tokens.&plugin=sigil", &t.admin)
        .await;
    assert!(r.body["total"].as_u64().unwrap() >= 8, "{}", r.body);
    let r = s
        .get("/api/v1/methods?q=tokens.&plugin=platform", &t.admin)
        .await;
    assert_eq!(r.body["total"], 0, "{}", r.body);

    // Plugin and access filters.
    let platform = list_methods(&s, &t.admin, "plugin=platform").await;
    assert_eq!(platform.len(), manifest_methods.len());
    assert!(platform.iter().all(|x| x["plugin"] == "platform"));
    let reads = list_methods(&s, &t.admin, "plugin=platform&access=read").await;
    let want_reads = manifest_methods
        .iter()
        .filter(|x| x["access"] == "read")
        .count();
    assert_eq!(reads.len(), want_reads);
    assert!(reads.iter().all(|x| x["access"] == "read"));
    let changes = list_methods(&s, &t.admin, "access=change").await;
    assert!(changes.iter().all(|x| x["access"] == "change"));
    assert!(changes.iter().any(|x| x["plugin"] == "sigil"));
    assert!(changes.iter().any(|x| x["plugin"] == "platform"));
    let all = list_methods(&s, &t.admin, "").await;
    assert_eq!(
        all.len(),
        changes.len() + list_methods(&s, &t.admin, "access=read").await.len()
    );
    // docs_url comes from the manifest.
    for x in &platform {
        let def = manifest_methods
            .iter()
            .find(|d| d["id"] == x["id"])
            .unwrap();
        assert_eq!(x["docs_url"], def["docs_url"], "{}", x["id"]);
        assert!(x["docs_url"].is_string());
        assert_eq!(x["description"], def["description"]);
    }

    // Pagination: pages are disjoint, in a stable order, and total counts them all.
    let mut paged = Vec::new();
    for offset in (0..manifest_methods.len() + 5).step_by(5) {
        let r = s
            .get(
                &format!("/api/v1/methods?plugin=platform&limit=5&offset={offset}"),
                &t.admin,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["total"], manifest_methods.len());
        assert_eq!(r.body["offset"], offset);
        assert_eq!(r.body["limit"], 5);
        let items = r.body["items"].as_array().unwrap();
        assert_eq!(
            items.len(),
            5.min(manifest_methods.len().saturating_sub(offset))
        );
        paged.extend(ids(items));
    }
    assert_eq!(paged, ids(&platform));
    assert_eq!(
        sorted(paged.clone()),
        sorted(
            paged
                .iter()
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        )
    );
    s.get("/api/v1/methods?limit=0", &t.admin)
        .await
        .expect(422, "validation_failed");

    // The operator sees the global methods.
    let r = s
        .get("/api/v1/methods?plugin=platform", &s.operator_token())
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["total"], manifest_methods.len());
}

#[tokio::test]
async fn tenant_private_plugins_and_sets_are_isolated() {
    let s = TestServer::start().await;
    let op = s.operator_token();
    let acme = s.tenant_admin("acme").await;
    let globex = s.tenant_admin("globex").await;

    let r = register(&s, &acme.admin, json!({"manifest": crm("1.0.0")})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = s
        .post(
            "/api/v1/scope-sets",
            &acme.admin,
            json!({"id": "sales", "name": "Sales", "methods": ["crm.*"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);

    // globex sees neither.
    s.get("/api/v1/plugins/crm", &globex.admin)
        .await
        .expect(404, "not_found");
    s.delete("/api/v1/plugins/crm", &globex.admin)
        .await
        .expect(404, "not_found");
    assert_eq!(
        s.get("/api/v1/methods?q=crm", &globex.admin).await.body["total"],
        0
    );
    s.get("/api/v1/scope-sets/sales", &globex.admin)
        .await
        .expect(404, "not_found");
    s.patch(
        "/api/v1/scope-sets/sales",
        &globex.admin,
        json!({"name": "x"}),
    )
    .await
    .expect(404, "not_found");
    s.delete("/api/v1/scope-sets/sales?force=true", &globex.admin)
        .await
        .expect(404, "not_found");
    let r = s.get("/api/v1/scope-sets", &globex.admin).await;
    assert!(!r.body.to_string().contains("sales"), "{}", r.body);
    assert!(!r.body.to_string().contains("crm."), "{}", r.body);
    let r = s.get("/api/v1/scope-sets/read-change", &globex.admin).await;
    assert!(!strs(&r.body["methods"])
        .iter()
        .any(|m| m.starts_with("crm.")));
    let r = s
        .post(
            "/api/v1/scope-sets",
            &globex.admin,
            json!({"id": "sales", "name": "Sales", "methods": ["crm.contacts.list", "crm.*"]}),
        )
        .await;
    r.expect(422, "unknown_methods");
    assert_eq!(r.error_fields(), vec!["methods[0]", "methods[1]"]);
    let r = s
        .post(
            "/api/v1/tokens",
            &globex.admin,
            json!({"name": "x", "methods": ["crm.contacts.list"],
                   "expires_at": (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339()}),
        )
        .await;
    r.expect(422, "unknown_methods");
    let r = s
        .post(
            "/api/v1/tokens",
            &globex.admin,
            json!({"name": "x", "scope_set": "sales",
                   "expires_at": (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339()}),
        )
        .await;
    r.expect(422, "unknown_scope_set");
    // The operator's global view does not list it either.
    assert_eq!(
        s.get("/api/v1/methods?q=crm", &op).await.body["total"],
        0,
        "private methods are not global"
    );

    // globex may have its own plugin and set with the same ids.
    let other = manifest("crm", "5.0.0", &[("deals.list", "GET", "read")]);
    let r = register(&s, &globex.admin, json!({"manifest": other})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = s
        .post(
            "/api/v1/scope-sets",
            &globex.admin,
            json!({"id": "sales", "name": "Deals", "methods": ["crm.*"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(strs(&r.body["methods"]), vec!["crm.deals.list"]);
    let r = s.get("/api/v1/scope-sets/sales", &acme.admin).await;
    assert_eq!(r.body["name"], "Sales");
    assert_eq!(
        sorted(strs(&r.body["methods"])),
        vec![
            "crm.contacts.create",
            "crm.contacts.delete",
            "crm.contacts.list"
        ]
    );
    assert_eq!(
        s.get("/api/v1/plugins/crm", &acme.admin).await.body["version"],
        "1.0.0"
    );

    // A tenant cannot register a global plugin, nor remove the built-in or a global one.
    let r = register(
        &s,
        &acme.admin,
        json!({"manifest": manifest("shared", "1", &[("a", "GET", "read")]), "global": true}),
    )
    .await;
    r.expect(403, "operator_only");
    let r = register(
        &s,
        &op,
        json!({"manifest": manifest("shared", "1", &[("a", "GET", "read")])}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    s.delete("/api/v1/plugins/sigil", &acme.admin)
        .await
        .expect(409, "reserved_plugin");
    let r = s.delete("/api/v1/plugins/shared", &acme.admin).await;
    r.expect(403, "operator_only");
    s.delete("/api/v1/plugins/sigil", &op)
        .await
        .expect(409, "reserved_plugin");
    let r = s.get("/api/v1/plugins/sigil", &acme.admin).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        s.get("/api/v1/plugins/shared", &globex.admin).await.status,
        200
    );

    // acme removes its private plugin; globex's same-named plugin is untouched.
    let r = s.delete("/api/v1/plugins/crm", &acme.admin).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["removed_methods"].as_array().unwrap().len(), 3);
    let r = s.get("/api/v1/plugins/crm", &globex.admin).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["version"], "5.0.0");
    s.get("/api/v1/plugins/crm", &acme.admin)
        .await
        .expect(404, "not_found");
    // acme's set keeps its entries but now resolves to nothing; it can still be edited
    // without touching the entries, while new entries are checked.
    let r = s.get("/api/v1/scope-sets/sales", &acme.admin).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(strs(&r.body["entries"]), vec!["crm.*"]);
    assert_eq!(r.body["methods"], json!([]));
    assert_eq!(r.body["method_count"], 0);
    let r = s
        .patch(
            "/api/v1/scope-sets/sales",
            &acme.admin,
            json!({"description": "crm is gone"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["description"], "crm is gone");
    let r = s
        .patch(
            "/api/v1/scope-sets/sales",
            &acme.admin,
            json!({"methods": ["crm.*", "tokens.list"]}),
        )
        .await;
    r.expect(422, "unknown_methods");
    assert_eq!(r.error_fields(), vec!["methods[0]"]);
}

#[tokio::test]
async fn registry_changes_reach_verification_at_once() {
    let s = TestServer::start().await;
    let op = s.operator_token();
    let t: Tenant = s.tenant_admin("acme").await;
    let r = s
        .post(
            "/api/v1/scope-sets",
            &t.admin,
            json!({"id": "ops", "name": "Ops", "methods": ["tokens.list"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let (_, secret) = s.mint(&t.admin, json!({"scope_set": "ops"})).await;

    // Warm the verification cache, then change the set.
    let a = introspect(&s, &t.admin, &secret, "tokens.get").await;
    assert_eq!(a["active"], false, "{a}");
    assert_eq!(a["code"], "method_not_in_scope");
    let a = introspect(&s, &t.admin, &secret, "tokens.list").await;
    assert_eq!(a["active"], true, "{a}");
    let r = s
        .patch(
            "/api/v1/scope-sets/ops",
            &t.admin,
            json!({"methods": ["tokens.list", "tokens.get"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let a = introspect(&s, &t.admin, &secret, "tokens.get").await;
    assert_eq!(a["active"], true, "gained at once: {a}");
    assert_eq!(
        scope_of(&a),
        BTreeSet::from(["tokens.list".to_owned(), "tokens.get".to_owned()])
    );
    // And lost at once.
    let r = s
        .patch(
            "/api/v1/scope-sets/ops",
            &t.admin,
            json!({"methods": ["tokens.get"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let a = introspect(&s, &t.admin, &secret, "tokens.list").await;
    assert_eq!(a["active"], false, "lost at once: {a}");
    assert_eq!(a["code"], "method_not_in_scope");

    // A glob in a token's scope picks up a plugin's new methods as soon as it is upgraded.
    let r = register(&s, &op, json!({"manifest": crm("1.0.0")})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let (_, glob) = s
        .mint(&t.admin, json!({"methods": ["crm.contacts.*"]}))
        .await;
    let a = introspect(&s, &t.admin, &glob, "crm.contacts.list").await;
    assert_eq!(a["active"], true, "{a}");
    let v2 = manifest(
        "crm",
        "1.1.0",
        &[
            ("contacts.list", "GET", "read"),
            ("contacts.create", "POST", "change"),
            ("contacts.delete", "DELETE", "change"),
            ("contacts.merge", "POST", "change"),
        ],
    );
    let r = register(&s, &op, json!({"manifest": v2})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let a = introspect(&s, &t.admin, &glob, "crm.contacts.merge").await;
    assert_eq!(a["active"], true, "{a}");
    assert!(scope_of(&a).contains("crm.contacts.merge"));

    // The same token used directly against Sigil: refused for a method outside its scope.
    s.get("/api/v1/tokens", &secret)
        .await
        .expect(403, "method_not_in_scope");
}

#[tokio::test]
async fn concurrent_upgrades_never_go_backwards() {
    let s = TestServer::start().await;
    let op = s.operator_token();
    let r = register(&s, &op, json!({"manifest": crm("1.0.0")})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    for round in 0..5u32 {
        let base = 1 + round * 20;
        let attempts = (0..12u32).map(|i| {
            // Interleave high and low versions so that lower ones race higher ones.
            let minor = base + if i % 2 == 0 { 12 - i } else { i };
            let body = json!({"manifest": crm(&format!("1.{minor}.0"))});
            let (s, op) = (&s, &op);
            async move { (minor, register(s, op, body).await) }
        });
        let results = futures::future::join_all(attempts).await;
        let mut accepted = Vec::new();
        for (minor, r) in &results {
            match r.status.as_u16() {
                200 => accepted.push(*minor),
                409 => assert_eq!(r.code(), "version_not_newer", "{}", r.body),
                _ => panic!("1.{minor}.0: {} {}", r.status, r.body),
            }
        }
        let highest = accepted.iter().max().copied().expect("one upgrade wins");
        let r = s.get("/api/v1/plugins/crm", &op).await;
        assert_eq!(
            r.body["version"],
            format!("1.{highest}.0"),
            "round {round}: accepted {accepted:?}"
        );
    }
}

#[tokio::test]
async fn concurrent_conflicting_registrations_keep_the_registry_consistent() {
    let s = TestServer::start().await;
    let op = s.operator_token();
    let acme = s.tenant_admin("acme").await;
    for round in 0..4 {
        // The same new plugin registered many times at once: one creates, the rest see it.
        let id = format!("same{round}");
        let body = json!({"manifest": manifest(&id, "1.0.0", &[("a", "GET", "read")])});
        let results =
            futures::future::join_all((0..6).map(|_| register(&s, &op, body.clone()))).await;
        let statuses: Vec<u16> = results.iter().map(|r| r.status.as_u16()).collect();
        assert_eq!(
            statuses.iter().filter(|c| **c == 201).count(),
            1,
            "{statuses:?} {:?}",
            results.iter().map(|r| &r.body).collect::<Vec<_>>()
        );
        assert!(
            statuses.iter().all(|c| *c == 201 || *c == 200),
            "{statuses:?}"
        );

        // A global and a tenant-private plugin with one id: only one may exist.
        let id = format!("dup{round}");
        let global = json!({"manifest": manifest(&id, "1", &[("g", "GET", "read")])});
        let private = json!({"manifest": manifest(&id, "1", &[("p", "GET", "read")])});
        let (g, p) = tokio::join!(
            register(&s, &op, global),
            register(&s, &acme.admin, private)
        );
        let created = [&g, &p].iter().filter(|r| r.status == 201).count();
        assert_eq!(created, 1, "global: {} / private: {}", g.body, p.body);
        for r in [&g, &p] {
            if r.status != 201 {
                r.expect(409, "registry_conflict");
            }
        }
    }
    // The registry still compiles and accepts changes.
    let r = register(&s, &op, json!({"manifest": crm("1.0.0")})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let methods = list_methods(&s, &acme.admin, "q=dup").await;
    assert_eq!(methods.len(), 4, "{methods:?}");
}
