//! The registry's request and response shapes, each declared once, and their mapping
//! from and to the registry's own types.

use chrono::{DateTime, Utc};
use poem_openapi::{Enum, Object};
use sigil_scope_registry::{
    Access, HttpRoute, ManifestMethod, ManifestScopeSet, MethodInfo, PluginManifest, PluginView,
    Registered, ScopeSetKind, ScopeSetView, TenantWidening, WidenedItem,
};

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
    /// Credits one call spends from a token that has credits (default 1).
    #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
    pub cost: Option<u32>,
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

impl From<ManifestMethodDto> for ManifestMethod {
    fn from(m: ManifestMethodDto) -> Self {
        ManifestMethod {
            id: m.id,
            http: HttpRoute::new(&m.http.method, &m.http.path),
            access: m.access.into(),
            description: m.description.unwrap_or_default(),
            docs_url: m.docs_url,
            cost: m.cost.unwrap_or(1),
        }
    }
}

impl From<ManifestScopeSetDto> for ManifestScopeSet {
    fn from(s: ManifestScopeSetDto) -> Self {
        ManifestScopeSet {
            id: s.id,
            name: s.name,
            description: s.description.unwrap_or_default(),
            methods: s.methods,
            access: s.access.map(Into::into),
        }
    }
}

impl From<ManifestDto> for PluginManifest {
    fn from(m: ManifestDto) -> Self {
        PluginManifest {
            id: m.id,
            name: m.name,
            version: m.version,
            description: m.description,
            docs_url: m.docs_url,
            methods: m.methods.into_iter().map(Into::into).collect(),
            scope_sets: m
                .scope_sets
                .unwrap_or_default()
                .into_iter()
                .map(Into::into)
                .collect(),
        }
    }
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
    /// Credits one call spends from a token that has credits.
    pub cost: u32,
}

impl From<&MethodInfo> for MethodDto {
    fn from(m: &MethodInfo) -> Self {
        MethodDto {
            id: m.id.clone(),
            plugin: m.plugin.clone(),
            http_method: m.http_method.clone(),
            path: m.path.clone(),
            access: m.access.into(),
            description: m.description.clone(),
            docs_url: m.docs_url.clone(),
            cost: m.cost,
        }
    }
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

impl From<PluginView> for PluginDto {
    fn from(v: PluginView) -> Self {
        let m = v.manifest();
        PluginDto {
            id: m.id.clone(),
            name: m.name.clone(),
            version: m.version.clone(),
            description: m.description.clone(),
            visibility: if v.is_global() { "global" } else { "tenant" }.into(),
            built_in: v.is_built_in(),
            methods: v.methods.iter().map(MethodDto::from).collect(),
            scope_sets: v.scope_set_ids().collect(),
            created_at: v.created_at,
            updated_at: v.updated_at,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum WidenedKind {
    /// A token with its own method list.
    Token,
    /// A predefined or custom scope set; the tokens using it gain the methods too.
    ScopeSet,
}

impl From<sigil_scope_registry::WidenedKind> for WidenedKind {
    fn from(k: sigil_scope_registry::WidenedKind) -> Self {
        match k {
            sigil_scope_registry::WidenedKind::Token => WidenedKind::Token,
            sigil_scope_registry::WidenedKind::ScopeSet => WidenedKind::ScopeSet,
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

impl From<&WidenedItem> for WidenedDto {
    fn from(i: &WidenedItem) -> Self {
        WidenedDto {
            kind: i.kind.into(),
            id: i.id.clone(),
            name: i.name.clone(),
            tenant_id: i.tenant.map(|t| t.to_string()),
            added_methods: i.added.clone(),
            tokens_using: i.tokens_using(None),
        }
    }
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

impl From<TenantWidening> for WidenedTenantDto {
    fn from(w: TenantWidening) -> Self {
        WidenedTenantDto {
            tenant_id: w.tenant.to_string(),
            scope_sets: w.scope_sets,
            tokens: w.tokens,
        }
    }
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

impl From<Registered> for RegisteredPluginDto {
    fn from(r: Registered) -> Self {
        RegisteredPluginDto {
            widened: r.widened.listed().map(WidenedDto::from).collect(),
            widened_total: r.widened.total() as u64,
            widened_tenants: r.widened.per_tenant().map(Into::into).collect(),
            plugin: r.plugin.into(),
            removed_methods: r.removed_methods,
        }
    }
}

#[derive(Object)]
pub struct DeletedPluginDto {
    pub id: String,
    pub removed_methods: Vec<String>,
    pub note: String,
}

crate::api::dto::list_envelope!(
    /// One page of API methods.
    MethodList,
    MethodDto
);

crate::api::dto::list_envelope!(
    /// One page of plugins.
    PluginList,
    PluginDto
);

crate::api::dto::list_envelope!(
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

impl From<SetKind> for ScopeSetKind {
    fn from(k: SetKind) -> Self {
        match k {
            SetKind::Predefined => ScopeSetKind::Predefined,
            SetKind::Custom => ScopeSetKind::Custom,
        }
    }
}

impl From<ScopeSetKind> for SetKind {
    fn from(k: ScopeSetKind) -> Self {
        match k {
            ScopeSetKind::Predefined => SetKind::Predefined,
            ScopeSetKind::Custom => SetKind::Custom,
        }
    }
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

impl ScopeSetDto {
    /// The set, with its resolved method ids when `with_methods`.
    pub fn of(s: ScopeSetView, with_methods: bool) -> Self {
        ScopeSetDto {
            method_count: s.method_count() as u64,
            methods: with_methods.then(|| s.method_ids()),
            id: s.id,
            name: s.name,
            description: s.description,
            kind: s.kind.into(),
            plugin: s.plugin,
            entries: s.entries,
            access: s.access.map(Into::into),
        }
    }
}
