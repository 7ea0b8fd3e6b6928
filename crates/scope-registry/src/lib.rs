//! Scope registry: plugins (named, versioned sets of API methods), scope sets over their
//! methods, and the compiled [`Snapshot`] used to check tokens and route forward-auth
//! requests.
//!
//! - [`PluginManifest`] is the registration document; [`PluginManifest::validate`] checks
//!   it and [`PluginManifest::from_openapi`] imports one from an OpenAPI 3.x document.
//! - [`Snapshot::build`] compiles global and tenant-private plugins into method indices,
//!   [`MethodSet`] bitsets, predefined scope sets and per-verb route tries.
//! - [`Registry`] holds the current snapshot and swaps it without blocking readers.
//! - Each plugin owns a namespace: its id, which prefixes its method ids (the built-in
//!   plugin owns the first segments of its own ids), so ids of different plugins never
//!   overlap; [`RegistryDiff`] tells what a change adds to existing scopes.
//! - [`RegistryService`] holds the use cases: registering, upgrading and removing plugins
//!   ([`plugins`]), finding methods ([`methods`]) and managing scope sets
//!   ([`scope_sets`]). Each takes who acts ([`sigil_audit::Actor`]), stores its change
//!   and writes its audit events in one transaction, then rebuilds the live registry and
//!   publishes the change on the [`sigil_core::ChangeFeed`].

pub mod access;
pub mod bitset;
pub mod manifest;
pub mod methods;
pub mod openapi_import;
pub mod pattern;
pub mod plugins;
pub mod registry;
pub mod routes;
pub mod scope_sets;
pub mod service;
pub mod snapshot;
pub mod store;
#[cfg(test)]
mod test_db;
pub mod token_scopes;
pub mod widening;

pub use access::{Access, ParseAccessError};
pub use bitset::{MethodIdx, MethodSet};
pub use manifest::{namespace_of, HttpRoute, ManifestMethod, ManifestScopeSet, PluginManifest};
pub use methods::MethodQuery;
pub use pattern::EntryPattern;
pub use plugins::namespace::BUILTIN_PLUGIN;
pub use plugins::source::Registration;
pub use plugins::widened::{TenantWidening, WidenedItem, WidenedKind, Widening};
pub use plugins::{PluginView, Registered, RemovedPlugin};
pub use registry::Registry;
pub use routes::{RouteTable, HTTP_METHODS};
pub use scope_sets::{ScopeSetChanges, ScopeSetKind, ScopeSetView};
pub use service::RegistryService;
pub use snapshot::{
    MethodInfo, PredefinedSet, RegisteredPlugin, Snapshot, READ_CHANGE_SET, READ_ONLY_SET,
};
pub use token_scopes::{CustomScopeToken, TokenScopes};
pub use widening::{RegistryDiff, SetGain};
