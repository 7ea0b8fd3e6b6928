//! Plugin namespaces: every method id of an external plugin starts with `<plugin id>.`, and
//! no external plugin takes a namespace of the built-in plugin (the first segments of its
//! method ids). Before, a plugin could define `users.account.getbalance`, and a token
//! meant for Sigil's own `users.*` methods gained it.
//!
//! This step rewrites the stored data to the rule:
//! - plugins: method ids without the prefix get it (`environment.control.stopenv` →
//!   `platform.environment.control.stopenv`), and so do the entries of the plugin's own
//!   scope sets (exactly: an entry grants the renamed methods it granted before). A plugin
//!   whose id is a built-in namespace is renamed to `<id>-plugin` (tokens naming its
//!   scope sets follow).
//! - token method lists, token ceilings and tenants' custom scope sets, per tenant (global
//!   plugins and the tenant's own): an exact id that was renamed gets the new id; a glob
//!   whose literal first segment was the first segment of renamed methods gets the plugin
//!   prefix (`environment.*` → `platform.environment.*`, one entry per plugin when several
//!   used the segment); a glob on a built-in namespace (`users.*`) stays and now means
//!   Sigil's methods only; a glob whose first segment is a wildcard (`*`,
//!   `*.plugin.getenvs`) stays, as it spans plugins on purpose. A rewritten glob never
//!   grants a method the entry did not grant before: where it would, the entry becomes
//!   the exact ids it granted.
//!
//! The step is frozen: it keeps its own copy of the built-in namespaces and of the glob
//! rules instead of importing live code.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use globset::{GlobBuilder, GlobMatcher};
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::prelude::Uuid;
use sea_orm_migration::sea_orm::{ConnectionTrait, QueryResult};
use serde_json::Value;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0007_plugin_namespaces"
    }
}

/// First segments of the built-in plugin's method ids when this step was written, and its
/// id.
pub(crate) const BUILTIN_NAMESPACES: &[&str] = &[
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
];

const MAX_PLUGIN_ID_LEN: usize = 64;

#[derive(Iden)]
enum Plugins {
    Table,
    Uid,
    PluginId,
    TenantId,
    Manifest,
}

#[derive(Iden)]
enum ScopeSets {
    Table,
    Id,
    TenantId,
    Entries,
}

#[derive(Iden)]
enum Tokens {
    Table,
    Id,
    TenantId,
    ScopeSet,
    ScopeMethods,
    Ceiling,
}

#[derive(Iden)]
enum RegistryVersion {
    Table,
    Id,
    Version,
}

fn is_glob(entry: &str) -> bool {
    entry.contains(['*', '?', '[', '{'])
}

fn namespace_of(id: &str) -> &str {
    id.split('.').next().unwrap_or(id)
}

/// An entry as scopes read it: an exact id, or a glob where `*` crosses dots.
enum Pattern {
    Exact(String),
    Glob(GlobMatcher),
    Invalid,
}

impl Pattern {
    fn parse(entry: &str) -> Pattern {
        let entry = entry.trim();
        if entry.is_empty() {
            return Pattern::Invalid;
        }
        if !is_glob(entry) {
            return Pattern::Exact(entry.to_owned());
        }
        GlobBuilder::new(entry)
            .literal_separator(false)
            .backslash_escape(true)
            .build()
            .map(|g| Pattern::Glob(g.compile_matcher()))
            .unwrap_or(Pattern::Invalid)
    }

    fn matches(&self, id: &str) -> bool {
        match self {
            Pattern::Exact(e) => e == id,
            Pattern::Glob(g) => g.is_match(id),
            Pattern::Invalid => false,
        }
    }
}

/// One stored plugin and how it changes.
#[derive(Debug, Clone)]
pub(crate) struct PluginChange {
    pub uid: String,
    pub tenant: Option<Uuid>,
    pub old_id: String,
    pub new_id: String,
    /// Method ids before → after; `None` for a method dropped because its prefixed id was
    /// already taken by another method of the plugin.
    pub methods: Vec<(String, Option<String>)>,
    pub manifest: Value,
    pub changed: bool,
}

fn method_ids(manifest: &Value) -> Vec<String> {
    manifest["methods"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["id"].as_str().map(str::to_owned))
        .collect()
}

/// A free id for a plugin whose id is a built-in namespace.
fn free_id(base: &str, taken: &BTreeSet<String>) -> String {
    let stem: String = base.chars().take(MAX_PLUGIN_ID_LEN - 10).collect();
    let mut candidate = format!("{stem}-plugin");
    let mut n = 2;
    while taken.contains(&candidate) || BUILTIN_NAMESPACES.contains(&candidate.as_str()) {
        candidate = format!("{stem}-plugin{n}");
        n += 1;
    }
    candidate
}

/// Works out the new shape of every plugin: `(uid, tenant, manifest)` rows in.
pub(crate) fn plan_plugins(rows: Vec<(String, Option<Uuid>, Value)>) -> Vec<PluginChange> {
    // Ids in use per visibility: global ones block every tenant.
    let mut taken: BTreeMap<Option<Uuid>, BTreeSet<String>> = BTreeMap::new();
    for (_, tenant, manifest) in &rows {
        if let Some(id) = manifest["id"].as_str() {
            taken.entry(*tenant).or_default().insert(id.to_owned());
        }
    }
    let globals = taken.get(&None).cloned().unwrap_or_default();
    let mut out = Vec::with_capacity(rows.len());
    for (uid, tenant, mut manifest) in rows {
        let old_id = manifest["id"].as_str().unwrap_or_default().to_owned();
        let new_id = if BUILTIN_NAMESPACES.contains(&old_id.as_str()) {
            let mut all = globals.clone();
            match tenant {
                Some(_) => all.extend(taken.get(&tenant).cloned().unwrap_or_default()),
                // A new global id must be free in every tenant too.
                None => all.extend(taken.values().flatten().cloned()),
            }
            let id = free_id(&old_id, &all);
            taken.entry(tenant).or_default().insert(id.clone());
            id
        } else {
            old_id.clone()
        };
        let prefix = format!("{new_id}.");
        let old_ids = method_ids(&manifest);
        let kept: BTreeSet<&str> = old_ids
            .iter()
            .filter(|id| id.starts_with(&prefix))
            .map(String::as_str)
            .collect();
        let mut methods = Vec::with_capacity(old_ids.len());
        let mut seen: BTreeSet<String> = BTreeSet::new();
        for id in &old_ids {
            let target = if id.starts_with(&prefix) {
                id.clone()
            } else {
                format!("{prefix}{id}")
            };
            let clash = (!id.starts_with(&prefix) && kept.contains(target.as_str()))
                || seen.contains(&target);
            if clash {
                methods.push((id.clone(), None));
            } else {
                seen.insert(target.clone());
                methods.push((id.clone(), Some(target)));
            }
        }
        let changed = new_id != old_id || methods.iter().any(|(a, b)| b.as_deref() != Some(a));
        if changed {
            rewrite_manifest(&mut manifest, &new_id, &methods);
        }
        out.push(PluginChange {
            uid,
            tenant,
            old_id,
            new_id,
            methods,
            manifest,
            changed,
        });
    }
    out
}

/// Applies a plugin's renames to its manifest: id, method ids (dropping clashing
/// methods) and its own scope sets' entries, exactly.
fn rewrite_manifest(manifest: &mut Value, new_id: &str, methods: &[(String, Option<String>)]) {
    manifest["id"] = Value::String(new_id.to_owned());
    let renamed: HashMap<&str, &str> = methods
        .iter()
        .filter_map(|(a, b)| b.as_deref().map(|b| (a.as_str(), b)))
        .collect();
    if let Some(list) = manifest["methods"].as_array_mut() {
        list.retain(|m| m["id"].as_str().is_some_and(|id| renamed.contains_key(id)));
        for m in list.iter_mut() {
            let new = m["id"]
                .as_str()
                .and_then(|id| renamed.get(id))
                .map(|s| (*s).to_owned());
            if let Some(new) = new {
                m["id"] = Value::String(new);
            }
        }
    }
    let old_ids: Vec<&str> = methods.iter().map(|(a, _)| a.as_str()).collect();
    let new_ids: Vec<&str> = renamed.values().copied().collect();
    if let Some(sets) = manifest["scope_sets"].as_array_mut() {
        for set in sets.iter_mut() {
            let entries: Vec<String> = set["methods"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e.as_str().map(str::to_owned))
                .collect();
            let mut out: Vec<String> = Vec::new();
            for entry in &entries {
                let pattern = Pattern::parse(entry);
                let want: BTreeSet<&str> = old_ids
                    .iter()
                    .filter(|id| pattern.matches(id))
                    .filter_map(|id| renamed.get(id).copied())
                    .collect();
                if want.is_empty() {
                    continue;
                }
                let prefixed = format!("{new_id}.{entry}");
                let options = [entry.clone(), prefixed];
                let exact = options.iter().find(|option| {
                    let p = Pattern::parse(option);
                    let got: BTreeSet<&str> =
                        new_ids.iter().copied().filter(|id| p.matches(id)).collect();
                    got == want
                });
                match exact {
                    Some(option) => push_unique(&mut out, option.clone()),
                    None => want
                        .iter()
                        .for_each(|id| push_unique(&mut out, (*id).to_owned())),
                }
            }
            set["methods"] = Value::from(out);
        }
        // A set left without entries (its methods were dropped) cannot stand.
        sets.retain(|s| s["methods"].as_array().is_some_and(|m| !m.is_empty()));
    }
}

fn push_unique(out: &mut Vec<String>, entry: String) {
    if !out.contains(&entry) {
        out.push(entry);
    }
}

/// What one tenant (or the global scope) sees of the plugin changes.
pub(crate) struct View {
    /// External method ids before, and what each became (`None`: dropped).
    methods: Vec<(String, Option<String>)>,
    renamed: HashMap<String, Option<String>>,
    /// Old first segment of renamed methods → the (new) ids of the plugins that had them.
    by_segment: BTreeMap<String, BTreeSet<String>>,
    /// Old predefined set id prefix `{old plugin id}.` → `{new plugin id}.`.
    plugin_renames: Vec<(String, String)>,
}

impl View {
    pub(crate) fn new<'a>(plugins: impl Iterator<Item = &'a PluginChange>) -> View {
        let mut view = View {
            methods: Vec::new(),
            renamed: HashMap::new(),
            by_segment: BTreeMap::new(),
            plugin_renames: Vec::new(),
        };
        for p in plugins {
            if p.old_id != p.new_id {
                view.plugin_renames
                    .push((format!("{}.", p.old_id), format!("{}.", p.new_id)));
            }
            for (old, new) in &p.methods {
                view.methods.push((old.clone(), new.clone()));
                if new.as_deref() != Some(old.as_str()) {
                    view.renamed.insert(old.clone(), new.clone());
                    view.by_segment
                        .entry(namespace_of(old).to_owned())
                        .or_default()
                        .insert(p.new_id.clone());
                }
            }
        }
        view
    }

    fn is_trivial(&self) -> bool {
        self.renamed.is_empty() && self.plugin_renames.is_empty()
    }

    /// Rewrites scope entries (a token's method list or a custom set's entries).
    pub(crate) fn rewrite_entries(&self, entries: &[String]) -> Vec<String> {
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            for e in self.rewrite_entry(entry) {
                push_unique(&mut out, e);
            }
        }
        out
    }

    fn rewrite_entry(&self, entry: &str) -> Vec<String> {
        if !is_glob(entry) {
            return match self.renamed.get(entry.trim()) {
                Some(Some(new)) => vec![new.clone()],
                _ => vec![entry.to_owned()],
            };
        }
        let segment = namespace_of(entry);
        if is_glob(segment) || BUILTIN_NAMESPACES.contains(&segment) {
            return vec![entry.to_owned()];
        }
        let pattern = Pattern::parse(entry);
        // What the entry granted, under the new ids.
        let granted: BTreeSet<&str> = self
            .methods
            .iter()
            .filter(|(old, _)| pattern.matches(old))
            .filter_map(|(_, new)| new.as_deref())
            .collect();
        // One prefixed entry per plugin whose renamed methods used the segment; the entry
        // itself where no plugin did, or where it matched methods that keep their id.
        let plugins = self.by_segment.get(segment);
        let mut proposal: Vec<String> = plugins
            .into_iter()
            .flatten()
            .map(|p| format!("{p}.{entry}"))
            .collect();
        if plugins.is_none()
            || self
                .methods
                .iter()
                .any(|(old, new)| new.as_deref() == Some(old.as_str()) && pattern.matches(old))
        {
            proposal.push(entry.to_owned());
        }
        let patterns: Vec<Pattern> = proposal.iter().map(|p| Pattern::parse(p)).collect();
        let widens = self
            .methods
            .iter()
            .filter_map(|(_, new)| new.as_deref())
            .any(|id| patterns.iter().any(|p| p.matches(id)) && !granted.contains(id));
        if widens {
            granted.into_iter().map(str::to_owned).collect()
        } else {
            proposal
        }
    }

    /// Rewrites a ceiling (exact method ids).
    pub(crate) fn rewrite_ids(&self, ids: &[String]) -> Vec<String> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let new = match self.renamed.get(id) {
                Some(Some(new)) => new.clone(),
                Some(None) => continue,
                None => id.clone(),
            };
            push_unique(&mut out, new);
        }
        out
    }

    /// Rewrites a token's scope set id when its plugin was renamed.
    pub(crate) fn rewrite_set_id(&self, set: &str) -> Option<String> {
        self.plugin_renames
            .iter()
            .find_map(|(old, new)| set.strip_prefix(old.as_str()).map(|s| format!("{new}{s}")))
    }
}

fn parse_list(text: &str) -> Option<Vec<String>> {
    serde_json::from_str(text).ok()
}

fn to_json(list: &[String]) -> Result<String, DbErr> {
    serde_json::to_string(list).map_err(|e| DbErr::Custom(e.to_string()))
}

fn get<T: sea_orm_migration::sea_orm::TryGetable>(
    row: &QueryResult,
    col: &str,
) -> Result<T, DbErr> {
    row.try_get::<T>("", col)
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        let backend = m.get_database_backend();

        let rows = db
            .query_all(
                backend.build(
                    Query::select()
                        .columns([Plugins::Uid, Plugins::TenantId, Plugins::Manifest])
                        .from(Plugins::Table),
                ),
            )
            .await?;
        let mut stored = Vec::with_capacity(rows.len());
        for row in &rows {
            let uid: String = get(row, "uid")?;
            let tenant: Option<Uuid> = get(row, "tenant_id")?;
            let text: String = get(row, "manifest")?;
            // An unreadable manifest is left alone (the server reports it when loading).
            if let Ok(manifest) = serde_json::from_str::<Value>(&text) {
                stored.push((uid, tenant, manifest));
            }
        }
        let plugins = plan_plugins(stored);
        if plugins.iter().all(|p| !p.changed) {
            return Ok(());
        }
        for p in plugins.iter().filter(|p| p.changed) {
            let json =
                serde_json::to_string(&p.manifest).map_err(|e| DbErr::Custom(e.to_string()))?;
            let uid = match p.tenant {
                Some(t) => format!("{t}/{}", p.new_id),
                None => format!("global/{}", p.new_id),
            };
            m.exec_stmt(
                Query::update()
                    .table(Plugins::Table)
                    .values([
                        (Plugins::Uid, uid.into()),
                        (Plugins::PluginId, p.new_id.clone().into()),
                        (Plugins::Manifest, json.into()),
                    ])
                    .and_where(Expr::col(Plugins::Uid).eq(p.uid.clone()))
                    .to_owned(),
            )
            .await?;
        }

        let global = View::new(plugins.iter().filter(|p| p.tenant.is_none()));
        let mut views: HashMap<Uuid, View> = HashMap::new();
        let tenants: BTreeSet<Uuid> = plugins.iter().filter_map(|p| p.tenant).collect();
        for t in tenants {
            views.insert(
                t,
                View::new(
                    plugins
                        .iter()
                        .filter(|p| p.tenant.is_none() || p.tenant == Some(t)),
                ),
            );
        }
        let view_of = |t: Uuid| views.get(&t).unwrap_or(&global);

        // Tenants' custom scope sets.
        let rows = db
            .query_all(
                backend.build(
                    Query::select()
                        .columns([ScopeSets::Id, ScopeSets::TenantId, ScopeSets::Entries])
                        .from(ScopeSets::Table),
                ),
            )
            .await?;
        for row in &rows {
            let id: Uuid = get(row, "id")?;
            let tenant: Uuid = get(row, "tenant_id")?;
            let text: String = get(row, "entries")?;
            let view = view_of(tenant);
            let Some(entries) = parse_list(&text) else {
                continue;
            };
            let new = view.rewrite_entries(&entries);
            if view.is_trivial() || new == entries {
                continue;
            }
            m.exec_stmt(
                Query::update()
                    .table(ScopeSets::Table)
                    .value(ScopeSets::Entries, to_json(&new)?)
                    .and_where(Expr::col(ScopeSets::Id).eq(id))
                    .to_owned(),
            )
            .await?;
        }

        // Tokens: method lists, ceilings and scope sets of renamed plugins.
        let with_ceiling = m.has_column("tokens", "ceiling").await?;
        let mut columns = vec![
            Tokens::Id,
            Tokens::TenantId,
            Tokens::ScopeSet,
            Tokens::ScopeMethods,
        ];
        if with_ceiling {
            columns.push(Tokens::Ceiling);
        }
        let mut any = Cond::any()
            .add(Expr::col(Tokens::ScopeMethods).is_not_null())
            .add(Expr::col(Tokens::ScopeSet).like("%.%"));
        if with_ceiling {
            any = any.add(Expr::col(Tokens::Ceiling).is_not_null());
        }
        let rows = db
            .query_all(
                backend.build(
                    Query::select()
                        .columns(columns)
                        .from(Tokens::Table)
                        .cond_where(any),
                ),
            )
            .await?;
        for row in &rows {
            let id: Uuid = get(row, "id")?;
            let tenant: Uuid = get(row, "tenant_id")?;
            let view = view_of(tenant);
            if view.is_trivial() {
                continue;
            }
            let mut update = Query::update();
            update.table(Tokens::Table);
            let mut changed = false;
            let set: Option<String> = get(row, "scope_set")?;
            if let Some(new) = set.as_deref().and_then(|s| view.rewrite_set_id(s)) {
                update.value(Tokens::ScopeSet, new);
                changed = true;
            }
            let methods: Option<String> = get(row, "scope_methods")?;
            if let Some(entries) = methods.as_deref().and_then(parse_list) {
                let new = view.rewrite_entries(&entries);
                if new != entries {
                    update.value(Tokens::ScopeMethods, to_json(&new)?);
                    changed = true;
                }
            }
            if with_ceiling {
                let ceiling: Option<String> = get(row, "ceiling")?;
                if let Some(ids) = ceiling.as_deref().and_then(parse_list) {
                    let new = view.rewrite_ids(&ids);
                    if new != ids {
                        update.value(Tokens::Ceiling, to_json(&new)?);
                        changed = true;
                    }
                }
            }
            if changed {
                m.exec_stmt(update.and_where(Expr::col(Tokens::Id).eq(id)).to_owned())
                    .await?;
            }
        }

        // Running replicas compare this counter with their snapshot's and reload.
        m.exec_stmt(
            Query::update()
                .table(RegistryVersion::Table)
                .value(
                    RegistryVersion::Version,
                    Expr::col(RegistryVersion::Version).add(1),
                )
                .and_where(Expr::col(RegistryVersion::Id).eq(1))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, _m: &SchemaManager) -> Result<(), DbErr> {
        // The old ids were ambiguous; there is nothing to go back to.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn platform_v8() -> Value {
        json!({
            "id": "platform", "name": "Platform API", "version": "8.3.0",
            "methods": [
                {"id": "environment.control.getenvinfo", "http": {"method": "GET", "path": "/1.0/environment/control/rest/getenvinfo"}, "access": "read"},
                {"id": "environment.control.stopenv", "http": {"method": "GET", "path": "/1.0/environment/control/rest/stopenv"}, "access": "change"},
                {"id": "marketplace.app.install", "http": {"method": "POST", "path": "/1.0/marketplace/app/rest/install"}, "access": "change"},
                {"id": "ide.plugin.getenvs", "http": {"method": "GET", "path": "/1.0/ide/plugin/rest/getenvs"}, "access": "read"},
                {"id": "users.account.getbalance", "http": {"method": "GET", "path": "/1.0/users/account/rest/getbalance"}, "access": "read"}
            ],
            "scope_sets": [
                {"id": "extended-access", "name": "Extended Access",
                 "methods": ["environment.*", "marketplace.*", "users.account.getbalance"]},
                {"id": "ide-plugins", "name": "IDE Plugins",
                 "methods": ["*.plugin.*", "environment.control.getenvinfo"]}
            ]
        })
    }

    #[test]
    fn plugins_get_their_prefix() {
        let plan = plan_plugins(vec![("global/platform".into(), None, platform_v8())]);
        let p = &plan[0];
        assert!(p.changed);
        assert_eq!(p.new_id, "platform");
        assert_eq!(
            method_ids(&p.manifest),
            strings(&[
                "platform.environment.control.getenvinfo",
                "platform.environment.control.stopenv",
                "platform.marketplace.app.install",
                "platform.ide.plugin.getenvs",
                "platform.users.account.getbalance",
            ])
        );
        let sets = p.manifest["scope_sets"].as_array().unwrap();
        assert_eq!(
            sets[0]["methods"],
            json!([
                "platform.environment.*",
                "platform.marketplace.*",
                "platform.users.account.getbalance"
            ])
        );
        // A leading wildcard still matches the same methods of the plugin.
        assert_eq!(
            sets[1]["methods"],
            json!(["*.plugin.*", "platform.environment.control.getenvinfo"])
        );
        // Already prefixed: nothing to do.
        let again = plan_plugins(vec![("global/platform".into(), None, p.manifest.clone())]);
        assert!(!again[0].changed);
    }

    #[test]
    fn reserved_ids_and_clashes() {
        let users = json!({"id": "users", "name": "U", "version": "1", "methods": [
            {"id": "users.account.x", "http": {"method": "GET", "path": "/x"}, "access": "read"}],
            "scope_sets": [{"id": "all", "name": "All", "methods": ["users.*"]}]});
        let clash = json!({"id": "crm", "name": "C", "version": "1", "methods": [
            {"id": "crm.a", "http": {"method": "GET", "path": "/1"}, "access": "read"},
            {"id": "a", "http": {"method": "GET", "path": "/2"}, "access": "read"},
            {"id": "b", "http": {"method": "GET", "path": "/3"}, "access": "read"}],
            "scope_sets": [{"id": "old", "name": "Old", "methods": ["a"]},
                           {"id": "b", "name": "B", "methods": ["b", "a"]}]});
        let plan = plan_plugins(vec![
            ("global/users".into(), None, users),
            ("global/crm".into(), None, clash),
        ]);
        assert_eq!(plan[0].new_id, "users-plugin");
        assert_eq!(
            method_ids(&plan[0].manifest),
            strings(&["users-plugin.users.account.x"])
        );
        assert_eq!(
            plan[0].manifest["scope_sets"][0]["methods"],
            json!(["users-plugin.users.*"])
        );
        // 'a' would become 'crm.a', which exists: it is dropped, and so is the set that
        // only named it.
        assert_eq!(method_ids(&plan[1].manifest), strings(&["crm.a", "crm.b"]));
        assert_eq!(
            plan[1].manifest["scope_sets"],
            json!([{"id": "b", "name": "B", "methods": ["crm.b"]}])
        );
        let view = View::new(plan.iter());
        assert_eq!(
            view.rewrite_entries(&strings(&["a", "b", "users.account.x"])),
            strings(&["a", "crm.b", "users-plugin.users.account.x"])
        );
        assert_eq!(
            view.rewrite_ids(&strings(&["a", "b", "crm.a"])),
            strings(&["crm.b", "crm.a"])
        );
        assert_eq!(
            view.rewrite_set_id("users.all").as_deref(),
            Some("users-plugin.all")
        );
        assert_eq!(view.rewrite_set_id("crm.b"), None);
        assert_eq!(view.rewrite_set_id("read-only"), None);
    }

    #[test]
    fn token_entries() {
        let other = json!({"id": "acme", "name": "A", "version": "1", "methods": [
            {"id": "environment.audit.list", "http": {"method": "GET", "path": "/a"}, "access": "read"},
            {"id": "acme.other.kept", "http": {"method": "GET", "path": "/b"}, "access": "read"}]});
        let plan = plan_plugins(vec![
            ("global/platform".into(), None, platform_v8()),
            ("global/acme".into(), None, other),
        ]);
        let view = View::new(plan.iter());
        let rewrite = |e: &[&str]| view.rewrite_entries(&strings(e));
        // The token: 'users.*' stays, and now means Sigil's users methods.
        assert_eq!(
            rewrite(&["tokens.list", "tokens.get", "users.*"]),
            strings(&["tokens.list", "tokens.get", "users.*"])
        );
        // Exact ids follow their method.
        assert_eq!(
            rewrite(&["users.account.getbalance", "environment.control.stopenv"]),
            strings(&[
                "platform.users.account.getbalance",
                "platform.environment.control.stopenv"
            ])
        );
        // A glob on one plugin's segment gets its prefix, even for methods yet to come.
        assert_eq!(
            rewrite(&["marketplace.*", "ide.plugin.deploy*"]),
            strings(&["platform.marketplace.*", "platform.ide.plugin.deploy*"])
        );
        // Two plugins used the segment: one entry each.
        assert_eq!(
            rewrite(&["environment.*"]),
            strings(&["acme.environment.*", "platform.environment.*"])
        );
        assert_eq!(
            rewrite(&["environment.audit.*"]),
            strings(&["acme.environment.audit.*", "platform.environment.audit.*"])
        );
        // A leading wildcard spans plugins on purpose.
        assert_eq!(
            rewrite(&["*", "*.plugin.getenvs"]),
            strings(&["*", "*.plugin.getenvs"])
        );
        // Unknown segments and unknown ids stay.
        assert_eq!(
            rewrite(&["nothing.*", "gone.x"]),
            strings(&["nothing.*", "gone.x"])
        );
        // 'acme.*' granted acme.other.kept only; kept as is it would also grant the
        // renamed acme.environment.audit.list: the entry becomes what it granted.
        assert_eq!(rewrite(&["acme.*"]), strings(&["acme.other.kept"]));
    }

    #[test]
    fn a_rewrite_never_widens() {
        // 'acme' has 'acme.x.one' already prefixed and 'x.two' not: 'x.*' granted x.two
        // only, while 'acme.x.*' would also grant acme.x.one.
        let acme = json!({"id": "acme", "name": "A", "version": "1", "methods": [
            {"id": "acme.x.one", "http": {"method": "GET", "path": "/a"}, "access": "read"},
            {"id": "x.two", "http": {"method": "GET", "path": "/b"}, "access": "read"}],
            "scope_sets": [{"id": "s", "name": "S", "methods": ["x.*"]}]});
        let plan = plan_plugins(vec![("global/acme".into(), None, acme)]);
        assert_eq!(
            plan[0].manifest["scope_sets"][0]["methods"],
            json!(["acme.x.two"])
        );
        let view = View::new(plan.iter());
        assert_eq!(
            view.rewrite_entries(&strings(&["x.*"])),
            strings(&["acme.x.two"])
        );
    }
}
