use super::*;
use crate::manifest::{HttpRoute, ManifestMethod, ManifestScopeSet};

const PLATFORM: &str = include_str!("../../../examples/plugins/platform.json");

const TENANT_A: Uuid = Uuid::from_u128(0xa);
const TENANT_B: Uuid = Uuid::from_u128(0xb);

fn method(id: &str, verb: &str, path: &str, access: Access) -> ManifestMethod {
    ManifestMethod {
        id: id.to_string(),
        http: HttpRoute::new(verb, path),
        access,
        description: format!("{id} description"),
        docs_url: None,
        cost: 1,
    }
}

fn manifest(id: &str, methods: Vec<ManifestMethod>) -> PluginManifest {
    PluginManifest {
        id: id.to_string(),
        name: id.to_uppercase(),
        version: "1.0".into(),
        description: None,
        docs_url: None,
        methods,
        scope_sets: Vec::new(),
    }
}

fn platform() -> PluginManifest {
    serde_json::from_str(PLATFORM).unwrap()
}

fn tokens() -> PluginManifest {
    let mut m = manifest(
        "tokens",
        vec![
            method("tokens.list", "GET", "/api/v1/tokens", Access::Read),
            method("tokens.create", "POST", "/api/v1/tokens", Access::Change),
            method(
                "tokens.get",
                "GET",
                "/api/v1/tokens/{token_id}",
                Access::Read,
            ),
            method(
                "tokens.current",
                "GET",
                "/api/v1/tokens/current",
                Access::Read,
            ),
            method(
                "tokens.revoke",
                "DELETE",
                "/api/v1/tokens/{token_id}",
                Access::Change,
            ),
            method(
                "tokens.rotate",
                "post",
                "/api/v1/tokens/{token_id}/rotate/",
                Access::Change,
            ),
        ],
    );
    m.scope_sets.push(ManifestScopeSet {
        id: "viewer".into(),
        name: "Token viewer".into(),
        description: "Read tokens".into(),
        methods: vec!["tokens.*".into()],
        access: Some(Access::Read),
    });
    m
}

fn private_a() -> PluginManifest {
    let mut m = manifest(
        "billing",
        vec![
            method(
                "billing.invoices.list",
                "GET",
                "/billing/invoices",
                Access::Read,
            ),
            method(
                "billing.invoices.pay",
                "POST",
                "/billing/invoices/{id}/pay",
                Access::Change,
            ),
        ],
    );
    m.scope_sets.push(ManifestScopeSet {
        id: "all".into(),
        name: "All billing".into(),
        description: String::new(),
        methods: vec!["billing.*".into()],
        access: None,
    });
    m
}

fn snapshot() -> Snapshot {
    Snapshot::build_with_version(
        vec![
            RegisteredPlugin::global(platform()),
            RegisteredPlugin::global(tokens()),
            RegisteredPlugin::private(TENANT_A, private_a()),
        ],
        7,
    )
    .unwrap()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn ids(s: &Snapshot, set: &MethodSet) -> Vec<String> {
    let mut v: Vec<String> = s.method_ids(set).map(str::to_string).collect();
    v.sort();
    v
}

#[test]
fn indexes_methods() {
    let s = snapshot();
    assert_eq!(s.version(), 7);
    assert_eq!(s.plugins().len(), 3);
    let total = platform().methods.len() + tokens().methods.len() + 2;
    assert_eq!(s.method_count(), total);

    let idx = s
        .lookup(None, "platform.environment.control.stopenv")
        .unwrap();
    let m = s.method(idx);
    assert_eq!(m.id, "platform.environment.control.stopenv");
    assert_eq!(m.plugin, "platform");
    assert_eq!(m.tenant, None);
    assert_eq!(m.http_method, "GET");
    assert_eq!(m.path, "/1.0/environment/control/rest/stopenv");
    assert_eq!(m.access, Access::Change);
    assert_eq!(
        m.docs_url.as_deref(),
        Some("https://docs.example.com/api/#environment.control.stopenv")
    );
    assert_eq!(s.get_method(idx), Some(m));
    assert_eq!(s.get_method(MethodIdx(total as u32)), None);

    let rotate = s.method(s.lookup(None, "tokens.rotate").unwrap());
    assert_eq!(rotate.http_method, "POST");
    assert!(s.lookup(None, "tokens.nope").is_none());
    assert!(s.plugin(None, "tokens").is_some());
    assert!(s.plugin(None, "billing").is_none());
    assert!(s.plugin(Some(TENANT_A), "billing").is_some());
    assert!(s.plugin(Some(TENANT_B), "billing").is_none());
}

#[test]
fn tenant_visibility() {
    let s = snapshot();
    let pay = s.lookup(Some(TENANT_A), "billing.invoices.pay").unwrap();
    assert_eq!(s.method(pay).tenant, Some(TENANT_A));
    assert!(s.lookup(None, "billing.invoices.pay").is_none());
    assert!(s.lookup(Some(TENANT_B), "billing.invoices.pay").is_none());
    assert!(s.lookup(Some(TENANT_B), "tokens.create").is_some());
    assert!(s.lookup(Some(TENANT_A), "tokens.create").is_some());

    assert!(s.is_visible(Some(TENANT_A), pay));
    assert!(!s.is_visible(Some(TENANT_B), pay));
    assert!(!s.is_visible(None, pay));

    let global_count = s.methods_visible(None).count();
    assert_eq!(s.methods_visible(Some(TENANT_B)).count(), global_count);
    assert_eq!(s.methods_visible(Some(TENANT_A)).count(), global_count + 2);
    assert!(s
        .methods_visible(Some(TENANT_B))
        .all(|(_, m)| m.tenant.is_none()));
    for (idx, m) in s.methods_visible(Some(TENANT_A)) {
        assert_eq!(s.method(idx), m);
    }

    assert_eq!(MethodSet::full(&s, Some(TENANT_A)).len(), global_count + 2);
    assert_eq!(MethodSet::full(&s, None).len(), global_count);

    assert!(s
        .route(Some(TENANT_A), "GET", "/billing/invoices")
        .is_some());
    assert!(s
        .route(Some(TENANT_B), "GET", "/billing/invoices")
        .is_none());
    assert!(s.route(None, "GET", "/billing/invoices").is_none());

    let err = s
        .resolve(Some(TENANT_B), &strings(&["billing.*"]), None)
        .unwrap_err();
    assert_eq!(err, strings(&["billing.*"]));
    let ok = s
        .resolve(Some(TENANT_A), &strings(&["billing.*"]), None)
        .unwrap();
    assert_eq!(ok.len(), 2);
}

#[test]
fn resolve_exact_and_globs() {
    let s = snapshot();
    let set = s
        .resolve(
            None,
            &strings(&[
                "tokens.create",
                "platform.marketplace.*",
                "*.plugin.getenvs",
            ]),
            None,
        )
        .unwrap();
    assert_eq!(
        ids(&s, &set),
        strings(&[
            "platform.ide.plugin.getenvs",
            "platform.marketplace.app.getappinfo",
            "platform.marketplace.app.getlist",
            "platform.marketplace.app.install",
            "platform.maven.plugin.getenvs",
            "tokens.create",
        ])
    );

    let env = s
        .resolve(None, &strings(&["platform.environment.*"]), None)
        .unwrap();
    assert!(env.len() > 5);
    assert!(s
        .method_ids(&env)
        .all(|id| id.starts_with("platform.environment.")));

    let all = s.resolve(None, &strings(&["*"]), None).unwrap();
    assert_eq!(all, MethodSet::full(&s, None));
    let all_a = s.resolve(Some(TENANT_A), &strings(&["*"]), None).unwrap();
    assert_eq!(all_a, MethodSet::full(&s, Some(TENANT_A)));

    assert!(s.resolve(None, &[], None).unwrap().is_empty());
}

#[test]
fn resolve_read_filter() {
    let s = snapshot();
    let set = s
        .resolve(
            None,
            &strings(&["platform.environment.control.*", "tokens.create"]),
            Some(Access::Read),
        )
        .unwrap();
    assert_eq!(
        ids(&s, &set),
        strings(&[
            "platform.environment.control.getenvinfo",
            "platform.environment.control.getenvs",
        ])
    );
    let change = s
        .resolve(
            None,
            &strings(&["platform.environment.control.*"]),
            Some(Access::Change),
        )
        .unwrap();
    let unrestricted = s
        .resolve(None, &strings(&["platform.environment.control.*"]), None)
        .unwrap();
    assert_eq!(change, unrestricted);
    assert!(set.is_subset(&change));

    let all_read = s
        .resolve(None, &strings(&["*"]), Some(Access::Read))
        .unwrap();
    assert_eq!(all_read, s.read_only(None).methods);
    assert!(s
        .method_ids(&all_read)
        .all(|id| s.method(s.lookup(None, id).unwrap()).access == Access::Read));
}

#[test]
fn unknown_entries_are_reported() {
    let s = snapshot();
    let err = s
        .resolve(
            None,
            &strings(&[
                "tokens.create",
                "tokens.nope",
                "nothing.*",
                "platform.environment.*",
                "bad.[glob",
                "",
            ]),
            None,
        )
        .unwrap_err();
    assert_eq!(err, strings(&["tokens.nope", "nothing.*", "bad.[glob", ""]));

    let lenient = s.resolve_lenient(
        None,
        &strings(&["tokens.create", "tokens.nope", "nothing.*"]),
        None,
    );
    assert_eq!(ids(&s, &lenient), strings(&["tokens.create"]));
}

#[test]
fn predefined_sets() {
    let s = snapshot();
    let ext = s.predefined_set(None, "platform.extended-access").unwrap();
    assert_eq!(ext.name, "Extended Access");
    assert_eq!(ext.plugin.as_deref(), Some("platform"));
    assert_eq!(ext.tenant, None);
    assert!(ext.entries.contains(&"platform.environment.*".to_string()));
    let stop = s
        .lookup(None, "platform.environment.control.stopenv")
        .unwrap();
    let install = s.lookup(None, "platform.marketplace.app.install").unwrap();
    let ide_deploy = s.lookup(None, "platform.ide.plugin.deploy").unwrap();
    assert!(ext.methods.contains(stop));
    assert!(ext.methods.contains(install));
    assert!(!ext.methods.contains(ide_deploy));

    let viewer = s.predefined_set(None, "tokens.viewer").unwrap();
    assert_eq!(
        ids(&s, &viewer.methods),
        strings(&["tokens.current", "tokens.get", "tokens.list"])
    );

    for id in [
        "platform.ide-plugins",
        "platform.marketplace",
        "platform.maven-plugin",
    ] {
        let set = s.predefined_set(Some(TENANT_B), id).unwrap();
        assert!(!set.methods.is_empty(), "{id}");
    }
    assert!(s.predefined_set(None, "extended-access").is_none());
    assert!(s.predefined_set(None, "billing.all").is_none());
    assert!(s.predefined_set(Some(TENANT_B), "billing.all").is_none());
    let billing = s.predefined_set(Some(TENANT_A), "billing.all").unwrap();
    assert_eq!(billing.tenant, Some(TENANT_A));
    assert_eq!(billing.methods.len(), 2);

    let global_ids: Vec<&str> = s.predefined_sets(None).map(|p| p.id.as_str()).collect();
    assert_eq!(
        global_ids,
        vec![
            "read-only",
            "read-change",
            "platform.extended-access",
            "platform.ide-plugins",
            "platform.marketplace",
            "platform.maven-plugin",
            "tokens.viewer",
        ]
    );
    assert_eq!(s.predefined_sets(Some(TENANT_A)).count(), 8);
    assert_eq!(s.predefined_sets(Some(TENANT_B)).count(), 7);
}

#[test]
fn built_in_sets_follow_visibility() {
    let s = snapshot();
    let pay = s.lookup(Some(TENANT_A), "billing.invoices.pay").unwrap();
    let list = s.lookup(Some(TENANT_A), "billing.invoices.list").unwrap();

    let rc_a = s.predefined_set(Some(TENANT_A), READ_CHANGE_SET).unwrap();
    assert_eq!(rc_a.tenant, Some(TENANT_A));
    assert!(rc_a.methods.contains(pay));
    assert_eq!(rc_a.methods, MethodSet::full(&s, Some(TENANT_A)));
    let ro_a = s.predefined_set(Some(TENANT_A), READ_ONLY_SET).unwrap();
    assert!(ro_a.methods.contains(list));
    assert!(!ro_a.methods.contains(pay));
    assert!(ro_a.methods.is_subset(&rc_a.methods));
    assert_eq!(ro_a, s.read_only(Some(TENANT_A)));

    let rc_b = s.read_change(Some(TENANT_B));
    assert!(!rc_b.methods.contains(pay));
    assert!(!s.read_only(Some(TENANT_B)).methods.contains(list));
    assert_eq!(rc_b.methods, s.read_change(None).methods);
    assert!(s
        .method_ids(&s.read_only(None).methods)
        .any(|id| id == "platform.environment.control.getenvinfo"));
    assert!(!s
        .method_ids(&s.read_only(None).methods)
        .any(|id| id == "platform.environment.control.stopenv"));
}

#[test]
fn routes() {
    let s = snapshot();
    let id = |i: Option<MethodIdx>| i.map(|i| s.method(i).id.clone());
    assert_eq!(
        id(s.route(
            None,
            "GET",
            "/1.0/environment/control/rest/stopenv?envName=x"
        )),
        Some("platform.environment.control.stopenv".into())
    );
    assert_eq!(
        id(s.route(None, "HEAD", "/1.0/environment/control/rest/getenvinfo")),
        Some("platform.environment.control.getenvinfo".into())
    );
    assert_eq!(
        id(s.route(None, "GET", "/api/v1/tokens/abc/")),
        Some("tokens.get".into())
    );
    assert_eq!(
        id(s.route(None, "GET", "/api/v1/tokens/current")),
        Some("tokens.current".into())
    );
    assert_eq!(
        id(s.route(None, "DELETE", "/api/v1/tokens/current")),
        Some("tokens.revoke".into())
    );
    assert_eq!(
        id(s.route(None, "post", "/api/v1/tokens/abc/rotate")),
        Some("tokens.rotate".into())
    );
    assert_eq!(
        id(s.route(None, "POST", "/api/v1/tokens")),
        Some("tokens.create".into())
    );
    assert_eq!(s.route(None, "PUT", "/api/v1/tokens"), None);
    assert_eq!(s.route(None, "GET", "/api/v1/tokens/a/b"), None);
    assert_eq!(
        id(s.route(Some(TENANT_A), "POST", "/billing/invoices/42/pay")),
        Some("billing.invoices.pay".into())
    );
}

#[test]
fn tenant_may_not_redefine_global_methods() {
    let clash = manifest(
        "mine",
        vec![
            method("tokens.create", "POST", "/mine/tokens", Access::Change),
            method("mine.ok", "GET", "/mine/ok", Access::Read),
        ],
    );
    let errors = Snapshot::build(vec![
        RegisteredPlugin::global(tokens()),
        RegisteredPlugin::private(TENANT_A, clash),
    ])
    .unwrap_err();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(
        errors[0],
        format!("plugin 'mine' of tenant {TENANT_A}: namespace 'tokens' belongs to plugin 'tokens' (global)")
    );
    assert!(errors[1].contains("method 'tokens.create'"), "{errors:?}");
    assert!(errors[1].contains(&TENANT_A.to_string()), "{errors:?}");
    assert!(errors[1].contains("plugin 'tokens' (global)"), "{errors:?}");
}

#[test]
fn namespaces_belong_to_one_plugin_per_view() {
    // Before namespaces, 'platform' could define 'users.account.getbalance' next to the
    // built-in 'users.*' methods, and a token with 'users.*' gained it.
    let builtin = manifest(
        "sigil",
        vec![
            method("users.list", "GET", "/api/v1/users", Access::Read),
            method(
                "sigil.introspect",
                "POST",
                "/api/v1/introspect",
                Access::Read,
            ),
        ],
    );
    let old_style = manifest(
        "platform",
        vec![method(
            "users.account.getbalance",
            "GET",
            "/1.0/users/account/rest/getbalance",
            Access::Read,
        )],
    );
    let errors = Snapshot::build(vec![
        RegisteredPlugin::global(builtin.clone()),
        RegisteredPlugin::global(old_style),
    ])
    .unwrap_err();
    assert_eq!(
        errors,
        vec!["plugin 'platform' (global): namespace 'users' belongs to plugin 'sigil' (global)"]
    );

    // A plugin whose id is a namespace of another plugin, globally or in one tenant.
    let users = manifest(
        "users",
        vec![method("users.account.x", "GET", "/x", Access::Read)],
    );
    let errors = Snapshot::build(vec![
        RegisteredPlugin::global(builtin.clone()),
        RegisteredPlugin::private(TENANT_A, users.clone()),
    ])
    .unwrap_err();
    assert_eq!(
        errors,
        vec![format!(
            "plugin 'users' of tenant {TENANT_A}: namespace 'users' belongs to plugin 'sigil' (global)"
        )]
    );

    // Prefixed ids live side by side; a literal first segment stays in its plugin and a
    // leading wildcard spans plugins.
    let s = Snapshot::build(vec![
        RegisteredPlugin::global(builtin),
        RegisteredPlugin::global(platform()),
        RegisteredPlugin::private(TENANT_A, private_a()),
    ])
    .unwrap();
    let users = s
        .resolve(Some(TENANT_A), &strings(&["users.*"]), None)
        .unwrap();
    assert_eq!(ids(&s, &users), strings(&["users.list"]));
    let theirs = s
        .resolve(Some(TENANT_A), &strings(&["platform.users.*"]), None)
        .unwrap();
    assert_eq!(
        ids(&s, &theirs),
        strings(&[
            "platform.users.account.getbalance",
            "platform.users.account.getuserinfo"
        ])
    );
    let spanning = s
        .resolve(Some(TENANT_A), &strings(&["*.list"]), None)
        .unwrap();
    assert_eq!(
        ids(&s, &spanning),
        strings(&["billing.invoices.list", "users.list"])
    );
}

#[test]
fn tenants_may_share_private_ids() {
    let s = Snapshot::build(vec![
        RegisteredPlugin::private(TENANT_A, private_a()),
        RegisteredPlugin::private(TENANT_B, private_a()),
    ])
    .unwrap();
    let a = s.lookup(Some(TENANT_A), "billing.invoices.pay").unwrap();
    let b = s.lookup(Some(TENANT_B), "billing.invoices.pay").unwrap();
    assert_ne!(a, b);
    assert_eq!(s.method(a).tenant, Some(TENANT_A));
    assert_eq!(s.method(b).tenant, Some(TENANT_B));
    assert_eq!(
        s.route(Some(TENANT_B), "GET", "/billing/invoices"),
        Some(MethodIdx(2))
    );
    assert_eq!(s.methods_visible(None).count(), 0);
}

#[test]
fn conflicts_between_global_plugins_and_duplicate_plugins() {
    let a = manifest(
        "a",
        vec![method("shared.m", "GET", "/a/{id}", Access::Read)],
    );
    let b = manifest(
        "b",
        vec![
            method("shared.m", "GET", "/b", Access::Read),
            method("b.route", "GET", "/a/{other}", Access::Read),
        ],
    );
    let errors = Snapshot::build(vec![
        RegisteredPlugin::global(a.clone()),
        RegisteredPlugin::global(b),
        RegisteredPlugin::global(a.clone()),
        RegisteredPlugin::private(TENANT_A, a.clone()),
        RegisteredPlugin::private(TENANT_B, private_a()),
        RegisteredPlugin::private(TENANT_B, private_a()),
    ])
    .unwrap_err();
    let has = |needle: &str| errors.iter().any(|e| e.contains(needle));
    assert!(
        has("plugin 'a' (global): registered more than once"),
        "{errors:?}"
    );
    assert!(
        has(&format!(
            "plugin 'a' of tenant {TENANT_A}: id is already used"
        )),
        "{errors:?}"
    );
    assert!(
        has(&format!(
            "plugin 'billing' of tenant {TENANT_B}: registered more than once"
        )),
        "{errors:?}"
    );
    assert!(
        has("method 'shared.m' of plugin 'b' (global): id conflicts with method 'shared.m' of plugin 'a' (global)"),
        "{errors:?}"
    );
    assert!(
        has("method 'b.route' of plugin 'b' (global): route GET /a/{} conflicts"),
        "{errors:?}"
    );
    assert!(
        has("plugin 'b' (global): namespace 'shared' belongs to plugin 'a' (global)"),
        "{errors:?}"
    );
    assert_eq!(errors.len(), 6, "{errors:?}");
}

#[test]
fn invalid_manifests_are_reported_with_their_plugin() {
    let mut bad = tokens();
    bad.version = String::new();
    let errors = Snapshot::build(vec![
        RegisteredPlugin::global(platform()),
        RegisteredPlugin::private(TENANT_A, bad),
    ])
    .unwrap_err();
    assert_eq!(
        errors,
        vec![format!(
            "plugin 'tokens' of tenant {TENANT_A}: plugin version must not be empty"
        )]
    );
}

#[test]
fn empty_snapshot() {
    let s = Snapshot::empty();
    assert_eq!(s.version(), 0);
    assert_eq!(s.method_count(), 0);
    assert!(s.route(None, "GET", "/").is_none());
    assert!(s.read_change(None).methods.is_empty());
    assert_eq!(s.predefined_sets(Some(TENANT_A)).count(), 2);
    assert_eq!(
        s.resolve(None, &strings(&["*"]), None).unwrap_err(),
        strings(&["*"])
    );
}

#[test]
fn snapshot_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Snapshot>();
    check::<crate::Registry>();
}
