//! The registry API: plugins (`/plugins`), API methods (`/methods`) and scope sets
//! (`/scope-sets`). Each handler extracts the request, builds the actor, makes one call
//! to the registry's use cases ([`sigil_scope_registry::RegistryService`]), which write
//! their own audit events, and maps the answer to its response shape.

mod dto;
mod methods;
mod plugins;
mod scope_sets;
mod token_scopes;

use std::sync::Arc;

use poem::Request;
use sigil_audit::Actor;
use sigil_core::TenantId;
use sigil_token::Caller;

use crate::state::AppState;

pub use methods::MethodsApi;
pub use plugins::PluginsApi;
pub use scope_sets::ScopeSetsApi;
pub use token_scopes::TokenScopesOfTokens;

/// The registry's operations, in three parts.
pub type RegistryApi = (PluginsApi, MethodsApi, ScopeSetsApi);

pub fn api(state: Arc<AppState>) -> RegistryApi {
    (
        PluginsApi(state.clone()),
        MethodsApi(state.clone()),
        ScopeSetsApi(state),
    )
}

/// The caller as the audit log names who acts, from where: the operator or a tenant
/// user.
fn actor(state: &AppState, req: &Request, caller: &Caller) -> Actor {
    match caller {
        Caller::Operator => state.actor(req, None),
        Caller::Tenant(p) => state.actor(req, Some(p)),
    }
}

/// The caller's tenant; `None` for the operator.
fn tenant_of(caller: &Caller) -> Option<TenantId> {
    match caller {
        Caller::Operator => None,
        Caller::Tenant(p) => Some(p.tenant_id),
    }
}
