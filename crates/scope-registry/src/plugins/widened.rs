//! What a plugin registration widened: tokens with their own method lists, tenants'
//! custom sets and predefined sets that grant methods they did not grant before. The
//! registration reports them (in its answer, its audit events and the log) instead of
//! widening scopes silently.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sea_orm::DatabaseTransaction;
use sigil_core::{Result, TenantId};

use crate::service::RegistryService;
use crate::snapshot::Snapshot;
use crate::store::{sets, CustomSet};
use crate::token_scopes::CustomScopeToken;
use crate::widening::RegistryDiff;

/// Most widened tokens and sets listed in a registration answer or audit event; the
/// totals count them all.
pub const MAX_WIDENED_LISTED: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WidenedKind {
    /// A token with its own method list.
    Token,
    /// A predefined or custom scope set; the tokens using it gain the methods too.
    ScopeSet,
}

impl WidenedKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WidenedKind::Token => "token",
            WidenedKind::ScopeSet => "scope_set",
        }
    }
}

/// A token or scope set a registry change widened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WidenedItem {
    pub kind: WidenedKind,
    /// Token id, or scope set id.
    pub id: String,
    pub name: String,
    /// Tenant of the token, custom set or tenant-private plugin set; `None` for a set of
    /// a global plugin (or a built-in set), which every tenant sees alike.
    pub tenant: Option<TenantId>,
    /// Method ids it grants now and did not before.
    pub added: Vec<String>,
    /// Sets: tokens using it, per tenant.
    using: Option<BTreeMap<TenantId, u64>>,
}

impl WidenedItem {
    /// For a set: live tokens without a creator ceiling that use it, in `tenant` (`None`:
    /// in every tenant).
    pub fn tokens_using(&self, tenant: Option<TenantId>) -> Option<u64> {
        self.using.as_ref().map(|u| match tenant {
            Some(t) => u.get(&t).copied().unwrap_or(0),
            None => u.values().sum(),
        })
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

/// What a registration widened in one tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TenantWidening {
    pub tenant: TenantId,
    /// Custom scope sets that grant more.
    pub scope_sets: u64,
    /// Tokens that grant more: by their own method list or by a widened set.
    pub tokens: u64,
}

/// Everything a registry change widened.
#[derive(Clone, Debug, Default)]
pub struct Widening {
    items: Vec<WidenedItem>,
    /// Per tenant: widened custom sets, and tokens that gain methods.
    tenants: BTreeMap<TenantId, (u64, u64)>,
}

impl Widening {
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// How many tokens and sets widened.
    pub fn total(&self) -> usize {
        self.items.len()
    }

    /// The widened tokens and sets, at most [`MAX_WIDENED_LISTED`].
    pub fn listed(&self) -> impl Iterator<Item = &WidenedItem> + '_ {
        self.items.iter().take(MAX_WIDENED_LISTED)
    }

    /// The widened custom sets and tokens counted per tenant, by tenant.
    pub fn per_tenant(&self) -> impl Iterator<Item = TenantWidening> + '_ {
        self.tenants
            .iter()
            .map(|(t, (sets, tokens))| TenantWidening {
                tenant: *t,
                scope_sets: *sets,
                tokens: *tokens,
            })
    }

    /// The tenants where something widened.
    pub fn tenants(&self) -> impl Iterator<Item = TenantId> + '_ {
        self.tenants.keys().copied()
    }

    /// For the registration's audit event (`None`: everything) or for the event filed
    /// under one tenant (its items, and the predefined sets its tokens use).
    pub fn audit_json(&self, tenant: Option<TenantId>) -> serde_json::Value {
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
                .per_tenant()
                .map(|w| serde_json::json!({"tenant_id": w.tenant.to_string(), "scope_sets": w.scope_sets, "tokens": w.tokens}))
                .collect::<Vec<_>>());
        }
        json
    }

    /// A short line for the log.
    pub fn summary(&self) -> String {
        let ids: Vec<String> = self
            .items
            .iter()
            .take(20)
            .map(|i| format!("{} {}", i.kind.as_str(), i.id))
            .collect();
        format!("{} widened: {}", self.items.len(), ids.join(", "))
    }

    /// Adds the predefined sets that gained methods. A set that did not exist widens only
    /// the tokens that already name it.
    fn add_predefined(
        &mut self,
        diff: &RegistryDiff,
        target: Option<TenantId>,
        using: &HashMap<String, BTreeMap<TenantId, u64>>,
    ) {
        for gain in diff.predefined() {
            let per_tenant = using.get(&gain.id).cloned().unwrap_or_default();
            if gain.is_new && per_tenant.is_empty() {
                continue;
            }
            for (t, n) in &per_tenant {
                self.tenants.entry(*t).or_default().1 += n;
            }
            self.items.push(WidenedItem {
                kind: WidenedKind::ScopeSet,
                id: gain.id.clone(),
                name: gain.name.clone(),
                tenant: target,
                added: gain.added.clone(),
                using: Some(per_tenant),
            });
        }
    }

    /// Adds the custom sets that gained methods, with the tokens of their tenant using
    /// them.
    fn add_custom(
        &mut self,
        custom: Vec<(CustomSet, Vec<String>)>,
        using: &HashMap<String, BTreeMap<TenantId, u64>>,
    ) {
        for (set, added) in custom {
            let n = using
                .get(&set.slug)
                .and_then(|u| u.get(&set.tenant))
                .copied()
                .unwrap_or(0);
            let entry = self.tenants.entry(set.tenant).or_default();
            entry.0 += 1;
            entry.1 += n;
            self.items.push(WidenedItem {
                kind: WidenedKind::ScopeSet,
                id: set.slug,
                name: set.name,
                tenant: Some(set.tenant),
                added,
                using: Some(BTreeMap::from([(set.tenant, n)])),
            });
        }
    }

    /// Adds the tokens whose own method list gains methods (within their ceiling).
    fn add_tokens(&mut self, diff: &RegistryDiff, tokens: Vec<CustomScopeToken>) {
        for token in tokens {
            let mut added = diff.added(&token.methods, None);
            if let Some(ceiling) = &token.ceiling {
                added.retain(|m| ceiling.contains(m));
            }
            if added.is_empty() {
                continue;
            }
            self.tenants.entry(token.tenant).or_default().1 += 1;
            self.items.push(WidenedItem {
                kind: WidenedKind::Token,
                id: token.id.to_string(),
                name: token.name,
                tenant: Some(token.tenant),
                added,
                using: None,
            });
        }
    }
}

/// Custom sets that gain methods, with the methods each gains.
fn widened_custom(diff: &RegistryDiff, custom: Vec<CustomSet>) -> Vec<(CustomSet, Vec<String>)> {
    custom
        .into_iter()
        .filter_map(|s| {
            let added = diff.added(&s.entries, s.access);
            (!added.is_empty()).then_some((s, added))
        })
        .collect()
}

/// The sets whose users are counted: predefined sets that gained methods and the widened
/// custom sets, once each, sorted.
fn counted_sets(diff: &RegistryDiff, custom: &[(CustomSet, Vec<String>)]) -> Vec<String> {
    diff.predefined()
        .iter()
        .map(|s| s.id.clone())
        .chain(custom.iter().map(|(s, _)| s.slug.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Users per set and tenant from `(tenant, set, tokens)` rows.
fn by_set(rows: Vec<(TenantId, String, u64)>) -> HashMap<String, BTreeMap<TenantId, u64>> {
    let mut using: HashMap<String, BTreeMap<TenantId, u64>> = HashMap::new();
    for (tenant, set, n) in rows {
        using.entry(set).or_default().insert(tenant, n);
    }
    using
}

impl RegistryService {
    /// Works out what a change from `before` to `after` widened, for the view of `target`
    /// (a tenant's private plugin) or every tenant (a global plugin), reading the sets and
    /// tokens in `txn`, the change's transaction.
    pub(crate) async fn widening(
        &self,
        txn: &DatabaseTransaction,
        before: &Snapshot,
        after: &Snapshot,
        target: Option<TenantId>,
    ) -> Result<Widening> {
        let diff = RegistryDiff::between(before, after, target.map(|t| t.0));
        let mut out = Widening::default();
        if diff.is_empty() {
            return Ok(out);
        }
        let custom = match target {
            Some(t) => sets::list(txn, t, None).await?,
            None => sets::list_all(txn).await?,
        };
        let custom = widened_custom(&diff, custom);
        let using = by_set(
            self.tokens
                .count_using_sets(txn, target, &counted_sets(&diff, &custom))
                .await?,
        );
        out.add_predefined(&diff, target, &using);
        out.add_custom(custom, &using);
        let new_ids: Vec<&str> = diff.new_method_ids().collect();
        out.add_tokens(
            &diff,
            self.tokens
                .with_custom_methods(txn, target, &new_ids)
                .await?,
        );
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Access;
    use crate::manifest::{ManifestScopeSet, PluginManifest};
    use crate::plugins::test_support::manifest;
    use crate::snapshot::RegisteredPlugin;
    use sigil_core::{ScopeSetId, TokenId};

    fn crm(version: &str, methods: &[&str]) -> PluginManifest {
        let mut m = manifest("crm", version, methods);
        m.scope_sets = vec![ManifestScopeSet {
            id: "all".into(),
            name: "Everything".into(),
            description: String::new(),
            methods: vec!["crm.*".into()],
            access: None,
        }];
        m
    }

    fn diff() -> RegistryDiff {
        let before = Snapshot::build(vec![RegisteredPlugin::global(crm("1", &["crm.a"]))]).unwrap();
        let after = Snapshot::build(vec![RegisteredPlugin::global(crm(
            "2",
            &["crm.a", "crm.b"],
        ))])
        .unwrap();
        RegistryDiff::between(&before, &after, None)
    }

    fn tenant(n: u128) -> TenantId {
        TenantId(uuid::Uuid::from_u128(n))
    }

    fn custom_set(tenant: TenantId, slug: &str, entries: &[&str]) -> CustomSet {
        CustomSet {
            id: ScopeSetId::new(),
            tenant,
            slug: slug.into(),
            name: slug.to_uppercase(),
            description: String::new(),
            entries: entries.iter().map(|e| (*e).to_owned()).collect(),
            access: None,
            created_at: sigil_core::now(),
            updated_at: sigil_core::now(),
        }
    }

    fn token(tenant: TenantId, methods: &[&str], ceiling: Option<&[&str]>) -> CustomScopeToken {
        CustomScopeToken {
            id: TokenId(uuid::Uuid::now_v7()),
            tenant,
            name: "t".into(),
            methods: methods.iter().map(|e| (*e).to_owned()).collect(),
            ceiling: ceiling.map(|c| c.iter().map(|e| (*e).to_owned()).collect()),
        }
    }

    #[test]
    fn only_custom_sets_that_gain_are_kept_and_counted_once() {
        let diff = diff();
        let (a, b) = (tenant(1), tenant(2));
        let custom = widened_custom(
            &diff,
            vec![
                custom_set(a, "wide", &["crm.*"]),
                custom_set(b, "exact", &["crm.a"]),
                custom_set(b, "wide", &["*"]),
            ],
        );
        let slugs: Vec<(&str, &[String])> = custom
            .iter()
            .map(|(s, added)| (s.slug.as_str(), added.as_slice()))
            .collect();
        assert_eq!(slugs.len(), 2);
        assert!(slugs
            .iter()
            .all(|(s, added)| *s == "wide" && *added == ["crm.b"]));
        assert_eq!(
            counted_sets(&diff, &custom),
            ["crm.all", "read-change", "read-only", "wide"]
        );
    }

    #[test]
    fn sets_and_tokens_are_counted_per_tenant() {
        let diff = diff();
        let (a, b) = (tenant(1), tenant(2));
        let custom = widened_custom(&diff, vec![custom_set(a, "wide", &["crm.*"])]);
        let using = by_set(vec![
            (a, "crm.all".into(), 3),
            (b, "crm.all".into(), 1),
            (a, "wide".into(), 2),
        ]);
        let mut w = Widening::default();
        w.add_predefined(&diff, None, &using);
        w.add_custom(custom, &using);
        w.add_tokens(
            &diff,
            vec![
                token(b, &["crm.*"], None),
                // Its ceiling keeps it from gaining anything.
                token(a, &["crm.*"], Some(&["crm.a"])),
                token(a, &["crm.a"], None),
            ],
        );
        let kinds: Vec<(WidenedKind, &str)> = w.listed().map(|i| (i.kind, i.id.as_str())).collect();
        assert_eq!(kinds.len(), 5, "{kinds:?}");
        assert_eq!(kinds[0], (WidenedKind::ScopeSet, "read-only"));
        assert_eq!(kinds[3], (WidenedKind::ScopeSet, "wide"));
        assert_eq!(kinds[4].0, WidenedKind::Token);
        let crm_all = w.listed().find(|i| i.id == "crm.all").unwrap();
        assert_eq!(crm_all.tokens_using(None), Some(4));
        assert_eq!(crm_all.tokens_using(Some(b)), Some(1));
        let per: Vec<TenantWidening> = w.per_tenant().collect();
        assert_eq!(
            per,
            [
                TenantWidening {
                    tenant: a,
                    scope_sets: 1,
                    tokens: 3 + 2
                },
                TenantWidening {
                    tenant: b,
                    scope_sets: 0,
                    tokens: 1 + 1
                },
            ]
        );
        assert_eq!(w.tenants().collect::<Vec<_>>(), [a, b]);
    }

    #[test]
    fn a_new_predefined_set_widens_only_tokens_naming_it() {
        let before = Snapshot::build(vec![RegisteredPlugin::global(manifest(
            "crm",
            "1",
            &["crm.a"],
        ))])
        .unwrap();
        let after = Snapshot::build(vec![RegisteredPlugin::global(crm("2", &["crm.a"]))]).unwrap();
        let diff = RegistryDiff::between(&before, &after, None);
        let mut w = Widening::default();
        w.add_predefined(&diff, None, &HashMap::new());
        assert!(w.is_empty());
        w.add_predefined(&diff, None, &by_set(vec![(tenant(1), "crm.all".into(), 1)]));
        assert_eq!(w.total(), 1);
    }

    #[test]
    fn a_tenants_audit_view_keeps_its_items_and_the_shared_sets_it_uses() {
        let diff = diff();
        let (a, b) = (tenant(1), tenant(2));
        let using = by_set(vec![(b, "crm.all".into(), 1)]);
        let mut w = Widening::default();
        w.add_predefined(&diff, None, &using);
        w.add_custom(
            widened_custom(&diff, vec![custom_set(a, "wide", &["crm.*"])]),
            &using,
        );
        let all = w.audit_json(None);
        assert_eq!(all["widened_total"], 4);
        assert_eq!(all["widened_tenants"].as_array().unwrap().len(), 2);
        let of_a = w.audit_json(Some(a));
        assert_eq!(of_a["widened_total"], 1);
        assert_eq!(of_a["widened"][0]["id"], "wide");
        assert!(of_a.get("widened_tenants").is_none());
        let of_b = w.audit_json(Some(b));
        assert_eq!(of_b["widened_total"], 1);
        assert_eq!(of_b["widened"][0]["id"], "crm.all");
        assert_eq!(of_b["widened"][0]["tokens_using"], 1);
        assert_eq!(w.summary(), "4 widened: scope_set read-only, scope_set read-change, scope_set crm.all, scope_set wide");
    }

    #[test]
    fn a_read_restricted_set_gains_only_read_methods() {
        let diff = diff();
        let mut set = custom_set(tenant(1), "readers", &["crm.*"]);
        set.access = Some(Access::Read);
        // test_support methods read (GET), so the read-restricted set gains crm.b too.
        assert_eq!(widened_custom(&diff, vec![set]).len(), 1);
    }
}
