//! Issue 15, item 4: plugin namespaces. An external plugin's method ids start with its own
//! id, no plugin takes a namespace of the built-in plugin, so a glob whose first segment is
//! literal (`users.*`) stays inside one plugin; and registering or updating a plugin says
//! which tokens and scope sets it widens, in its answer and in the audit log.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::harness::{Resp, Tenant, TestServer};

const PLATFORM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/plugins/platform.json"
);
/// The platform example as it was before namespaces (method ids without `platform.`).
const PLATFORM_BEFORE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../migrations/tests/fixtures/platform-8.3.0-before-namespaces.json"
);

fn read_json(path: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A manifest for plugin `id` with methods `(id, verb, access)` (full ids) and sets
/// `(set id, entries)`.
fn manifest(
    id: &str,
    version: &str,
    methods: &[(&str, &str, &str)],
    sets: &[(&str, &[&str])],
) -> Value {
    json!({
        "id": id,
        "name": format!("{id} plugin"),
        "version": version,
        "methods": methods.iter().map(|(m, verb, access)| json!({
            "id": m,
            "http": {"method": verb, "path": format!("/{}", m.replace('.', "/"))},
            "access": access,
        })).collect::<Vec<_>>(),
        "scope_sets": sets.iter().map(|(s, entries)| json!({
            "id": s, "name": format!("{s} set"), "methods": entries,
        })).collect::<Vec<_>>(),
    })
}

async fn register(s: &TestServer, token: &str, manifest: Value) -> Resp {
    s.post("/api/v1/plugins", token, json!({"manifest": manifest}))
        .await
}

/// GET /api/v1/authorize as nginx's auth_request sends it.
async fn authorize(s: &TestServer, secret: &str, verb: &str, uri: &str) -> Resp {
    let r = s
        .client
        .get(s.url("/api/v1/authorize"))
        .header("X-Original-Method", verb)
        .header("X-Original-URI", uri)
        .bearer_auth(secret)
        .send()
        .await
        .unwrap();
    Resp::from(r).await
}

/// The scope introspection reports for a token allowed to call `method`.
async fn scope(s: &TestServer, caller: &str, secret: &str, method: &str) -> BTreeSet<String> {
    let r = s
        .post(
            "/api/v1/introspect",
            caller,
            json!({"token": secret, "method": method}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["active"], true, "{}", r.body);
    r.body["scope"]
        .as_str()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// The widened items of a registration answer (or audit event) as (kind, id) → added.
fn widened(body: &Value) -> Vec<(String, String, Vec<String>)> {
    let mut out: Vec<(String, String, Vec<String>)> = body["widened"]
        .as_array()
        .unwrap_or_else(|| panic!("no widened list: {body}"))
        .iter()
        .map(|w| {
            (
                w["kind"].as_str().unwrap().to_owned(),
                w["id"].as_str().unwrap().to_owned(),
                w["added_methods"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m.as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect();
    out.sort();
    out
}

fn item<'a>(body: &'a Value, id: &str) -> &'a Value {
    body["widened"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == id)
        .unwrap_or_else(|| panic!("{id} not in {body}"))
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// Audit events with `action` about `target`, as `caller` sees them.
async fn audit(s: &TestServer, caller: &str, action: &str, target: &str) -> Vec<Value> {
    let r = s
        .get(
            &format!("/api/v1/audit-events?action={action}&target_id={target}&limit=50"),
            caller,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn users_glob_stays_inside_sigil_when_the_platform_plugin_arrives() {
    // The issue: a token meant for Sigil's own user methods, then the platform plugin.
    let s = TestServer::start().await;
    let op = s.operator_token();
    let t = s.tenant_admin("acme").await;
    let (tok, secret) = s
        .mint(
            &t.admin,
            json!({"methods": ["tokens.list", "tokens.get", "users.*"]}),
        )
        .await;
    let before = scope(&s, &t.admin, &secret, "tokens.list").await;
    assert!(before.contains("users.list") && before.contains("users.create"));

    let r = register(&s, &op, read_json(PLATFORM)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    // The token is not widened, so it is not listed; the built-in sets are.
    assert!(
        !r.body["widened"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["id"] == tok["id"]),
        "{}",
        r.body
    );
    assert_eq!(item(&r.body, "read-change")["kind"], "scope_set");
    assert_eq!(
        item(&r.body, "read-change")["added_methods"]
            .as_array()
            .unwrap()
            .len(),
        21
    );

    // The token still has exactly Sigil's methods.
    assert_eq!(scope(&s, &t.admin, &secret, "tokens.list").await, before);
    assert!(!before.iter().any(|m| m.starts_with("platform.")));
    // Forward auth refuses the platform's account methods for it...
    authorize(&s, &secret, "GET", "/1.0/users/account/rest/getbalance")
        .await
        .expect(403, "method_not_in_scope");
    authorize(&s, &secret, "GET", "/1.0/users/account/rest/getuserinfo")
        .await
        .expect(403, "method_not_in_scope");
    // ...and allows them to a token that names the platform's namespace, or spans
    // plugins on purpose with a leading wildcard.
    let (_, theirs) = s
        .mint(&t.admin, json!({"methods": ["platform.users.*"]}))
        .await;
    let r = authorize(&s, &theirs, "GET", "/1.0/users/account/rest/getbalance").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["method"], "platform.users.account.getbalance");
    let (_, spanning) = s.mint(&t.admin, json!({"methods": ["*.getbalance"]})).await;
    assert_eq!(
        authorize(&s, &spanning, "GET", "/1.0/users/account/rest/getbalance")
            .await
            .status,
        200
    );
    // The platform's own sets use its namespace.
    let r = s
        .get("/api/v1/scope-sets/platform.extended-access", &t.admin)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let methods: Vec<String> = serde_json::from_value(r.body["methods"].clone()).unwrap();
    assert!(
        methods.iter().all(|m| m.starts_with("platform.")),
        "{methods:?}"
    );
    assert!(methods.contains(&"platform.users.account.getbalance".to_owned()));
    assert!(!methods.contains(&"platform.users.account.getuserinfo".to_owned()));
}

#[tokio::test]
async fn builtin_namespaces_are_not_plugin_ids() {
    let s = TestServer::start().await;
    let op = s.operator_token();
    let t = s.tenant_admin("acme").await;
    for id in ["users", "tokens", "signing_keys", "me", "scope_sets"] {
        let m = manifest(id, "1", &[(&format!("{id}.account.x"), "GET", "read")], &[]);
        for caller in [&op, &t.admin] {
            let r = register(&s, caller, m.clone()).await;
            r.expect(409, "reserved_plugin_id");
            assert!(
                r.body["detail"].as_str().unwrap().contains(id),
                "{}",
                r.body
            );
        }
    }
    // The built-in id itself, as before.
    register(
        &s,
        &op,
        manifest("sigil", "2", &[("sigil.x", "GET", "read")], &[]),
    )
    .await
    .expect(409, "reserved_plugin");
    // The same from an OpenAPI document.
    let doc = json!({"openapi": "3.0.0", "info": {"title": "U", "version": "1"},
        "paths": {"/x": {"get": {"operationId": "getBalance"}}}});
    s.post(
        "/api/v1/plugins",
        &op,
        json!({"openapi": doc, "id": "users"}),
    )
    .await
    .expect(409, "reserved_plugin_id");
    let r = s
        .post(
            "/api/v1/plugins",
            &op,
            json!({"openapi": doc, "id": "wallet"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["plugin"]["methods"][0]["id"], "wallet.get_balance");
    // Nothing else was stored.
    let r = s.get("/api/v1/plugins", &op).await;
    let ids: Vec<&str> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["sigil", "wallet"]);
}

#[tokio::test]
async fn builtin_namespaces_match_the_migrated_ones() {
    // m0007_plugin_namespaces renamed stored plugins whose id was one of these. A new
    // built-in namespace may be a stored plugin's id already: it needs a migration of its
    // own (and this list an update).
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let r = s.get("/api/v1/plugins/sigil", &t.admin).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let spaces: BTreeSet<String> = r.body["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["id"]
                .as_str()
                .unwrap()
                .split('.')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    let migrated: BTreeSet<String> = [
        "audit",
        "auth",
        "jwks",
        "me",
        "methods",
        "plugins",
        "scope_sets",
        "service",
        "sigil",
        "signing_keys",
        "tenant",
        "tenants",
        "tokens",
        "users",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(spaces, migrated);
}

#[tokio::test]
async fn method_ids_must_be_in_the_plugin_namespace() {
    let s = TestServer::start().await;
    let op = s.operator_token();
    let t = s.tenant_admin("acme").await;
    // The example as it was: every method is outside the namespace.
    let r = register(&s, &op, read_json(PLATFORM_BEFORE)).await;
    r.expect(422, "method_outside_namespace");
    let errors = r.errors();
    assert_eq!(errors.len(), 21, "{errors:?}");
    assert!(errors
        .iter()
        .any(|e| e.contains("method 'users.account.getbalance': id must start with 'platform.'")));
    // A look-alike prefix and the bare id are outside too, for a tenant plugin as well.
    let m = manifest(
        "crm",
        "1",
        &[
            ("crm.contacts.list", "GET", "read"),
            ("crmx.contacts.list", "GET", "read"),
            ("crm", "POST", "change"),
        ],
        &[],
    );
    let r = register(&s, &t.admin, m).await;
    r.expect(422, "method_outside_namespace");
    let errors = r.errors();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].contains("'crmx.contacts.list'") && errors[1].contains("'crm'"));

    // A tenant plugin may not take a global plugin's id, nor the other way round.
    let global = manifest("shared", "1", &[("shared.a", "GET", "read")], &[]);
    assert_eq!(register(&s, &op, global).await.status, 201);
    let private = manifest("shared", "1", &[("shared.b", "GET", "read")], &[]);
    let r = register(&s, &t.admin, private).await;
    r.expect(409, "registry_conflict");
    let private = manifest("mine", "1", &[("mine.b", "GET", "read")], &[]);
    assert_eq!(register(&s, &t.admin, private).await.status, 201);
    let global = manifest("mine", "1", &[("mine.a", "GET", "read")], &[]);
    register(&s, &op, global)
        .await
        .expect(409, "registry_conflict");

    // A `--plugin` file with ids outside its namespace stops the start, naming the file.
    let dir = crate::harness::tempdir::TempDir::new();
    let url = crate::harness::fresh_database(&dir.0).await;
    let mut config = crate::harness::test_config(&dir.0, &url);
    config.plugins = vec![PLATFORM_BEFORE.into()];
    let err = match sigil_server::prepare(config).await {
        Ok(_) => panic!("a plugin file outside its namespace was accepted"),
        Err(e) => e,
    };
    let text = format!("{err:?}");
    assert!(text.contains("namespace"), "{text}");
    assert!(
        text.contains("platform-8.3.0-before-namespaces.json"),
        "{text}"
    );
}

#[tokio::test]
async fn registration_lists_what_it_widens_and_audits_it() {
    let s = TestServer::start().await;
    let op = s.operator_token();
    let acme = s.tenant_admin("acme").await;
    let globex = s.tenant_admin("globex").await;
    let v1 = manifest(
        "crm",
        "1.0.0",
        &[
            ("crm.contacts.list", "GET", "read"),
            ("crm.contacts.create", "POST", "change"),
        ],
        &[("contacts", &["crm.contacts.*"])],
    );
    let r = register(&s, &op, v1).await;
    assert_eq!(r.status, 201, "{}", r.body);

    // acme: a custom set, a glob token, an exact token and a token using the plugin's set.
    let r = s
        .post(
            "/api/v1/scope-sets",
            &acme.admin,
            json!({"id": "sales", "name": "Sales", "methods": ["crm.contacts.*", "tokens.list"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = s
        .post(
            "/api/v1/scope-sets",
            &acme.admin,
            json!({"id": "sales-read", "name": "Sales (read)", "methods": ["crm.*"], "access": "read"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let (glob, glob_secret) = s
        .mint(
            &acme.admin,
            json!({"name": "glob", "methods": ["crm.contacts.*"]}),
        )
        .await;
    let (exact, _) = s
        .mint(
            &acme.admin,
            json!({"name": "exact", "methods": ["crm.contacts.list"]}),
        )
        .await;
    s.mint(
        &acme.admin,
        json!({"name": "by set", "scope_set": "crm.contacts"}),
    )
    .await;
    // globex: a glob token, and a set that a crm change does not touch.
    let (globex_token, _) = s
        .mint(
            &globex.admin,
            json!({"name": "all crm", "methods": ["crm.*"]}),
        )
        .await;
    let r = s
        .post(
            "/api/v1/scope-sets",
            &globex.admin,
            json!({"id": "ops", "name": "Ops", "methods": ["tokens.list"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);

    // The operator updates crm: one new change method under contacts, one new read method.
    let v2 = manifest(
        "crm",
        "1.1.0",
        &[
            ("crm.contacts.list", "GET", "read"),
            ("crm.contacts.create", "POST", "change"),
            ("crm.contacts.merge", "POST", "change"),
            ("crm.deals.list", "GET", "read"),
        ],
        &[("contacts", &["crm.contacts.*"])],
    );
    let r = register(&s, &op, v2.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let merge = || strs(&["crm.contacts.merge"]);
    let glob_id = glob["id"].as_str().unwrap().to_owned();
    let globex_id = globex_token["id"].as_str().unwrap().to_owned();
    let mut want: Vec<(String, String, Vec<String>)> = vec![
        ("scope_set".into(), "crm.contacts".into(), merge()),
        (
            "scope_set".into(),
            "read-change".into(),
            strs(&["crm.contacts.merge", "crm.deals.list"]),
        ),
        (
            "scope_set".into(),
            "read-only".into(),
            strs(&["crm.deals.list"]),
        ),
        ("scope_set".into(), "sales".into(), merge()),
        (
            "scope_set".into(),
            "sales-read".into(),
            strs(&["crm.deals.list"]),
        ),
        ("token".into(), glob_id.clone(), merge()),
        (
            "token".into(),
            globex_id.clone(),
            strs(&["crm.contacts.merge", "crm.deals.list"]),
        ),
    ];
    want.sort();
    assert_eq!(widened(&r.body), want);
    assert_eq!(r.body["widened_total"], 7);
    assert!(!r.body.to_string().contains(exact["id"].as_str().unwrap()));
    assert_eq!(item(&r.body, "crm.contacts")["tokens_using"], 1);
    assert_eq!(item(&r.body, "crm.contacts")["tenant_id"], Value::Null);
    assert_eq!(item(&r.body, "sales")["tenant_id"], acme.id.as_str());
    assert_eq!(item(&r.body, "sales")["tokens_using"], 0);
    assert_eq!(item(&r.body, &glob_id)["name"], "glob");
    assert_eq!(item(&r.body, &glob_id)["tokens_using"], Value::Null);
    let mut tenants: Vec<(String, u64, u64)> = r.body["widened_tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["tenant_id"].as_str().unwrap().to_owned(),
                t["scope_sets"].as_u64().unwrap(),
                t["tokens"].as_u64().unwrap(),
            )
        })
        .collect();
    tenants.sort();
    let mut want = vec![(acme.id.clone(), 2, 2), (globex.id.clone(), 0, 1)];
    want.sort();
    assert_eq!(tenants, want);
    // The widening is what verification now does.
    assert!(scope(&s, &acme.admin, &glob_secret, "crm.contacts.merge")
        .await
        .contains("crm.contacts.merge"));

    // The audit log: the operator's event has everything, each tenant's only its own.
    let events = audit(&s, &op, "plugin.update", "crm").await;
    let main = events
        .iter()
        .find(|e| e["tenant_id"].is_null())
        .expect("operator event");
    assert_eq!(main["after"]["version"], "1.1.0");
    assert_eq!(main["after"]["widened_total"], 7);
    assert_eq!(widened(&main["after"]), widened(&r.body));
    assert_eq!(
        main["after"]["widened_tenants"].as_array().unwrap().len(),
        2
    );
    let mine = audit(&s, &acme.admin, "plugin.update", "crm").await;
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(mine[0]["actor"], "operator");
    let ids: Vec<String> = widened(&mine[0]["after"])
        .into_iter()
        .map(|(_, id, _)| id)
        .collect();
    assert_eq!(
        ids,
        strs(&["crm.contacts", "sales", "sales-read", &glob_id])
    );
    assert_eq!(mine[0]["after"]["widened"][0]["tokens_using"], 1);
    assert!(!mine[0]["after"].to_string().contains(&globex_id));
    let theirs = audit(&s, &globex.admin, "plugin.update", "crm").await;
    assert_eq!(theirs.len(), 1, "{theirs:?}");
    let ids: Vec<String> = widened(&theirs[0]["after"])
        .into_iter()
        .map(|(_, id, _)| id)
        .collect();
    assert_eq!(ids, vec![globex_id.clone()]);

    // The same manifest again changes and widens nothing.
    let r = register(&s, &op, v2).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["widened"], json!([]));
    assert_eq!(r.body["widened_total"], 0);

    // A tenant admin's private plugin: only the tenant's tokens and sets, never another
    // tenant's.
    let b1 = manifest(
        "billing",
        "1",
        &[("billing.invoices.list", "GET", "read")],
        &[],
    );
    assert_eq!(register(&s, &acme.admin, b1).await.status, 201);
    let (billing, _) = s
        .mint(
            &acme.admin,
            json!({"name": "billing", "methods": ["billing.*"]}),
        )
        .await;
    let b2 = manifest(
        "billing",
        "2",
        &[
            ("billing.invoices.list", "GET", "read"),
            ("billing.invoices.pay", "POST", "change"),
        ],
        &[],
    );
    let r = register(&s, &acme.admin, b2).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let billing_id = billing["id"].as_str().unwrap().to_owned();
    assert_eq!(
        widened(&r.body),
        vec![
            (
                "scope_set".into(),
                "read-change".into(),
                strs(&["billing.invoices.pay"])
            ),
            ("token".into(), billing_id, strs(&["billing.invoices.pay"])),
        ]
    );
    assert_eq!(item(&r.body, "read-change")["tenant_id"], acme.id.as_str());
    assert_eq!(
        r.body["widened_tenants"],
        json!([{"tenant_id": acme.id, "scope_sets": 0, "tokens": 1}])
    );
    let events = audit(&s, &acme.admin, "plugin.update", "billing").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["after"]["widened_total"], 2);
    assert!(audit(&s, &globex.admin, "plugin.update", "billing")
        .await
        .is_empty());
}

#[tokio::test]
async fn a_changed_plugin_file_is_audited_with_what_it_widens() {
    let dir = crate::harness::tempdir::TempDir::new();
    let file = dir.0.join("crm.json");
    let v1 = manifest("crm", "1", &[("crm.contacts.list", "GET", "read")], &[]);
    std::fs::write(&file, v1.to_string()).unwrap();
    let path = file.clone();
    let mut first = TestServer::start_with(|c| c.plugins = vec![path]).await;
    let t: Tenant = first.tenant_admin("acme").await;
    let (glob, _) = first
        .mint(&t.admin, json!({"name": "glob", "methods": ["crm.*"]}))
        .await;
    let master = first.state().config.master_key.clone();
    let url = first.database_url.clone();
    first.stop().await;

    // The next start reads a newer file.
    let v2 = manifest(
        "crm",
        "2",
        &[
            ("crm.contacts.list", "GET", "read"),
            ("crm.contacts.delete", "DELETE", "change"),
        ],
        &[],
    );
    std::fs::write(&file, v2.to_string()).unwrap();
    let dir2 = crate::harness::tempdir::TempDir::new();
    let mut config = crate::harness::test_config(&dir2.0, &url);
    config.master_key = master;
    config.plugins = vec![file.clone()];
    let prepared = sigil_server::prepare(config).await.expect("prepares");
    let running = sigil_server::spawn(prepared).await.expect("starts");
    let s = TestServer {
        base: format!("http://{}", running.addr),
        client: reqwest::Client::new(),
        running: Some(running),
        database_url: url,
        _dir: dir2,
    };
    let glob_id = glob["id"].as_str().unwrap().to_owned();
    let events = audit(&s, &s.operator_token(), "plugin.update", "crm").await;
    let main = events
        .iter()
        .find(|e| e["tenant_id"].is_null())
        .expect("operator event");
    assert_eq!(main["actor"], "operator");
    assert_eq!(main["after"]["source"], "file");
    assert_eq!(main["after"]["version"], "2");
    let ids: Vec<String> = widened(&main["after"])
        .into_iter()
        .map(|(_, id, _)| id)
        .collect();
    assert_eq!(ids, strs(&["read-change", &glob_id]));
    let mine = audit(&s, &t.admin, "plugin.update", "crm").await;
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(
        widened(&mine[0]["after"]),
        vec![("token".to_owned(), glob_id, strs(&["crm.contacts.delete"]))]
    );
}
