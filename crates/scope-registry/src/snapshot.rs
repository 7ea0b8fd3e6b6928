//! The compiled, immutable view of every registered plugin.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Range;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::access::Access;
use crate::bitset::{MethodIdx, MethodSet};
use crate::manifest::PluginManifest;
use crate::pattern::EntryPattern;
use crate::routes::{
    normalize_http_method, parse_template, template_shape, RouteInsertError, RouteTable, Segment,
};

/// Id of the built-in set of every visible read method.
pub const READ_ONLY_SET: &str = "read-only";
/// Id of the built-in set of every visible method.
pub const READ_CHANGE_SET: &str = "read-change";

/// A plugin as registered: global (`tenant == None`) or private to one tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisteredPlugin {
    pub tenant: Option<Uuid>,
    pub manifest: PluginManifest,
}

impl RegisteredPlugin {
    pub fn global(manifest: PluginManifest) -> RegisteredPlugin {
        RegisteredPlugin {
            tenant: None,
            manifest,
        }
    }

    pub fn private(tenant: Uuid, manifest: PluginManifest) -> RegisteredPlugin {
        RegisteredPlugin {
            tenant: Some(tenant),
            manifest,
        }
    }
}

/// A method as compiled into a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodInfo {
    pub id: String,
    /// Id of the plugin that defines the method.
    pub plugin: String,
    /// Owner of the plugin; `None` for global plugins.
    pub tenant: Option<Uuid>,
    /// Uppercase HTTP verb.
    pub http_method: String,
    /// Path template, e.g. `/api/v1/tokens/{token_id}`.
    pub path: String,
    pub access: Access,
    pub description: String,
    pub docs_url: Option<String>,
    /// Credits one call spends (1 unless the manifest says otherwise).
    pub cost: u32,
}

/// A named, precompiled set of methods: a plugin's scope set (id `"{plugin}.{set}"`) or one
/// of the built-ins [`READ_ONLY_SET`] and [`READ_CHANGE_SET`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PredefinedSet {
    pub id: String,
    pub name: String,
    pub description: String,
    /// Defining plugin; `None` for the built-in sets.
    pub plugin: Option<String>,
    /// Owner of the defining plugin; for built-in sets, the tenant they were computed for.
    pub tenant: Option<Uuid>,
    pub entries: Vec<String>,
    pub access: Option<Access>,
    pub methods: MethodSet,
}

/// Everything one tenant (or the global scope) can see.
#[derive(Debug, Clone)]
struct View {
    by_id: HashMap<Box<str>, MethodIdx>,
    /// Namespace (first segment of method ids, or a plugin id) → index of the plugin
    /// owning it.
    namespaces: HashMap<Box<str>, usize>,
    routes: RouteTable,
    /// Plugin scope sets, as indices into `Snapshot::sets`, in registration order.
    sets: Vec<usize>,
    set_by_id: HashMap<Box<str>, usize>,
    /// Its `methods` are every visible read method.
    read_only: PredefinedSet,
    /// Its `methods` are every visible method.
    read_change: PredefinedSet,
}

impl View {
    fn new(tenant: Option<Uuid>, methods: usize) -> View {
        View {
            by_id: HashMap::new(),
            namespaces: HashMap::new(),
            routes: RouteTable::new(),
            sets: Vec::new(),
            set_by_id: HashMap::new(),
            read_only: PredefinedSet {
                id: READ_ONLY_SET.to_string(),
                name: "Read Only".to_string(),
                description: "Every read method".to_string(),
                plugin: None,
                tenant,
                entries: vec!["*".to_string()],
                access: Some(Access::Read),
                methods: MethodSet::with_capacity(methods),
            },
            read_change: PredefinedSet {
                id: READ_CHANGE_SET.to_string(),
                name: "Read & Change".to_string(),
                description: "Every method".to_string(),
                plugin: None,
                tenant,
                entries: vec!["*".to_string()],
                access: None,
                methods: MethodSet::with_capacity(methods),
            },
        }
    }
}

/// Hasher for tenant ids: they are random (v4) or timestamp-plus-random (v7) UUIDs chosen
/// by the server, so folding their bytes is enough and much cheaper than SipHash.
#[derive(Default, Clone, Copy)]
struct UuidHasher(u64);

impl Hasher for UuidHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            for (dst, src) in word.iter_mut().zip(chunk) {
                *dst = *src;
            }
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }

    fn write_usize(&mut self, _len: usize) {}
}

type TenantMap<V> = HashMap<Uuid, V, BuildHasherDefault<UuidHasher>>;

/// An immutable, compiled registry state. Cheap to share behind an `Arc`; see
/// [`crate::Registry`].
#[derive(Debug, Clone)]
pub struct Snapshot {
    version: u64,
    plugins: Vec<RegisteredPlugin>,
    methods: Vec<MethodInfo>,
    sets: Vec<PredefinedSet>,
    global: View,
    tenants: TenantMap<View>,
}

impl Default for Snapshot {
    fn default() -> Snapshot {
        Snapshot::empty()
    }
}

fn plugin_label(tenant: Option<Uuid>, plugin: &str) -> String {
    match tenant {
        Some(t) => format!("plugin '{plugin}' of tenant {t}"),
        None => format!("plugin '{plugin}' (global)"),
    }
}

fn method_label(m: &MethodInfo) -> String {
    format!("method '{}' of {}", m.id, plugin_label(m.tenant, &m.plugin))
}

struct Compiler<'a> {
    plugins: &'a [RegisteredPlugin],
    methods: &'a [MethodInfo],
    templates: &'a [Vec<Segment>],
    ranges: &'a [Range<usize>],
    plugin_sets: &'a [Vec<usize>],
    sets: &'a [PredefinedSet],
}

impl Compiler<'_> {
    /// A plugin owns its id and the first segments of its method ids; within one view no
    /// two plugins share a namespace, so a scope entry whose first segment is literal
    /// (`users.*`) always stays inside one plugin.
    fn claim_namespaces(&self, view: &mut View, plugin: usize, errors: &mut Vec<String>) {
        let Some(p) = self.plugins.get(plugin) else {
            return;
        };
        let mut spaces = p.manifest.namespaces();
        spaces.insert(p.manifest.id.as_str());
        for space in spaces {
            match view.namespaces.entry(space.into()) {
                Entry::Occupied(e) => {
                    let owner = *e.get();
                    if owner == plugin {
                        continue;
                    }
                    if let Some(other) = self.plugins.get(owner) {
                        errors.push(format!(
                            "{}: namespace '{space}' belongs to {}",
                            plugin_label(p.tenant, &p.manifest.id),
                            plugin_label(other.tenant, &other.manifest.id)
                        ));
                    }
                }
                Entry::Vacant(e) => {
                    e.insert(plugin);
                }
            }
        }
    }

    fn add_plugin(&self, view: &mut View, plugin: usize, errors: &mut Vec<String>) {
        self.claim_namespaces(view, plugin, errors);
        let range = self.ranges.get(plugin).cloned().unwrap_or_default();
        for mi in range {
            let (Some(m), Some(template)) = (self.methods.get(mi), self.templates.get(mi)) else {
                continue;
            };
            let idx = MethodIdx(mi as u32);
            match view.by_id.entry(m.id.as_str().into()) {
                Entry::Occupied(e) => {
                    if let Some(other) = self.methods.get(e.get().index()) {
                        errors.push(format!(
                            "{}: id conflicts with {}",
                            method_label(m),
                            method_label(other)
                        ));
                    }
                    continue;
                }
                Entry::Vacant(e) => {
                    e.insert(idx);
                }
            }
            if let Err(RouteInsertError::Conflict(other)) =
                view.routes.insert(&m.http_method, template, idx)
            {
                if let Some(other) = self.methods.get(other.index()) {
                    errors.push(format!(
                        "{}: route {} {} conflicts with {}",
                        method_label(m),
                        m.http_method,
                        template_shape(template),
                        method_label(other)
                    ));
                }
            }
            view.read_change.methods.insert(idx);
            if m.access == Access::Read {
                view.read_only.methods.insert(idx);
            }
        }
        for &si in self.plugin_sets.get(plugin).into_iter().flatten() {
            if let Some(set) = self.sets.get(si) {
                view.set_by_id.insert(set.id.as_str().into(), si);
                view.sets.push(si);
            }
        }
    }
}

impl Snapshot {
    /// A snapshot without plugins (version 0).
    pub fn empty() -> Snapshot {
        Snapshot::compile(Vec::new(), 0).0
    }

    /// Compiles plugins into a snapshot with version 0.
    pub fn build(plugins: Vec<RegisteredPlugin>) -> Result<Snapshot, Vec<String>> {
        Snapshot::build_with_version(plugins, 0)
    }

    /// Compiles plugins into a snapshot. Fails with every problem found: invalid manifests,
    /// plugin ids registered twice in one visibility scope, method ids or routes that a
    /// tenant would see twice (a tenant-private plugin may not redefine a global method),
    /// and namespaces (plugin ids and first segments of method ids) that two plugins of
    /// one view would share.
    pub fn build_with_version(
        plugins: Vec<RegisteredPlugin>,
        version: u64,
    ) -> Result<Snapshot, Vec<String>> {
        let (snapshot, errors) = Snapshot::compile(plugins, version);
        if errors.is_empty() {
            tracing::debug!(
                version,
                plugins = snapshot.plugins.len(),
                methods = snapshot.methods.len(),
                tenants = snapshot.tenants.len(),
                "compiled scope registry snapshot"
            );
            Ok(snapshot)
        } else {
            Err(errors)
        }
    }

    fn compile(plugins: Vec<RegisteredPlugin>, version: u64) -> (Snapshot, Vec<String>) {
        let mut errors = Vec::new();
        let mut usable = vec![true; plugins.len()];

        for (i, p) in plugins.iter().enumerate() {
            if let Err(problems) = p.manifest.validate() {
                let label = plugin_label(p.tenant, &p.manifest.id);
                errors.extend(problems.into_iter().map(|e| format!("{label}: {e}")));
                usable[i] = false;
            }
        }

        let mut global_ids: HashMap<&str, usize> = HashMap::new();
        let mut tenant_ids: HashMap<(Uuid, &str), usize> = HashMap::new();
        let mut by_tenant: BTreeMap<Uuid, Vec<usize>> = BTreeMap::new();
        let mut global_plugins = Vec::new();
        for (i, p) in plugins.iter().enumerate() {
            if !usable[i] || p.tenant.is_some() {
                continue;
            }
            if global_ids.insert(&p.manifest.id, i).is_some() {
                errors.push(format!(
                    "{}: registered more than once",
                    plugin_label(None, &p.manifest.id)
                ));
                usable[i] = false;
            } else {
                global_plugins.push(i);
            }
        }
        for (i, p) in plugins.iter().enumerate() {
            let Some(tenant) = p.tenant else { continue };
            if !usable[i] {
                continue;
            }
            let label = plugin_label(p.tenant, &p.manifest.id);
            if global_ids.contains_key(p.manifest.id.as_str()) {
                errors.push(format!("{label}: id is already used by a global plugin"));
                usable[i] = false;
            } else if tenant_ids.insert((tenant, &p.manifest.id), i).is_some() {
                errors.push(format!("{label}: registered more than once"));
                usable[i] = false;
            } else {
                by_tenant.entry(tenant).or_default().push(i);
            }
        }

        let mut methods = Vec::new();
        let mut templates = Vec::new();
        let mut ranges = vec![0..0; plugins.len()];
        for (i, p) in plugins.iter().enumerate() {
            if !usable[i] {
                continue;
            }
            let start = methods.len();
            for m in &p.manifest.methods {
                templates.push(parse_template(&m.http.path).unwrap_or_default());
                methods.push(MethodInfo {
                    id: m.id.clone(),
                    plugin: p.manifest.id.clone(),
                    tenant: p.tenant,
                    http_method: normalize_http_method(&m.http.method)
                        .unwrap_or_default()
                        .to_string(),
                    path: m.http.path.clone(),
                    access: m.access,
                    description: m.description.clone(),
                    docs_url: m.docs_url.clone(),
                    cost: m.cost,
                });
            }
            ranges[i] = start..methods.len();
        }
        if u32::try_from(methods.len()).is_err() {
            errors.push(format!("too many methods: {}", methods.len()));
            methods.clear();
            templates.clear();
            ranges.iter_mut().for_each(|r| *r = 0..0);
        }

        let mut sets = Vec::new();
        let mut plugin_sets = vec![Vec::new(); plugins.len()];
        for (i, p) in plugins.iter().enumerate() {
            if !usable[i] {
                continue;
            }
            let range = ranges[i].clone();
            for s in &p.manifest.scope_sets {
                let patterns: Vec<EntryPattern> = s
                    .methods
                    .iter()
                    .filter_map(|e| EntryPattern::parse(e).ok())
                    .collect();
                let mut set = MethodSet::with_capacity(methods.len());
                for mi in range.clone() {
                    let Some(m) = methods.get(mi) else { continue };
                    if (s.access != Some(Access::Read) || m.access == Access::Read)
                        && patterns.iter().any(|p| p.matches(&m.id))
                    {
                        set.insert(MethodIdx(mi as u32));
                    }
                }
                plugin_sets[i].push(sets.len());
                sets.push(PredefinedSet {
                    id: format!("{}.{}", p.manifest.id, s.id),
                    name: s.name.clone(),
                    description: s.description.clone(),
                    plugin: Some(p.manifest.id.clone()),
                    tenant: p.tenant,
                    entries: s.methods.clone(),
                    access: s.access,
                    methods: set,
                });
            }
        }

        let compiler = Compiler {
            plugins: &plugins,
            methods: &methods,
            templates: &templates,
            ranges: &ranges,
            plugin_sets: &plugin_sets,
            sets: &sets,
        };
        let mut global = View::new(None, methods.len());
        for &pi in &global_plugins {
            compiler.add_plugin(&mut global, pi, &mut errors);
        }
        let mut tenants = TenantMap::with_capacity_and_hasher(by_tenant.len(), Default::default());
        for (tenant, own) in &by_tenant {
            let mut view = global.clone();
            view.read_only.tenant = Some(*tenant);
            view.read_change.tenant = Some(*tenant);
            for &pi in own {
                compiler.add_plugin(&mut view, pi, &mut errors);
            }
            tenants.insert(*tenant, view);
        }

        let snapshot = Snapshot {
            version,
            plugins,
            methods,
            sets,
            global,
            tenants,
        };
        (snapshot, errors)
    }

    fn view(&self, tenant: Option<Uuid>) -> &View {
        match tenant {
            Some(t) => self.tenants.get(&t).unwrap_or(&self.global),
            None => &self.global,
        }
    }

    /// The version counter this snapshot was built with.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The plugins this snapshot was built from, in registration order.
    pub fn plugins(&self) -> &[RegisteredPlugin] {
        &self.plugins
    }

    /// A plugin visible to `tenant` (global, or private to that tenant).
    pub fn plugin(&self, tenant: Option<Uuid>, plugin_id: &str) -> Option<&RegisteredPlugin> {
        self.plugins
            .iter()
            .find(|p| p.manifest.id == plugin_id && (p.tenant.is_none() || p.tenant == tenant))
    }

    /// Number of methods over all tenants (the size of the method index).
    pub fn method_count(&self) -> usize {
        self.methods.len()
    }

    /// The method at `idx`.
    ///
    /// # Panics
    /// If `idx` does not come from this snapshot; use [`Snapshot::get_method`] otherwise.
    pub fn method(&self, idx: MethodIdx) -> &MethodInfo {
        &self.methods[idx.index()]
    }

    /// The method at `idx`, if the index is in range.
    pub fn get_method(&self, idx: MethodIdx) -> Option<&MethodInfo> {
        self.methods.get(idx.index())
    }

    /// Finds a method by id among those visible to `tenant`.
    pub fn lookup(&self, tenant: Option<Uuid>, method_id: &str) -> Option<MethodIdx> {
        self.view(tenant).by_id.get(method_id).copied()
    }

    /// Whether `tenant` can see the method.
    pub fn is_visible(&self, tenant: Option<Uuid>, idx: MethodIdx) -> bool {
        self.view(tenant).read_change.methods.contains(idx)
    }

    /// Every method `tenant` can see, in index order.
    pub fn methods_visible(
        &self,
        tenant: Option<Uuid>,
    ) -> impl Iterator<Item = (MethodIdx, &MethodInfo)> + '_ {
        self.view(tenant)
            .read_change
            .methods
            .iter()
            .filter_map(|idx| self.methods.get(idx.index()).map(|m| (idx, m)))
    }

    /// The set of every method `tenant` can see.
    pub fn visible(&self, tenant: Option<Uuid>) -> &MethodSet {
        &self.view(tenant).read_change.methods
    }

    /// Method ids of a set, in index order.
    pub fn method_ids<'a>(&'a self, set: &'a MethodSet) -> impl Iterator<Item = &'a str> + 'a {
        set.iter()
            .filter_map(|idx| self.methods.get(idx.index()).map(|m| m.id.as_str()))
    }

    /// Resolves scope entries (exact method ids or globs such as `platform.environment.*`
    /// or `*`) against the methods visible to `tenant`. With `access == Some(Read)` only
    /// read methods are kept. Fails with the entries (as given) that match no visible
    /// method or are not valid patterns.
    pub fn resolve(
        &self,
        tenant: Option<Uuid>,
        entries: &[String],
        access: Option<Access>,
    ) -> Result<MethodSet, Vec<String>> {
        let (set, unknown) = self.resolve_inner(tenant, entries, access);
        if unknown.is_empty() {
            Ok(set)
        } else {
            Err(unknown)
        }
    }

    /// Like [`Snapshot::resolve`] but ignores entries that match nothing, e.g. methods
    /// removed since a token was issued.
    pub fn resolve_lenient(
        &self,
        tenant: Option<Uuid>,
        entries: &[String],
        access: Option<Access>,
    ) -> MethodSet {
        self.resolve_inner(tenant, entries, access).0
    }

    fn resolve_inner(
        &self,
        tenant: Option<Uuid>,
        entries: &[String],
        access: Option<Access>,
    ) -> (MethodSet, Vec<String>) {
        let view = self.view(tenant);
        let visible = &view.read_change.methods;
        let mut out = MethodSet::with_capacity(self.methods.len());
        let mut unknown = Vec::new();
        for entry in entries {
            let matched = match EntryPattern::parse(entry) {
                Ok(EntryPattern::Exact(id)) => match view.by_id.get(id.as_str()) {
                    Some(&idx) => {
                        out.insert(idx);
                        true
                    }
                    None => false,
                },
                Ok(pattern) if pattern.is_match_all() => {
                    out.union_with(visible);
                    !visible.is_empty()
                }
                Ok(pattern) => {
                    let mut hit = false;
                    for idx in visible {
                        if self
                            .methods
                            .get(idx.index())
                            .is_some_and(|m| pattern.matches(&m.id))
                        {
                            out.insert(idx);
                            hit = true;
                        }
                    }
                    hit
                }
                Err(_) => false,
            };
            if !matched {
                unknown.push(entry.clone());
            }
        }
        if access == Some(Access::Read) {
            out.intersect_with(&view.read_only.methods);
        }
        (out, unknown)
    }

    /// A predefined set visible to `tenant`: `"{plugin}.{set}"`, `read-only` or
    /// `read-change`.
    pub fn predefined_set(&self, tenant: Option<Uuid>, id: &str) -> Option<&PredefinedSet> {
        let view = self.view(tenant);
        match id {
            READ_ONLY_SET => Some(&view.read_only),
            READ_CHANGE_SET => Some(&view.read_change),
            _ => view.set_by_id.get(id).and_then(|&i| self.sets.get(i)),
        }
    }

    /// Every predefined set visible to `tenant`: the two built-ins first, then plugin sets
    /// in registration order.
    pub fn predefined_sets(
        &self,
        tenant: Option<Uuid>,
    ) -> impl Iterator<Item = &PredefinedSet> + '_ {
        let view = self.view(tenant);
        [&view.read_only, &view.read_change]
            .into_iter()
            .chain(view.sets.iter().filter_map(|&i| self.sets.get(i)))
    }

    /// The built-in set of every read method visible to `tenant`.
    pub fn read_only(&self, tenant: Option<Uuid>) -> &PredefinedSet {
        &self.view(tenant).read_only
    }

    /// The built-in set of every method visible to `tenant`.
    pub fn read_change(&self, tenant: Option<Uuid>) -> &PredefinedSet {
        &self.view(tenant).read_change
    }

    /// The method a request addresses, among those visible to `tenant`. The query string
    /// and a trailing slash are ignored; `HEAD` falls back to `GET` routes.
    pub fn route(&self, tenant: Option<Uuid>, http_method: &str, path: &str) -> Option<MethodIdx> {
        self.view(tenant).routes.route(http_method, path)
    }
}

#[cfg(test)]
#[path = "snapshot_tests.rs"]
mod tests;
