//! The registry API: plugins (`/plugins`), API methods (`/methods`) and scope sets
//! (`/scope-sets`). Each handler extracts the request, makes one call to the registry's
//! use cases ([`sigil_scope_registry::RegistryService`]), records the audit events it
//! returns and maps the answer to its response shape.

mod dto;
mod methods;
mod plugins;
mod scope_sets;
mod token_scopes;

use std::sync::Arc;

use poem::Request;
use sigil_audit::NewEvent;
use sigil_scope_registry::{Actor, TenantUser};
use sigil_token::{Caller, Principal};

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

/// The caller as the registry names who acts: the operator or a tenant user.
fn actor(caller: &Caller) -> Actor {
    match caller {
        Caller::Operator => Actor::Operator,
        Caller::Tenant(p) => Actor::User(tenant_user(p)),
    }
}

fn tenant_user(p: &Principal) -> TenantUser {
    TenantUser {
        tenant: p.tenant_id,
        user: p.user_id,
        username: p.username.clone(),
        credential: p.token_id,
    }
}

/// Records a use case's audit events with the request's client details.
async fn record(state: &AppState, req: &Request, events: Vec<NewEvent>) {
    for event in events {
        state.audit(req, event).await;
    }
}
