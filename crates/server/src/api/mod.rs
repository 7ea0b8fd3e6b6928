//! The REST API under `/api/v1`, one file per resource. Every operation has an explicit
//! operationId (the public contract), a tag, a summary and the documented error model.

pub mod audit;
pub mod auth;
pub mod caller;
pub mod dto;
pub mod json_out;
pub mod leaks;
pub mod limits;
pub mod optional_body;
pub mod registry;
pub mod service;
pub mod tenants;
pub mod tokens;
pub mod two_factor;
pub mod users;
pub mod verify;
pub mod webhooks;

use std::sync::Arc;

use poem_openapi::Tags;

use crate::state::AppState;

#[derive(Tags)]
pub enum ApiTags {
    /// Sign in and manage your own account.
    Auth,
    /// Platform operator: onboard and manage tenants.
    Tenants,
    /// Your tenant: policy and signing keys.
    Tenant,
    /// Users of your tenant (admins).
    Users,
    /// Plugins, API methods and scope sets.
    Registry,
    /// Personal and application tokens.
    Tokens,
    /// Token verification for plugins and proxies.
    Verification,
    /// Who did what.
    Audit,
    /// Signed webhooks: endpoints, test deliveries, delivery log (admins).
    Webhooks,
    /// Health and readiness.
    Service,
}

pub type Apis = (
    auth::AuthApi,
    tenants::TenantsApi,
    users::UsersApi,
    registry::RegistryApi,
    tokens::TokensApi,
    two_factor::TwoFactorApi,
    two_factor::TwoFactorAdminApi,
    leaks::LeaksApi,
    verify::VerifyApi,
    audit::AuditApi,
    webhooks::WebhooksApi,
    service::ServiceApi,
);

pub fn apis(state: Arc<AppState>) -> Apis {
    (
        auth::AuthApi(state.clone()),
        tenants::TenantsApi(state.clone()),
        users::UsersApi(state.clone()),
        registry::api(state.clone()),
        tokens::TokensApi(state.clone()),
        two_factor::TwoFactorApi(state.clone()),
        two_factor::TwoFactorAdminApi(state.clone()),
        leaks::LeaksApi(state.clone()),
        verify::VerifyApi(state.clone()),
        audit::AuditApi(state.clone()),
        webhooks::WebhooksApi(state.clone()),
        service::ServiceApi(state),
    )
}

/// The registry method of an operation of the built-in `sigil` plugin (the typed table
/// is [`sigil_token::SigilMethod`]; the spec test checks it covers every operation).
pub fn method_of(operation_id: &str) -> Option<&'static str> {
    sigil_token::SigilMethod::from_operation_id(operation_id).map(|m| m.id())
}
