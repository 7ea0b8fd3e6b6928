//! m0007_plugin_namespaces on a real database: migrate up to the step before, seed rows
//! shaped as the server stored them before namespaces, run the step, check every rewrite,
//! and check that the result compiles under the namespace rule. SQLite by default,
//! PostgreSQL when SIGIL_TEST_DATABASE_URL is set.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::prelude::Uuid;
use sea_orm_migration::sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use serde_json::{json, Value};
use sigil_migrations::Migrator;
use sigil_scope_registry::{
    Access, HttpRoute, ManifestMethod, PluginManifest, RegisteredPlugin, Snapshot,
};

const PLATFORM_BEFORE: &str = include_str!("fixtures/platform-8.3.0-before-namespaces.json");

const TENANT_A: Uuid = Uuid::from_u128(0xa);
const TENANT_B: Uuid = Uuid::from_u128(0xb);

#[derive(Iden)]
enum Plugins {
    Table,
    Uid,
    PluginId,
    TenantId,
    Name,
    Version,
    Manifest,
    CreatedAt,
    UpdatedAt,
}

#[derive(Iden)]
enum ScopeSets {
    Table,
    Id,
    TenantId,
    Slug,
    Name,
    Description,
    Entries,
    Access,
    CreatedAt,
    UpdatedAt,
}

#[derive(Iden)]
enum Tokens {
    Table,
    Id,
    TenantId,
    OwnerId,
    Kind,
    Name,
    Description,
    ScopeSet,
    ScopeMethods,
    IpFilter,
    Enabled,
    Generation,
    SecretHash,
    CreatedAt,
    UpdatedAt,
    UseCount,
    Ceiling,
}

fn unique() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}_{nanos}", std::process::id())
}

/// A fresh database: a new PostgreSQL database, or a SQLite file (removed on drop).
struct Fresh {
    db: DatabaseConnection,
    file: Option<std::path::PathBuf>,
}

impl Drop for Fresh {
    fn drop(&mut self) {
        if let Some(f) = &self.file {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", f.display()));
            }
        }
    }
}

async fn fresh() -> Fresh {
    match std::env::var("SIGIL_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
    {
        Some(base) => {
            let name = format!("sigil_m0007_{}", unique());
            let admin = Database::connect(&base).await.unwrap();
            admin
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .unwrap();
            let (prefix, _) = base.rsplit_once('/').unwrap();
            Fresh {
                db: Database::connect(format!("{prefix}/{name}")).await.unwrap(),
                file: None,
            }
        }
        None => {
            let file = std::env::temp_dir().join(format!("sigil-m0007-{}.db", unique()));
            let db = Database::connect(format!("sqlite://{}?mode=rwc", file.display()))
                .await
                .unwrap();
            Fresh {
                db,
                file: Some(file),
            }
        }
    }
}

async fn exec(db: &DatabaseConnection, stmt: &InsertStatement) {
    db.execute(db.get_database_backend().build(stmt))
        .await
        .unwrap();
}

async fn plugin(db: &DatabaseConnection, tenant: Option<Uuid>, manifest: &Value) {
    let id = manifest["id"].as_str().unwrap().to_owned();
    let uid = match tenant {
        Some(t) => format!("{t}/{id}"),
        None => format!("global/{id}"),
    };
    exec(
        db,
        Query::insert()
            .into_table(Plugins::Table)
            .columns([
                Plugins::Uid,
                Plugins::PluginId,
                Plugins::TenantId,
                Plugins::Name,
                Plugins::Version,
                Plugins::Manifest,
                Plugins::CreatedAt,
                Plugins::UpdatedAt,
            ])
            .values_panic([
                uid.into(),
                id.into(),
                tenant.into(),
                manifest["name"].as_str().unwrap().into(),
                manifest["version"].as_str().unwrap().into(),
                manifest.to_string().into(),
                Expr::current_timestamp().into(),
                Expr::current_timestamp().into(),
            ]),
    )
    .await;
}

async fn custom_set(db: &DatabaseConnection, id: u128, tenant: Uuid, entries: &[&str]) {
    exec(
        db,
        Query::insert()
            .into_table(ScopeSets::Table)
            .columns([
                ScopeSets::Id,
                ScopeSets::TenantId,
                ScopeSets::Slug,
                ScopeSets::Name,
                ScopeSets::Description,
                ScopeSets::Entries,
                ScopeSets::Access,
                ScopeSets::CreatedAt,
                ScopeSets::UpdatedAt,
            ])
            .values_panic([
                Uuid::from_u128(id).into(),
                tenant.into(),
                format!("set-{id}").into(),
                "A set".into(),
                "".into(),
                json!(entries).to_string().into(),
                Option::<String>::None.into(),
                Expr::current_timestamp().into(),
                Expr::current_timestamp().into(),
            ]),
    )
    .await;
}

async fn token(
    db: &DatabaseConnection,
    id: u128,
    tenant: Uuid,
    set: Option<&str>,
    methods: Option<&[&str]>,
    ceiling: Option<&[&str]>,
) {
    exec(
        db,
        Query::insert()
            .into_table(Tokens::Table)
            .columns([
                Tokens::Id,
                Tokens::TenantId,
                Tokens::OwnerId,
                Tokens::Kind,
                Tokens::Name,
                Tokens::Description,
                Tokens::ScopeSet,
                Tokens::ScopeMethods,
                Tokens::IpFilter,
                Tokens::Enabled,
                Tokens::Generation,
                Tokens::SecretHash,
                Tokens::CreatedAt,
                Tokens::UpdatedAt,
                Tokens::UseCount,
                Tokens::Ceiling,
            ])
            .values_panic([
                Uuid::from_u128(id).into(),
                tenant.into(),
                Uuid::from_u128(id + 1000).into(),
                "personal".into(),
                format!("token {id}").into(),
                "".into(),
                set.map(str::to_owned).into(),
                methods.map(|m| json!(m).to_string()).into(),
                "[]".into(),
                true.into(),
                1.into(),
                "0".repeat(64).into(),
                Expr::current_timestamp().into(),
                Expr::current_timestamp().into(),
                0i64.into(),
                ceiling.map(|c| json!(c).to_string()).into(),
            ]),
    )
    .await;
}

async fn strings_of(db: &DatabaseConnection, sql: &str, col: &str) -> Vec<Option<String>> {
    let rows = db
        .query_all(sea_orm_migration::sea_orm::Statement::from_string(
            db.get_database_backend(),
            sql.to_owned(),
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|r| r.try_get::<Option<String>>("", col).unwrap())
        .collect()
}

async fn token_row(
    db: &DatabaseConnection,
    id: u128,
) -> (Option<String>, Option<Value>, Option<Value>) {
    let rows = db
        .query_all(
            db.get_database_backend().build(
                Query::select()
                    .columns([Tokens::ScopeSet, Tokens::ScopeMethods, Tokens::Ceiling])
                    .from(Tokens::Table)
                    .and_where(Expr::col(Tokens::Id).eq(Uuid::from_u128(id))),
            ),
        )
        .await
        .unwrap();
    let row = rows.first().expect("token row");
    let json = |col: &str| {
        row.try_get::<Option<String>>("", col)
            .unwrap()
            .map(|t| serde_json::from_str::<Value>(&t).unwrap())
    };
    (
        row.try_get::<Option<String>>("", "scope_set").unwrap(),
        json("scope_methods"),
        json("ceiling"),
    )
}

async fn manifests(db: &DatabaseConnection) -> BTreeMap<String, (String, Value)> {
    let rows = db
        .query_all(
            db.get_database_backend().build(
                Query::select()
                    .columns([Plugins::Uid, Plugins::PluginId, Plugins::Manifest])
                    .from(Plugins::Table),
            ),
        )
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            (
                r.try_get::<String>("", "uid").unwrap(),
                (
                    r.try_get::<String>("", "plugin_id").unwrap(),
                    serde_json::from_str(&r.try_get::<String>("", "manifest").unwrap()).unwrap(),
                ),
            )
        })
        .collect()
}

fn builtin() -> PluginManifest {
    let m = |id: &str, verb: &str, path: &str| ManifestMethod {
        id: id.into(),
        http: HttpRoute::new(verb, path),
        access: Access::for_http_method(verb),
        description: String::new(),
        docs_url: None,
        cost: 1,
    };
    PluginManifest {
        id: "sigil".into(),
        name: "Sigil".into(),
        version: "1".into(),
        description: None,
        docs_url: None,
        methods: vec![
            m("users.list", "GET", "/api/v1/users"),
            m("users.get", "GET", "/api/v1/users/{id}"),
            m("tokens.list", "GET", "/api/v1/tokens"),
            m("tokens.get", "GET", "/api/v1/tokens/{id}"),
            m("sigil.introspect", "POST", "/api/v1/introspect"),
        ],
        scope_sets: vec![],
    }
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn m0007_prefixes_plugins_and_rewrites_references() {
    let fresh = fresh().await;
    let db = &fresh.db;
    Migrator::up(db, Some(6)).await.unwrap();
    let pending: Vec<String> = Migrator::get_pending_migrations(db)
        .await
        .unwrap()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    assert_eq!(
        pending.first().map(String::as_str),
        Some("m0007_plugin_namespaces"),
        "the step after m0006 is m0007: {pending:?}"
    );

    // Stored as before namespaces: the platform example, a private plugin of tenant A,
    // and a global plugin whose id is a built-in namespace.
    let platform: Value = serde_json::from_str(PLATFORM_BEFORE).unwrap();
    plugin(db, None, &platform).await;
    let crm = json!({"id": "crm", "name": "CRM", "version": "1.0.0", "methods": [
        {"id": "contacts.list", "http": {"method": "GET", "path": "/crm/contacts"}, "access": "read"},
        {"id": "contacts.create", "http": {"method": "POST", "path": "/crm/contacts"}, "access": "change"}],
        "scope_sets": [{"id": "readers", "name": "Readers", "methods": ["contacts.*"], "access": "read"}]});
    plugin(db, Some(TENANT_A), &crm).await;
    let users = json!({"id": "users", "name": "Users ext", "version": "1", "methods": [
        {"id": "users.account.x", "http": {"method": "GET", "path": "/ext/users/x"}, "access": "read"}],
        "scope_sets": [{"id": "all", "name": "All", "methods": ["users.account.*"]}]});
    plugin(db, None, &users).await;

    custom_set(
        db,
        1,
        TENANT_A,
        &[
            "environment.*",
            "users.*",
            "contacts.list",
            "*.plugin.getenvs",
        ],
    )
    .await;
    custom_set(db, 2, TENANT_B, &["contacts.*", "marketplace.*"]).await;
    // The token.
    token(
        db,
        10,
        TENANT_A,
        None,
        Some(&["tokens.list", "tokens.get", "users.*"]),
        None,
    )
    .await;
    token(
        db,
        11,
        TENANT_A,
        None,
        Some(&[
            "environment.control.stopenv",
            "marketplace.*",
            "contacts.*",
            "users.account.getbalance",
        ]),
        Some(&[
            "environment.control.stopenv",
            "contacts.list",
            "tokens.list",
        ]),
    )
    .await;
    // Tenant B does not see tenant A's crm plugin.
    token(db, 12, TENANT_B, None, Some(&["contacts.list", "*"]), None).await;
    token(db, 13, TENANT_A, Some("users.all"), None, None).await;
    token(
        db,
        14,
        TENANT_B,
        Some("platform.extended-access"),
        None,
        None,
    )
    .await;

    // The step alone: the seeded tokens have no owners, and a later step (m0012) drops
    // tokens whose owner does not exist.
    Migrator::up(db, Some(1)).await.unwrap();
    let applied = Migrator::get_applied_migrations(db).await.unwrap();
    assert_eq!(
        applied.last().map(|m| m.name().to_owned()).as_deref(),
        Some("m0007_plugin_namespaces")
    );

    // Plugins.
    let stored = manifests(db).await;
    let uids: Vec<&str> = stored.keys().map(String::as_str).collect();
    assert_eq!(
        uids,
        vec![
            format!("{TENANT_A}/crm").as_str(),
            "global/platform",
            "global/users-plugin"
        ]
    );
    let (id, p) = &stored["global/platform"];
    assert_eq!(id, "platform");
    let ids: Vec<&str> = p["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 21);
    assert!(ids.iter().all(|i| i.starts_with("platform.")), "{ids:?}");
    assert!(ids.contains(&"platform.users.account.getbalance"));
    // Same as the example shipped now.
    let example: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/plugins/platform.json"
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(p, &example);
    let (_, c) = &stored[&format!("{TENANT_A}/crm")];
    assert_eq!(c["methods"][0]["id"], "crm.contacts.list");
    assert_eq!(c["scope_sets"][0]["methods"], json!(["crm.contacts.*"]));
    let (id, u) = &stored["global/users-plugin"];
    assert_eq!(id, "users-plugin");
    assert_eq!(u["id"], "users-plugin");
    assert_eq!(u["methods"][0]["id"], "users-plugin.users.account.x");
    assert_eq!(
        u["scope_sets"][0]["methods"],
        json!(["users-plugin.users.account.*"])
    );

    // Custom sets, in slug order (set-1 of A, set-2 of B).
    let sets = strings_of(
        db,
        "SELECT entries FROM scope_sets ORDER BY slug",
        "entries",
    )
    .await;
    let sets: Vec<Value> = sets
        .iter()
        .map(|s| serde_json::from_str(s.as_deref().unwrap()).unwrap())
        .collect();
    assert_eq!(
        sets[0],
        json!([
            "platform.environment.*",
            "users.*",
            "crm.contacts.list",
            "*.plugin.getenvs"
        ])
    );
    assert_eq!(sets[1], json!(["contacts.*", "platform.marketplace.*"]));

    // Tokens.
    assert_eq!(
        token_row(db, 10).await,
        (
            None,
            Some(json!(["tokens.list", "tokens.get", "users.*"])),
            None
        )
    );
    assert_eq!(
        token_row(db, 11).await,
        (
            None,
            Some(json!([
                "platform.environment.control.stopenv",
                "platform.marketplace.*",
                "crm.contacts.*",
                "platform.users.account.getbalance"
            ])),
            Some(json!([
                "platform.environment.control.stopenv",
                "crm.contacts.list",
                "tokens.list"
            ]))
        )
    );
    assert_eq!(
        token_row(db, 12).await,
        (None, Some(json!(["contacts.list", "*"])), None)
    );
    assert_eq!(
        token_row(db, 13).await,
        (Some("users-plugin.all".into()), None, None)
    );
    assert_eq!(
        token_row(db, 14).await,
        (Some("platform.extended-access".into()), None, None)
    );

    // The result compiles with a built-in plugin under the namespace rule, and the
    // issue's token no longer reaches the platform's account methods.
    let mut plugins = vec![RegisteredPlugin::global(builtin())];
    for (uid, (_, manifest)) in &stored {
        let manifest: PluginManifest = serde_json::from_value(manifest.clone()).unwrap();
        assert_eq!(manifest.namespace_errors(), Vec::<String>::new(), "{uid}");
        plugins.push(RegisteredPlugin {
            tenant: (!uid.starts_with("global/")).then_some(TENANT_A),
            manifest,
        });
    }
    let snapshot = Snapshot::build(plugins).unwrap();
    let granted = snapshot.resolve_lenient(
        Some(TENANT_A),
        &strs(&["tokens.list", "tokens.get", "users.*"]),
        None,
    );
    let mut granted: Vec<&str> = snapshot.method_ids(&granted).collect();
    granted.sort_unstable();
    assert_eq!(
        granted,
        vec!["tokens.get", "tokens.list", "users.get", "users.list"]
    );
    let route = snapshot
        .route(Some(TENANT_A), "GET", "/1.0/users/account/rest/getbalance")
        .unwrap();
    assert_eq!(
        snapshot.method(route).id,
        "platform.users.account.getbalance"
    );
    assert!(snapshot
        .predefined_set(Some(TENANT_B), "users-plugin.all")
        .is_some());
}
