//! The REST API under `/api/v1`, one file per resource. Every operation has an explicit
//! operationId (the public contract), a tag, a summary and the documented error model.

pub mod audit;
pub mod auth;
pub mod dto;
pub mod registry;
pub mod service;
pub mod tenants;
pub mod tokens;
pub mod users;
pub mod verify;

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
    /// Health and readiness.
    Service,
}

pub type Apis = (
    auth::AuthApi,
    tenants::TenantsApi,
    users::UsersApi,
    registry::RegistryApi,
    tokens::TokensApi,
    verify::VerifyApi,
    audit::AuditApi,
    service::ServiceApi,
);

pub fn apis(state: Arc<AppState>) -> Apis {
    (
        auth::AuthApi(state.clone()),
        tenants::TenantsApi(state.clone()),
        users::UsersApi(state.clone()),
        registry::RegistryApi(state.clone()),
        tokens::TokensApi(state.clone()),
        verify::VerifyApi(state.clone()),
        audit::AuditApi(state.clone()),
        service::ServiceApi(state),
    )
}

/// operationId → registry method of the built-in `sigil` plugin. Every operation of the
/// spec must appear here exactly once (checked when the built-in plugin is built).
pub const METHODS: &[(&str, &str)] = &[
    ("login", "auth.login"),
    ("confirmPassword", "auth.confirm_password"),
    ("getCurrentUser", "me.get"),
    ("updateCurrentUser", "me.update"),
    ("changePassword", "me.change_password"),
    ("createTenant", "tenants.create"),
    ("listTenants", "tenants.list"),
    ("getTenant", "tenants.get"),
    ("updateTenant", "tenants.update"),
    ("disableTenant", "tenants.disable"),
    ("getMyTenant", "tenant.get"),
    ("updateTenantPolicy", "tenant.update_policy"),
    ("listSigningKeys", "signing_keys.list"),
    ("rotateSigningKey", "signing_keys.rotate"),
    ("getJwks", "jwks.get"),
    ("createUser", "users.create"),
    ("listUsers", "users.list"),
    ("getUser", "users.get"),
    ("updateUser", "users.update"),
    ("deactivateUser", "users.deactivate"),
    ("deleteUser", "users.delete"),
    ("listPlugins", "plugins.list"),
    ("registerPlugin", "plugins.register"),
    ("getPlugin", "plugins.get"),
    ("deletePlugin", "plugins.delete"),
    ("listMethods", "methods.list"),
    ("listScopeSets", "scope_sets.list"),
    ("createScopeSet", "scope_sets.create"),
    ("getScopeSet", "scope_sets.get"),
    ("updateScopeSet", "scope_sets.update"),
    ("deleteScopeSet", "scope_sets.delete"),
    ("createToken", "tokens.create"),
    ("listTokens", "tokens.list"),
    ("getToken", "tokens.get"),
    ("updateToken", "tokens.update"),
    ("regenerateToken", "tokens.regenerate"),
    ("copyToken", "tokens.copy"),
    ("deleteToken", "tokens.delete"),
    ("deleteTokens", "tokens.delete_bulk"),
    ("getTokenHygiene", "tokens.hygiene"),
    ("introspectToken", "sigil.introspect"),
    ("authorizeRequest", "sigil.authorize"),
    ("listAuditEvents", "audit.list"),
    ("getHealth", "service.health"),
    ("getReadiness", "service.readiness"),
];

/// Operations anyone may call without a credential.
pub const PUBLIC_OPERATIONS: &[&str] = &[
    "login",
    "getJwks",
    "getHealth",
    "getReadiness",
    "authorizeRequest",
];

pub fn method_of(operation_id: &str) -> Option<&'static str> {
    METHODS
        .iter()
        .find(|(op, _)| *op == operation_id)
        .map(|(_, m)| *m)
}
