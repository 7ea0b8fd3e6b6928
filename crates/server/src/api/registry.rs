use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::Any;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use sigil_core::page::PageRequest;
use sigil_core::{Error, FieldError, TenantId};
use sigil_scope_registry::store::{CustomSet, CustomSetInput};
use sigil_scope_registry::{
    Access, HttpRoute, ManifestMethod, ManifestScopeSet, PluginManifest, RegisteredPlugin,
    RegistryDiff, Snapshot,
};
use sigil_token::{Caller, Change};

use super::caller::{AnyCaller, TenantCaller};
use super::ApiTags;
use crate::problem::ApiResult;
use crate::state::AppState;

pub struct RegistryApi(pub Arc<AppState>);

pub const BUILTIN_PLUGIN: &str = "sigil";
const MAX_SET_ENTRIES: usize = 500;
/// Most widened tokens and sets listed in a registration answer or audit event; the
/// totals count them all.
const MAX_WIDENED_LISTED: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum AccessDto {
    Read,
    Change,
}

impl From<Access> for AccessDto {
    fn from(a: Access) -> Self {
        match a {
            Access::Read => AccessDto::Read,
            Access::Change => AccessDto::Change,
        }
    }
}

impl From<AccessDto> for Access {
    fn from(a: AccessDto) -> Self {
        match a {
            AccessDto::Read => Access::Read,
            AccessDto::Change => Access::Change,
        }
    }
}

#[derive(Clone, Debug, Object)]
pub struct HttpRouteDto {
    /// HTTP verb (GET, POST, ...).
    pub method: String,
    /// Path template, e.g. `/1.0/environment/control/rest/stopenv` or `/items/{id}`.
    pub path: String,
}

#[derive(Clone, Debug, Object)]
pub struct ManifestMethodDto {
    /// Dotted method id in the plugin's namespace: `<plugin id>.<name>`, e.g.
    /// `platform.environment.control.stopenv`.
    pub id: String,
    pub http: HttpRouteDto,
    pub access: AccessDto,
    pub description: Option<String>,
    pub docs_url: Option<String>,
}

#[derive(Clone, Debug, Object)]
pub struct ManifestScopeSetDto {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    /// Method ids or globs of this plugin.
    pub methods: Vec<String>,
    /// `read` keeps only the read methods.
    pub access: Option<AccessDto>,
}

/// A plugin manifest: the plugin's API methods and predefined scope sets.
#[derive(Clone, Debug, Object)]
pub struct ManifestDto {
    pub id: String,
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    pub docs_url: Option<String>,
    #[oai(validator(max_items = 5000))]
    pub methods: Vec<ManifestMethodDto>,
    #[oai(validator(max_items = 500))]
    pub scope_sets: Option<Vec<ManifestScopeSetDto>>,
}

impl From<ManifestDto> for PluginManifest {
    fn from(m: ManifestDto) -> Self {
        PluginManifest {
            id: m.id,
            name: m.name,
            version: m.version,
            description: m.description,
            docs_url: m.docs_url,
            methods: m
                .methods
                .into_iter()
                .map(|x| ManifestMethod {
                    id: x.id,
                    http: HttpRoute::new(&x.http.method, &x.http.path),
                    access: x.access.into(),
                    description: x.description.unwrap_or_default(),
                    docs_url: x.docs_url,
                })
                .collect(),
            scope_sets: m
                .scope_sets
                .unwrap_or_default()
                .into_iter()
                .map(|s| ManifestScopeSet {
                    id: s.id,
                    name: s.name,
                    description: s.description.unwrap_or_default(),
                    methods: s.methods,
                    access: s.access.map(Into::into),
                })
                .collect(),
        }
    }
}

/// Register a plugin from a manifest, or from an OpenAPI 3.x document.
#[derive(Object)]
pub struct RegisterPluginBody {
    pub manifest: Option<ManifestDto>,
    /// An OpenAPI 3.x document (JSON): operationId → method, GET/HEAD → read, other verbs
    /// → change, `x-sigil-access` overrides, tags become predefined sets.
    pub openapi: Option<Any<serde_json::Value>>,
    /// Plugin id when registering from OpenAPI.
    pub id: Option<String>,
    pub name: Option<String>,
    pub version: Option<String>,
    /// Operator only: register for every tenant (default true for the operator, false
    /// for a tenant admin, whose plugins are private to the tenant).
    pub global: Option<bool>,
}

#[derive(Clone, Debug, Object)]
pub struct MethodDto {
    pub id: String,
    pub plugin: String,
    pub http_method: String,
    pub path: String,
    pub access: AccessDto,
    pub description: String,
    /// Link to the method's API documentation.
    pub docs_url: Option<String>,
}

#[derive(Clone, Debug, Object)]
pub struct PluginDto {
    pub id: String,
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    /// `global` or `tenant`.
    pub visibility: String,
    pub built_in: bool,
    pub methods: Vec<MethodDto>,
    pub scope_sets: Vec<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum WidenedKind {
    /// A token with its own method list.
    Token,
    /// A predefined or custom scope set; the tokens using it gain the methods too.
    ScopeSet,
}

impl WidenedKind {
    fn as_str(self) -> &'static str {
        match self {
            WidenedKind::Token => "token",
            WidenedKind::ScopeSet => "scope_set",
        }
    }
}

/// A token or scope set that grants methods it did not grant before the registration.
#[derive(Clone, Debug, Object)]
pub struct WidenedDto {
    pub kind: WidenedKind,
    /// Token id, or scope set id.
    pub id: String,
    pub name: String,
    /// Tenant of the token, custom set or tenant-private plugin set; null for a set of a
    /// global plugin (or a built-in set), which every tenant sees alike.
    pub tenant_id: Option<String>,
    /// Method ids it grants now and did not before.
    pub added_methods: Vec<String>,
    /// For a set: live tokens without a creator ceiling that use it (and so gain the
    /// methods too).
    pub tokens_using: Option<u64>,
}

/// What a registration widened in one tenant.
#[derive(Clone, Debug, Object)]
pub struct WidenedTenantDto {
    pub tenant_id: String,
    /// Custom scope sets that grant more.
    pub scope_sets: u64,
    /// Tokens that grant more: by their own method list or by a widened set.
    pub tokens: u64,
}

#[derive(Object)]
pub struct RegisteredPluginDto {
    pub plugin: PluginDto,
    /// Method ids the new version no longer has; tokens simply lose them.
    pub removed_methods: Vec<String>,
    /// Tokens and scope sets that grant methods they did not grant before (at most 1000;
    /// `widened_total` counts them all). A tenant admin sees the tenant's; the operator,
    /// registering a global plugin, every tenant's. Empty when nothing widened.
    pub widened: Vec<WidenedDto>,
    pub widened_total: u64,
    /// The widened custom sets and tokens counted per tenant.
    pub widened_tenants: Vec<WidenedTenantDto>,
}

#[derive(Object)]
pub struct DeletedPluginDto {
    pub id: String,
    pub removed_methods: Vec<String>,
    pub note: String,
}

super::dto::list_envelope!(
    /// One page of API methods.
    MethodList,
    MethodDto
);

super::dto::list_envelope!(
    /// One page of plugins.
    PluginList,
    PluginDto
);

super::dto::list_envelope!(
    /// One page of scope sets.
    ScopeSetList,
    ScopeSetDto
);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum SetKind {
    Predefined,
    Custom,
}

#[derive(Object)]
pub struct ScopeSetDto {
    /// Id to use as a token's `scope_set`.
    pub id: String,
    pub name: String,
    pub description: String,
    pub kind: SetKind,
    /// Defining plugin of a predefined set.
    pub plugin: Option<String>,
    pub entries: Vec<String>,
    pub access: Option<AccessDto>,
    pub method_count: u64,
    /// The resolved method ids (getScopeSet only).
    pub methods: Option<Vec<String>>,
}

#[derive(Object)]
pub struct CreateScopeSetBody {
    /// 2-63 of a-z, 0-9, '-', '_'.
    #[oai(validator(min_length = 2, max_length = 63))]
    pub id: String,
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: String,
    #[oai(validator(max_length = 2000))]
    pub description: Option<String>,
    /// Method ids or globs (`platform.environment.*`).
    #[oai(validator(min_items = 1, max_items = 500))]
    pub methods: Vec<String>,
    pub access: Option<AccessDto>,
}

#[derive(Object)]
pub struct UpdateScopeSetBody {
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: Option<String>,
    #[oai(validator(max_length = 2000))]
    pub description: Option<String>,
    #[oai(validator(min_items = 1, max_items = 500))]
    pub methods: Option<Vec<String>>,
    pub access: Option<AccessDto>,
}

#[derive(ApiResponse)]
pub enum PluginListResponse {
    #[oai(status = 200)]
    Ok(Json<PluginList>),
}

#[derive(ApiResponse)]
pub enum RegisterResponse {
    /// Registered.
    #[oai(status = 201)]
    Created(Json<RegisteredPluginDto>),
    /// Updated to the new version.
    #[oai(status = 200)]
    Updated(Json<RegisteredPluginDto>),
}

#[derive(ApiResponse)]
pub enum PluginResponse {
    #[oai(status = 200)]
    Ok(Json<PluginDto>),
}

#[derive(ApiResponse)]
pub enum DeletePluginResponse {
    #[oai(status = 200)]
    Ok(Json<DeletedPluginDto>),
}

#[derive(ApiResponse)]
pub enum MethodListResponse {
    #[oai(status = 200)]
    Ok(Json<MethodList>),
}

#[derive(ApiResponse)]
pub enum ScopeSetListResponse {
    #[oai(status = 200)]
    Ok(Json<ScopeSetList>),
}

#[derive(ApiResponse)]
pub enum ScopeSetResponse {
    #[oai(status = 200)]
    Ok(Json<ScopeSetDto>),
}

#[derive(ApiResponse)]
pub enum ScopeSetCreatedResponse {
    #[oai(status = 201)]
    Created(Json<ScopeSetDto>),
}

#[derive(ApiResponse)]
pub enum ScopeSetDeletedResponse {
    #[oai(status = 204)]
    Deleted,
}

fn method_dto(m: &sigil_scope_registry::MethodInfo) -> MethodDto {
    MethodDto {
        id: m.id.clone(),
        plugin: m.plugin.clone(),
        http_method: m.http_method.clone(),
        path: m.path.clone(),
        access: m.access.into(),
        description: m.description.clone(),
        docs_url: m.docs_url.clone(),
    }
}

fn plugin_dto(
    snapshot: &Snapshot,
    p: &RegisteredPlugin,
    stamps: Option<(DateTime<Utc>, DateTime<Utc>)>,
) -> PluginDto {
    let methods = p
        .manifest
        .methods
        .iter()
        .filter_map(|m| {
            snapshot
                .lookup(p.tenant, &m.id)
                .map(|idx| method_dto(snapshot.method(idx)))
        })
        .collect();
    PluginDto {
        id: p.manifest.id.clone(),
        name: p.manifest.name.clone(),
        version: p.manifest.version.clone(),
        description: p.manifest.description.clone(),
        visibility: if p.tenant.is_some() {
            "tenant"
        } else {
            "global"
        }
        .into(),
        built_in: p.manifest.id == BUILTIN_PLUGIN && p.tenant.is_none(),
        methods,
        scope_sets: p
            .manifest
            .scope_sets
            .iter()
            .map(|s| format!("{}.{}", p.manifest.id, s.id))
            .collect(),
        created_at: stamps.map(|s| s.0),
        updated_at: stamps.map(|s| s.1),
    }
}

fn custom_dto(snapshot: &Snapshot, set: &CustomSet, with_methods: bool) -> ScopeSetDto {
    let resolved = snapshot.resolve_lenient(Some(set.tenant.0), &set.entries, set.access);
    ScopeSetDto {
        id: set.slug.clone(),
        name: set.name.clone(),
        description: set.description.clone(),
        kind: SetKind::Custom,
        plugin: None,
        entries: set.entries.clone(),
        access: set.access.map(Into::into),
        method_count: resolved.len() as u64,
        methods: with_methods.then(|| snapshot.method_ids(&resolved).map(str::to_owned).collect()),
    }
}

/// Refuses a manifest whose version is not newer than the registered one.
fn check_newer(old: &PluginManifest, new: &PluginManifest) -> Result<(), Error> {
    if is_newer(&new.version, &old.version) {
        Ok(())
    } else {
        Err(Error::conflict(
            "version_not_newer",
            format!(
                "version {} is not newer than the registered {}",
                new.version, old.version
            ),
        ))
    }
}

/// Compares versions in semver order: dotted core parts (numbers as numbers, missing parts
/// as 0), then a release is newer than its pre-releases (`2.0.0` > `2.0.0-rc.1`), whose
/// dotted identifiers compare like the core; build metadata (`+...`) is ignored.
fn is_newer(new: &str, old: &str) -> bool {
    version_cmp(new, old) == std::cmp::Ordering::Greater
}

fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let split = |v: &str| -> (Vec<String>, Option<Vec<String>>) {
        let v = v.trim().trim_start_matches(['v', 'V']);
        let v = v.split_once('+').map_or(v, |(v, _build)| v);
        let (core, pre) = match v.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (v, None),
        };
        let parts = |s: &str| s.split('.').map(str::to_owned).collect::<Vec<_>>();
        (parts(core), pre.map(parts))
    };
    let ident = |x: &str, y: &str| match (x.parse::<u64>(), y.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        (Ok(_), Err(_)) => Ordering::Less,
        (Err(_), Ok(_)) => Ordering::Greater,
        (Err(_), Err(_)) => x.cmp(y),
    };
    let ((core_a, pre_a), (core_b, pre_b)) = (split(a), split(b));
    for i in 0..core_a.len().max(core_b.len()) {
        let x = core_a.get(i).map_or("0", String::as_str);
        let y = core_b.get(i).map_or("0", String::as_str);
        match ident(x, y) {
            Ordering::Equal => {}
            other => return other,
        }
    }
    match (pre_a, pre_b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => x
            .iter()
            .zip(&y)
            .map(|(x, y)| ident(x, y))
            .find(|o| *o != Ordering::Equal)
            .unwrap_or_else(|| x.len().cmp(&y.len())),
    }
}

/// Namespaces no external plugin may take: the built-in plugin's id and the first
/// segments of its method ids (`tokens`, `users`, `sigil`, ...).
pub(crate) fn reserved_namespaces(builtin: Option<&PluginManifest>) -> BTreeSet<String> {
    let mut reserved: BTreeSet<String> = builtin
        .map(|b| b.namespaces().into_iter().map(str::to_owned).collect())
        .unwrap_or_default();
    reserved.insert(BUILTIN_PLUGIN.to_owned());
    reserved
}

/// The namespace rule for an external plugin: its id is not a built-in namespace and its
/// method ids start with `<id>.`.
pub(crate) fn check_namespace(
    manifest: &PluginManifest,
    reserved: &BTreeSet<String>,
) -> Result<(), Error> {
    if manifest.id == BUILTIN_PLUGIN {
        return Err(Error::conflict(
            "reserved_plugin",
            "the plugin id 'sigil' is reserved",
        ));
    }
    if reserved.contains(&manifest.id) {
        // The id is taken (by the built-in plugin): a conflict, like 'sigil' itself.
        return Err(Error::conflict(
            "reserved_plugin_id",
            format!(
                "the plugin id '{0}' is a namespace of the built-in plugin (its methods '{0}.*'); choose another id",
                manifest.id
            ),
        ));
    }
    let errors = manifest.namespace_errors();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::invalid_with(
            "method_outside_namespace",
            format!(
                "every method id of plugin '{0}' must start with '{0}.'",
                manifest.id
            ),
            in_field("manifest", errors),
        ))
    }
}

/// Each of `errors` as a problem of `field`.
fn in_field(field: &str, errors: Vec<String>) -> Vec<FieldError> {
    errors
        .into_iter()
        .map(|message| FieldError::new(field, message))
        .collect()
}

/// Compiles the registry from the built-in plugin and the stored plugins, with `change`
/// replacing the stored plugin of its id and visibility (or added).
pub(crate) fn compile_registry(
    builtin: Option<&PluginManifest>,
    stored: &[RegisteredPlugin],
    change: Option<&RegisteredPlugin>,
) -> Result<Snapshot, Vec<String>> {
    let mut plugins: Vec<RegisteredPlugin> = builtin
        .cloned()
        .map(RegisteredPlugin::global)
        .into_iter()
        .chain(
            stored
                .iter()
                .filter(|p| {
                    change.is_none_or(|c| !(p.manifest.id == c.manifest.id && p.tenant == c.tenant))
                })
                .cloned(),
        )
        .collect();
    plugins.extend(change.cloned());
    Snapshot::build(plugins)
}

/// A token or scope set a registry change widened.
#[derive(Clone, Debug)]
pub(crate) struct WidenedItem {
    kind: WidenedKind,
    id: String,
    name: String,
    tenant: Option<TenantId>,
    added: Vec<String>,
    /// Sets: tokens using it, per tenant.
    using: Option<BTreeMap<TenantId, u64>>,
}

impl WidenedItem {
    fn tokens_using(&self, tenant: Option<TenantId>) -> Option<u64> {
        self.using.as_ref().map(|u| match tenant {
            Some(t) => u.get(&t).copied().unwrap_or(0),
            None => u.values().sum(),
        })
    }

    fn dto(&self) -> WidenedDto {
        WidenedDto {
            kind: self.kind,
            id: self.id.clone(),
            name: self.name.clone(),
            tenant_id: self.tenant.map(|t| t.to_string()),
            added_methods: self.added.clone(),
            tokens_using: self.tokens_using(None),
        }
    }

    fn json(&self, tenant: Option<TenantId>) -> serde_json::Value {
        serde_json::json!({
            "kind": self.kind.as_str(),
            "id": self.id,
            "name": self.name,
            "tenant_id": self.tenant.map(|t| t.to_string()),
            "added_methods": self.added,
            "tokens_using": self.tokens_using(tenant),
        })
    }
}

/// What a registry change widened: tokens with their own method lists, tenants' custom
/// sets and predefined sets that grant methods they did not grant before.
#[derive(Clone, Debug, Default)]
pub(crate) struct Widening {
    items: Vec<WidenedItem>,
    /// Per tenant: widened custom sets, and tokens that gain methods.
    tenants: BTreeMap<TenantId, (u64, u64)>,
}

impl Widening {
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn dtos(&self) -> Vec<WidenedDto> {
        self.items
            .iter()
            .take(MAX_WIDENED_LISTED)
            .map(WidenedItem::dto)
            .collect()
    }

    fn tenant_dtos(&self) -> Vec<WidenedTenantDto> {
        self.tenants
            .iter()
            .map(|(t, (sets, tokens))| WidenedTenantDto {
                tenant_id: t.to_string(),
                scope_sets: *sets,
                tokens: *tokens,
            })
            .collect()
    }

    /// For the registration's audit event (`None`: everything) or for the event filed
    /// under one tenant (its items, and the predefined sets its tokens use).
    pub(crate) fn audit_json(&self, tenant: Option<TenantId>) -> serde_json::Value {
        let items: Vec<&WidenedItem> = self
            .items
            .iter()
            .filter(|i| match tenant {
                None => true,
                Some(t) => {
                    i.tenant == Some(t) || (i.tenant.is_none() && i.tokens_using(tenant) > Some(0))
                }
            })
            .collect();
        let mut json = serde_json::json!({
            "widened": items.iter().take(MAX_WIDENED_LISTED).map(|i| i.json(tenant)).collect::<Vec<_>>(),
            "widened_total": items.len(),
        });
        if tenant.is_none() {
            json["widened_tenants"] = serde_json::json!(self
                .tenants
                .iter()
                .map(|(t, (sets, tokens))| serde_json::json!({"tenant_id": t.to_string(), "scope_sets": sets, "tokens": tokens}))
                .collect::<Vec<_>>());
        }
        json
    }

    fn tenants(&self) -> impl Iterator<Item = TenantId> + '_ {
        self.tenants.keys().copied()
    }

    /// A short line for the log.
    pub(crate) fn summary(&self) -> String {
        let ids: Vec<String> = self
            .items
            .iter()
            .take(20)
            .map(|i| format!("{} {}", i.kind.as_str(), i.id))
            .collect();
        format!("{} widened: {}", self.items.len(), ids.join(", "))
    }
}

/// Works out what a change from `before` to `after` widened, for the view of `target`
/// (a tenant's private plugin) or every tenant (a global plugin).
pub(crate) async fn widening(
    state: &AppState,
    before: &Snapshot,
    after: &Snapshot,
    target: Option<TenantId>,
) -> sigil_core::Result<Widening> {
    let diff = RegistryDiff::between(before, after, target.map(|t| t.0));
    let mut out = Widening::default();
    if diff.is_empty() {
        return Ok(out);
    }
    let custom = match target {
        Some(t) => state.sets.list(t, None).await?,
        None => state.sets.list_all().await?,
    };
    let custom: Vec<(CustomSet, Vec<String>)> = custom
        .into_iter()
        .filter_map(|s| {
            let added = diff.added(&s.entries, s.access);
            (!added.is_empty()).then_some((s, added))
        })
        .collect();
    let set_ids: Vec<String> = diff
        .predefined()
        .iter()
        .map(|s| s.id.clone())
        .chain(custom.iter().map(|(s, _)| s.slug.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut using: HashMap<String, BTreeMap<TenantId, u64>> = HashMap::new();
    for (tenant, set, n) in
        sigil_token::widening::count_using_sets(&state.db, target, &set_ids).await?
    {
        using.entry(set).or_default().insert(tenant, n);
    }

    for gain in diff.predefined() {
        let per_tenant = using.get(&gain.id).cloned().unwrap_or_default();
        // A set that did not exist widens only the tokens that already name it.
        if gain.is_new && per_tenant.is_empty() {
            continue;
        }
        for (t, n) in &per_tenant {
            out.tenants.entry(*t).or_default().1 += n;
        }
        out.items.push(WidenedItem {
            kind: WidenedKind::ScopeSet,
            id: gain.id.clone(),
            name: gain.name.clone(),
            tenant: target,
            added: gain.added.clone(),
            using: Some(per_tenant),
        });
    }
    for (set, added) in custom {
        let n = using
            .get(&set.slug)
            .and_then(|u| u.get(&set.tenant))
            .copied()
            .unwrap_or(0);
        let entry = out.tenants.entry(set.tenant).or_default();
        entry.0 += 1;
        entry.1 += n;
        out.items.push(WidenedItem {
            kind: WidenedKind::ScopeSet,
            id: set.slug,
            name: set.name,
            tenant: Some(set.tenant),
            added,
            using: Some(BTreeMap::from([(set.tenant, n)])),
        });
    }
    let new_ids: Vec<&str> = diff.new_method_ids().collect();
    for token in
        sigil_token::widening::tokens_with_custom_methods(&state.db, target, &new_ids).await?
    {
        let mut added = diff.added(&token.methods, None);
        if let Some(ceiling) = &token.ceiling {
            added.retain(|m| ceiling.contains(m));
        }
        if added.is_empty() {
            continue;
        }
        out.tenants.entry(token.tenant).or_default().1 += 1;
        out.items.push(WidenedItem {
            kind: WidenedKind::Token,
            id: token.id.to_string(),
            name: token.name,
            tenant: Some(token.tenant),
            added,
            using: None,
        });
    }
    Ok(out)
}

/// Stores a global plugin read from a `--plugin` file. What it widens is logged and
/// recorded in the audit log, as for a registration through the API.
pub(crate) async fn store_plugin_file(
    state: &AppState,
    manifest: &PluginManifest,
) -> sigil_core::Result<()> {
    let (_, stored) = state.plugins.load_all().await?;
    let builtin = state.builtin.get();
    let change = RegisteredPlugin::global(manifest.clone());
    let before = compile_registry(builtin, &stored, None).ok();
    let after = compile_registry(builtin, &stored, Some(&change)).ok();
    let created = state.plugins.upsert(None, manifest).await?;
    let widened = match (before, after) {
        (Some(before), Some(after)) => widening(state, &before, &after, None).await?,
        _ => Widening::default(),
    };
    if !widened.is_empty() {
        tracing::warn!(
            plugin = %manifest.id,
            version = %manifest.version,
            "plugin file widens existing tokens or scope sets: {}",
            widened.summary()
        );
    }
    let action = if created {
        "plugin.register"
    } else {
        "plugin.update"
    };
    let mut after = serde_json::json!({"version": manifest.version, "methods": manifest.methods.len(), "source": "file"});
    merge(&mut after, widened.audit_json(None));
    let event = |tenant: Option<TenantId>, after: serde_json::Value| sigil_audit::NewEvent {
        tenant,
        actor_label: "operator".to_owned(),
        action: action.to_owned(),
        target_type: "plugin".to_owned(),
        target_id: Some(manifest.id.clone()),
        after: Some(after),
        ..Default::default()
    };
    let mut events = vec![event(None, after)];
    for t in widened.tenants() {
        let mut after = serde_json::json!({"version": manifest.version, "source": "file"});
        merge(&mut after, widened.audit_json(Some(t)));
        events.push(event(Some(t), after));
    }
    for e in events {
        if let Err(err) = state.audit.record(e).await {
            tracing::error!(error = %err, "could not write an audit event");
        }
    }
    Ok(())
}

fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
    if let (Some(a), serde_json::Value::Object(b)) = (into.as_object_mut(), from) {
        a.extend(b);
    }
}

impl RegistryApi {
    /// Who is asking: the operator (global plugins) or a tenant principal.
    fn scope_of(any: AnyCaller) -> (Option<TenantId>, Option<Arc<sigil_token::Principal>>) {
        match any.0 {
            Caller::Operator => (None, None),
            Caller::Tenant(p) => (Some(p.tenant_id), Some(p)),
        }
    }

    async fn registry_changed(&self, tenant: Option<TenantId>) -> ApiResult<()> {
        self.0.reload_registry().await?;
        self.0.changed(Change::Registry { tenant }).await;
        Ok(())
    }

    fn find_visible<'a>(
        snapshot: &'a Snapshot,
        tenant: Option<TenantId>,
        id: &str,
    ) -> Option<&'a RegisteredPlugin> {
        let own = tenant.and_then(|t| {
            snapshot
                .plugin(Some(t.0), id)
                .filter(|p| p.tenant == Some(t.0))
        });
        own.or_else(|| snapshot.plugin(None, id).filter(|p| p.tenant.is_none()))
    }
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Registry")]
impl RegistryApi {
    /// Plugins you can see: global ones and your tenant's own.
    #[oai(path = "/plugins", method = "get", operation_id = "listPlugins")]
    async fn list_plugins(
        &self,
        any: AnyCaller,
        /// Matching items to skip.
        #[oai(validator(minimum(value = "0"), maximum(value = "1000000")))]
        offset: Query<Option<u64>>,
        /// Items per page (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u64>>,
    ) -> ApiResult<PluginListResponse> {
        let page = PageRequest::new(offset.0, limit.0)?;
        let (tenant, _) = Self::scope_of(any);
        let snapshot = self.0.registry.current();
        let items = snapshot
            .plugins()
            .iter()
            .filter(|p| p.tenant.is_none() || p.tenant == tenant.map(|t| t.0))
            .map(|p| plugin_dto(&snapshot, p, None))
            .collect();
        Ok(PluginListResponse::Ok(Json(PluginList::slice(items, page))))
    }

    /// Register or upgrade a plugin (operator: global; tenant admin: private to the tenant).
    /// The plugin owns the namespace of its id: every method id starts with `<id>.`
    /// (`method_outside_namespace`), and the built-in plugin's namespaces (`tokens`,
    /// `users`, ...) are no plugin ids (`reserved_plugin_id`). The answer lists the tokens
    /// and scope sets that grant more after the change (`widened`); so does the audit log.
    /// Send either `manifest`, or `openapi` (an OpenAPI 3.x document) with `id`.
    #[oai(path = "/plugins", method = "post", operation_id = "registerPlugin")]
    async fn register_plugin(
        &self,
        req: &Request,
        any: AnyCaller,
        body: Json<RegisterPluginBody>,
    ) -> ApiResult<RegisterResponse> {
        let (caller_tenant, principal) = Self::scope_of(any);
        let b = body.0;
        let target = match (caller_tenant, b.global) {
            (None, Some(false)) => {
                return Err(Error::forbidden(
                    "tenant_required",
                    "the operator registers global plugins; a tenant's own plugins are registered by its admins",
                )
                .into())
            }
            (None, _) => None,
            (Some(_), Some(true)) => {
                return Err(Error::forbidden(
                    "operator_only",
                    "only the operator registers global plugins",
                )
                .into())
            }
            (Some(t), _) => Some(t),
        };
        let mut manifest: PluginManifest = match (b.manifest, b.openapi) {
            (Some(m), None) => m.into(),
            (None, Some(doc)) => {
                let id = b.id.ok_or_else(|| {
                    Error::invalid_field(
                        "id_required",
                        "id",
                        "give the plugin id for an OpenAPI document",
                    )
                })?;
                PluginManifest::from_openapi(&doc.0, &id, b.name.as_deref(), b.version.as_deref())
                    .map_err(|errors| {
                    Error::invalid_with(
                        "invalid_openapi",
                        "the OpenAPI document cannot be imported",
                        in_field("openapi", errors),
                    )
                })?
            }
            _ => {
                return Err(Error::invalid_field(
                    "manifest_required",
                    "manifest",
                    "give exactly one of manifest or openapi",
                )
                .into())
            }
        };
        manifest.normalize();
        manifest.validate().map_err(|errors| {
            Error::invalid_with(
                "invalid_manifest",
                "the manifest is invalid",
                in_field("manifest", errors),
            )
        })?;
        let builtin = self.0.builtin.get();
        check_namespace(&manifest, &reserved_namespaces(builtin))?;
        let existing = self.0.plugins.get(target, &manifest.id).await?;
        if let Some(old) = &existing {
            if old.manifest == manifest {
                let snapshot = self.0.registry.current();
                let reg = RegisteredPlugin {
                    tenant: target.map(|t| t.0),
                    manifest,
                };
                let dto = plugin_dto(&snapshot, &reg, Some((old.created_at, old.updated_at)));
                return Ok(RegisterResponse::Updated(Json(RegisteredPluginDto {
                    plugin: dto,
                    removed_methods: vec![],
                    widened: vec![],
                    widened_total: 0,
                    widened_tenants: vec![],
                })));
            }
            check_newer(&old.manifest, &manifest)?;
        }
        // Decided again on the stored state under the registry write lock, so that
        // concurrent registrations cannot downgrade a plugin or store conflicting ones.
        // The registry before and after the change, compiled from that same state, tell
        // what the change widens.
        let mut compiled: Option<(Snapshot, Snapshot)> = None;
        let change = RegisteredPlugin {
            tenant: target.map(|t| t.0),
            manifest: manifest.clone(),
        };
        let previous = self
            .0
            .plugins
            .upsert_checked(target, &manifest, |previous, stored| {
                if let Some(old) = previous.filter(|old| old.manifest != manifest) {
                    check_newer(&old.manifest, &manifest)?;
                }
                // The whole registry must still compile with the new plugin (no id or
                // namespace conflicts).
                let after = compile_registry(builtin, stored, Some(&change)).map_err(|errors| {
                    Error::conflict(
                        "registry_conflict",
                        format!(
                            "the plugin conflicts with registered plugins or methods: {}",
                            errors.join("; ")
                        ),
                    )
                })?;
                compiled = compile_registry(builtin, stored, None)
                    .ok()
                    .map(|before| (before, after));
                Ok(())
            })
            .await?;
        let created = previous.is_none();
        let removed_methods: Vec<String> = previous
            .as_ref()
            .map(|old| {
                old.manifest
                    .methods
                    .iter()
                    .filter(|m| !manifest.methods.iter().any(|n| n.id == m.id))
                    .map(|m| m.id.clone())
                    .collect()
            })
            .unwrap_or_default();
        self.registry_changed(target).await?;
        let widened = match &compiled {
            Some((before, after)) => widening(&self.0, before, after, target).await?,
            None => Widening::default(),
        };
        if !widened.is_empty() {
            tracing::warn!(
                plugin = %manifest.id,
                version = %manifest.version,
                "plugin registration widens existing tokens or scope sets: {}",
                widened.summary()
            );
        }
        let snapshot = self.0.registry.current();
        let stored = self.0.plugins.get(target, &manifest.id).await?;
        let reg = RegisteredPlugin {
            tenant: target.map(|t| t.0),
            manifest,
        };
        let dto = plugin_dto(
            &snapshot,
            &reg,
            stored.map(|s| (s.created_at, s.updated_at)),
        );
        let action = if created {
            "plugin.register"
        } else {
            "plugin.update"
        };
        let mut after = serde_json::json!({"version": dto.version, "methods": dto.methods.len()});
        merge(&mut after, widened.audit_json(None));
        self.0
            .audit(
                req,
                principal.as_deref(),
                action,
                "plugin",
                Some(dto.id.clone()),
                previous.map(|o| serde_json::json!({"version": o.manifest.version})),
                Some(after),
            )
            .await;
        // A global plugin: each tenant it widened finds the event in its own log too.
        if target.is_none() {
            for t in widened.tenants() {
                let mut after = serde_json::json!({"version": dto.version});
                merge(&mut after, widened.audit_json(Some(t)));
                self.0
                    .audit_operator(
                        req,
                        t,
                        action,
                        "plugin",
                        Some(dto.id.clone()),
                        None,
                        Some(after),
                    )
                    .await;
            }
        }
        let body = Json(RegisteredPluginDto {
            plugin: dto,
            removed_methods,
            widened: widened.dtos(),
            widened_total: widened.items.len() as u64,
            widened_tenants: widened.tenant_dtos(),
        });
        Ok(if created {
            RegisterResponse::Created(body)
        } else {
            RegisterResponse::Updated(body)
        })
    }

    /// A plugin with its methods and predefined sets.
    #[oai(
        path = "/plugins/:plugin_id",
        method = "get",
        operation_id = "getPlugin"
    )]
    async fn get_plugin(
        &self,
        any: AnyCaller,
        plugin_id: Path<String>,
    ) -> ApiResult<PluginResponse> {
        let (tenant, _) = Self::scope_of(any);
        let snapshot = self.0.registry.current();
        let plugin = Self::find_visible(&snapshot, tenant, &plugin_id.0)
            .ok_or(Error::not_found("plugin"))?;
        let stamps = match self
            .0
            .plugins
            .get(plugin.tenant.map(TenantId), &plugin.manifest.id)
            .await?
        {
            Some(r) => Some((r.created_at, r.updated_at)),
            None => None,
        };
        Ok(PluginResponse::Ok(Json(plugin_dto(
            &snapshot, plugin, stamps,
        ))))
    }

    /// Remove a plugin; tokens whose scope named its methods simply lose them.
    #[oai(
        path = "/plugins/:plugin_id",
        method = "delete",
        operation_id = "deletePlugin"
    )]
    async fn delete_plugin(
        &self,
        req: &Request,
        any: AnyCaller,
        plugin_id: Path<String>,
    ) -> ApiResult<DeletePluginResponse> {
        let (tenant, principal) = Self::scope_of(any);
        if plugin_id.0 == BUILTIN_PLUGIN {
            return Err(Error::conflict(
                "reserved_plugin",
                "the built-in plugin cannot be removed",
            )
            .into());
        }
        let stored = match self.0.plugins.get(tenant, &plugin_id.0).await? {
            Some(stored) => stored,
            // A tenant sees global plugins but may not remove them.
            None if tenant.is_some() && self.0.plugins.get(None, &plugin_id.0).await?.is_some() => {
                return Err(Error::forbidden(
                    "operator_only",
                    "only the operator removes global plugins",
                )
                .into())
            }
            None => return Err(Error::not_found("plugin").into()),
        };
        self.0.plugins.delete(tenant, &plugin_id.0).await?;
        self.registry_changed(tenant).await?;
        let removed: Vec<String> = stored
            .manifest
            .methods
            .iter()
            .map(|m| m.id.clone())
            .collect();
        self.0
            .audit(
                req,
                principal.as_deref(),
                "plugin.delete",
                "plugin",
                Some(plugin_id.0.clone()),
                Some(serde_json::json!({"version": stored.manifest.version})),
                None,
            )
            .await;
        Ok(DeletePluginResponse::Ok(Json(DeletedPluginDto {
            id: plugin_id.0.clone(),
            note: format!(
                "{} methods removed; tokens whose scope named them no longer grant them",
                removed.len()
            ),
            removed_methods: removed,
        })))
    }

    /// Search API methods by id and description, filter by plugin and access.
    #[oai(path = "/methods", method = "get", operation_id = "listMethods")]
    async fn list_methods(
        &self,
        any: AnyCaller,
        q: Query<Option<String>>,
        plugin: Query<Option<String>>,
        access: Query<Option<AccessDto>>,
        /// Matching items to skip.
        #[oai(validator(minimum(value = "0"), maximum(value = "1000000")))]
        offset: Query<Option<u64>>,
        /// Items per page (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u64>>,
    ) -> ApiResult<MethodListResponse> {
        let page = PageRequest::new(offset.0, limit.0)?;
        let (tenant, _) = Self::scope_of(any);
        let snapshot = self.0.registry.current();
        let needle = q.0.unwrap_or_default().to_lowercase();
        let matching: Vec<MethodDto> = snapshot
            .methods_visible(tenant.map(|t| t.0))
            .map(|(_, m)| m)
            .filter(|m| plugin.0.as_deref().is_none_or(|p| m.plugin == p))
            .filter(|m| access.0.is_none_or(|a| Access::from(a) == m.access))
            .filter(|m| {
                needle.is_empty()
                    || m.id.to_lowercase().contains(&needle)
                    || m.description.to_lowercase().contains(&needle)
            })
            .map(method_dto)
            .collect();
        Ok(MethodListResponse::Ok(Json(MethodList::slice(
            matching, page,
        ))))
    }

    /// Predefined and custom scope sets.
    #[oai(path = "/scope-sets", method = "get", operation_id = "listScopeSets")]
    async fn list_scope_sets(
        &self,
        caller: TenantCaller,
        q: Query<Option<String>>,
        kind: Query<Option<SetKind>>,
        /// Matching items to skip.
        #[oai(validator(minimum(value = "0"), maximum(value = "1000000")))]
        offset: Query<Option<u64>>,
        /// Items per page (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u64>>,
    ) -> ApiResult<ScopeSetListResponse> {
        let p = caller.0;
        let page = PageRequest::new(offset.0, limit.0)?;
        let snapshot = self.0.registry.current();
        let needle = q.0.clone().unwrap_or_default().to_lowercase();
        let mut items = Vec::new();
        if kind.0 != Some(SetKind::Custom) {
            items.extend(
                snapshot
                    .predefined_sets(Some(p.tenant_id.0))
                    .filter(|s| {
                        needle.is_empty()
                            || s.id.contains(&needle)
                            || s.name.to_lowercase().contains(&needle)
                    })
                    .map(|s| ScopeSetDto {
                        id: s.id.clone(),
                        name: s.name.clone(),
                        description: s.description.clone(),
                        kind: SetKind::Predefined,
                        plugin: s.plugin.clone(),
                        entries: s.entries.clone(),
                        access: s.access.map(Into::into),
                        method_count: s.methods.len() as u64,
                        methods: None,
                    }),
            );
        }
        if kind.0 != Some(SetKind::Predefined) {
            let custom = self.0.sets.list(p.tenant_id, q.0.as_deref()).await?;
            items.extend(custom.iter().map(|c| custom_dto(&snapshot, c, false)));
        }
        Ok(ScopeSetListResponse::Ok(Json(ScopeSetList::slice(
            items, page,
        ))))
    }

    /// Define a custom scope set (admin).
    #[oai(path = "/scope-sets", method = "post", operation_id = "createScopeSet")]
    async fn create_scope_set(
        &self,
        req: &Request,
        caller: TenantCaller,
        body: Json<CreateScopeSetBody>,
    ) -> ApiResult<ScopeSetCreatedResponse> {
        let p = caller.0;
        let b = body.0;
        let snapshot = self.0.registry.current();
        if snapshot
            .predefined_set(Some(p.tenant_id.0), &b.id)
            .is_some()
        {
            return Err(Error::conflict("scope_set_exists", "a predefined set has this id").into());
        }
        check_entries(&snapshot, p.tenant_id, &b.methods, b.access)?;
        let set = self
            .0
            .sets
            .create(
                p.tenant_id,
                CustomSetInput {
                    slug: b.id,
                    name: b.name,
                    description: b.description.unwrap_or_default(),
                    entries: b.methods,
                    access: b.access.map(Into::into),
                },
            )
            .await?;
        self.registry_changed(Some(p.tenant_id)).await?;
        let dto = custom_dto(&snapshot, &set, true);
        self.0
            .audit(
                req,
                Some(&p),
                "scope_set.create",
                "scope_set",
                Some(set.slug.clone()),
                None,
                Some(serde_json::json!({"name": set.name, "entries": set.entries})),
            )
            .await;
        Ok(ScopeSetCreatedResponse::Created(Json(dto)))
    }

    /// A scope set with its resolved methods.
    #[oai(
        path = "/scope-sets/:set_id",
        method = "get",
        operation_id = "getScopeSet"
    )]
    async fn get_scope_set(
        &self,
        caller: TenantCaller,
        set_id: Path<String>,
    ) -> ApiResult<ScopeSetResponse> {
        let p = caller.0;
        let snapshot = self.0.registry.current();
        if let Some(s) = snapshot.predefined_set(Some(p.tenant_id.0), &set_id.0) {
            return Ok(ScopeSetResponse::Ok(Json(ScopeSetDto {
                id: s.id.clone(),
                name: s.name.clone(),
                description: s.description.clone(),
                kind: SetKind::Predefined,
                plugin: s.plugin.clone(),
                entries: s.entries.clone(),
                access: s.access.map(Into::into),
                method_count: s.methods.len() as u64,
                methods: Some(snapshot.method_ids(&s.methods).map(str::to_owned).collect()),
            })));
        }
        let set = self
            .0
            .sets
            .find(p.tenant_id, &set_id.0)
            .await?
            .ok_or(Error::not_found("scope set"))?;
        Ok(ScopeSetResponse::Ok(Json(custom_dto(
            &snapshot, &set, true,
        ))))
    }

    /// Change a custom scope set (admin); tokens using it change with it.
    #[oai(
        path = "/scope-sets/:set_id",
        method = "patch",
        operation_id = "updateScopeSet"
    )]
    async fn update_scope_set(
        &self,
        req: &Request,
        caller: TenantCaller,
        set_id: Path<String>,
        body: Json<UpdateScopeSetBody>,
    ) -> ApiResult<ScopeSetResponse> {
        let p = caller.0;
        let b = body.0;
        let snapshot = self.0.registry.current();
        let before = self
            .0
            .sets
            .find(p.tenant_id, &set_id.0)
            .await?
            .ok_or(Error::not_found("scope set"))?;
        // Only new entries are checked: kept ones may name methods removed since, which
        // simply grant nothing (as for the tokens using the set).
        if let Some(entries) = &b.methods {
            let access = b.access.map(Access::from).or(before.access);
            check_entries(&snapshot, p.tenant_id, entries, access.map(Into::into))?;
        }
        let set = self
            .0
            .sets
            .update(
                p.tenant_id,
                &set_id.0,
                b.name,
                b.description,
                b.methods,
                b.access.map(|a| Some(a.into())),
            )
            .await?;
        self.registry_changed(Some(p.tenant_id)).await?;
        self.0
            .audit(
                req,
                Some(&p),
                "scope_set.update",
                "scope_set",
                Some(set.slug.clone()),
                Some(serde_json::json!({"name": before.name, "entries": before.entries})),
                Some(serde_json::json!({"name": set.name, "entries": set.entries})),
            )
            .await;
        Ok(ScopeSetResponse::Ok(Json(custom_dto(
            &snapshot, &set, true,
        ))))
    }

    /// Delete a custom scope set (admin); refused while tokens use it unless `force`.
    #[oai(
        path = "/scope-sets/:set_id",
        method = "delete",
        operation_id = "deleteScopeSet"
    )]
    async fn delete_scope_set(
        &self,
        req: &Request,
        caller: TenantCaller,
        set_id: Path<String>,
        force: Query<Option<bool>>,
    ) -> ApiResult<ScopeSetDeletedResponse> {
        let p = caller.0;
        self.0
            .sets
            .find(p.tenant_id, &set_id.0)
            .await?
            .ok_or(Error::not_found("scope set"))?;
        let in_use = self
            .0
            .tokens
            .count_using_set(p.tenant_id, &set_id.0)
            .await?;
        if in_use > 0 && !force.0.unwrap_or(false) {
            return Err(Error::conflict("scope_set_in_use", format!("{in_use} tokens use this set; delete with ?force=true to leave them with no rights from it")).into());
        }
        let set = self.0.sets.delete(p.tenant_id, &set_id.0).await?;
        self.registry_changed(Some(p.tenant_id)).await?;
        self.0
            .audit(
                req,
                Some(&p),
                "scope_set.delete",
                "scope_set",
                Some(set.slug.clone()),
                Some(serde_json::json!({"name": set.name, "entries": set.entries})),
                None,
            )
            .await;
        Ok(ScopeSetDeletedResponse::Deleted)
    }
}

fn check_entries(
    snapshot: &Snapshot,
    tenant: TenantId,
    entries: &[String],
    access: Option<AccessDto>,
) -> Result<(), Error> {
    if entries.len() > MAX_SET_ENTRIES {
        return Err(Error::invalid_field(
            "too_many_methods",
            "methods",
            format!("a custom set has at most {MAX_SET_ENTRIES} entries"),
        ));
    }
    snapshot
        .resolve(Some(tenant.0), entries, access.map(Into::into))
        .map(|_| ())
        .map_err(|unknown| {
            Error::invalid_with(
                "unknown_methods",
                "some entries match no method",
                sigil_token::scope::unknown_entries("methods", entries, unknown),
            )
        })
}

#[cfg(test)]
mod version_tests {
    use super::is_newer;

    #[test]
    fn semver_order() {
        for (new, old) in [
            ("1.10.0", "1.9.0"),
            ("2.0.0", "2.0.0-rc.1"),
            ("2.0.0-rc.1", "2.0.0-beta.10"),
            ("2.0.0-beta.10", "2.0.0-beta.9"),
            ("2.0.0-beta.1", "2.0.0-beta"),
            ("2.0.0-alpha.beta", "2.0.0-alpha.1"),
            ("1.0.1", "1.0"),
            ("v1.2", "1.1.9"),
        ] {
            assert!(is_newer(new, old), "{new} > {old}");
            assert!(!is_newer(old, new), "{old} < {new}");
        }
        for (a, b) in [("1.0", "1.0.0"), ("2.0.0+b1", "2.0.0+b2"), ("8.3", "8.3")] {
            assert!(!is_newer(a, b) && !is_newer(b, a), "{a} = {b}");
        }
    }
}
