//! Manifests for the plugin use cases' tests.

use crate::access::Access;
use crate::manifest::{HttpRoute, ManifestMethod, PluginManifest};

pub(crate) const TENANT: uuid::Uuid = uuid::Uuid::from_u128(0xa);

/// A plugin whose methods read `GET /<id with dots as slashes>`.
pub(crate) fn manifest(id: &str, version: &str, methods: &[&str]) -> PluginManifest {
    PluginManifest {
        id: id.to_owned(),
        name: id.to_uppercase(),
        version: version.to_owned(),
        description: None,
        docs_url: None,
        methods: methods
            .iter()
            .map(|m| ManifestMethod {
                id: (*m).to_owned(),
                http: HttpRoute::new("GET", &format!("/{}", m.replace('.', "/"))),
                access: Access::Read,
                description: String::new(),
                docs_url: None,
                cost: 1,
            })
            .collect(),
        scope_sets: Vec::new(),
    }
}
