//! Searching the API methods a caller sees.

use sigil_core::TenantId;

use crate::access::Access;
use crate::service::RegistryService;
use crate::snapshot::MethodInfo;

/// Which methods to find; every part is optional.
#[derive(Clone, Debug, Default)]
pub struct MethodQuery {
    /// Words in the id or description, in any case.
    pub text: Option<String>,
    /// Defining plugin.
    pub plugin: Option<String>,
    pub access: Option<Access>,
}

impl MethodQuery {
    fn matches(&self, needle: &str, m: &MethodInfo) -> bool {
        self.plugin.as_deref().is_none_or(|p| m.plugin == p)
            && self.access.is_none_or(|a| a == m.access)
            && (needle.is_empty()
                || m.id.to_lowercase().contains(needle)
                || m.description.to_lowercase().contains(needle))
    }
}

impl RegistryService {
    /// Methods `tenant` sees (the operator: global ones) that match `query`, in index
    /// order.
    pub fn find_methods(&self, tenant: Option<TenantId>, query: &MethodQuery) -> Vec<MethodInfo> {
        let needle = query.text.as_deref().unwrap_or_default().to_lowercase();
        self.current()
            .methods_visible(tenant.map(|t| t.0))
            .map(|(_, m)| m)
            .filter(|m| query.matches(&needle, m))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn method(id: &str, plugin: &str, access: Access, description: &str) -> MethodInfo {
        MethodInfo {
            id: id.into(),
            plugin: plugin.into(),
            tenant: None,
            http_method: "GET".into(),
            path: "/".into(),
            access,
            description: description.into(),
            docs_url: None,
            cost: 1,
        }
    }

    #[test]
    fn a_query_matches_plugin_access_and_text_in_any_case() {
        let m = method("crm.Contacts.list", "crm", Access::Read, "Lists CONTACTS");
        let q = |text: &str, plugin: Option<&str>, access: Option<Access>| MethodQuery {
            text: Some(text.into()),
            plugin: plugin.map(Into::into),
            access,
        };
        let hit = |query: MethodQuery| {
            let needle = query.text.clone().unwrap_or_default().to_lowercase();
            query.matches(&needle, &m)
        };
        assert!(hit(MethodQuery::default()));
        assert!(hit(q("contacts.LIST", None, None)));
        assert!(hit(q("lists con", Some("crm"), Some(Access::Read))));
        assert!(!hit(q("", Some("hr"), None)));
        assert!(!hit(q("", None, Some(Access::Change))));
        assert!(!hit(q("delete", None, None)));
    }
}
