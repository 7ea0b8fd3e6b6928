//! Sigil's own API methods (the built-in plugin `sigil`), one variant per operation of the
//! published spec, with who may call each. The server derives every operation's method
//! from this table and a test checks it against the spec, so no handler names a method
//! by hand.

use sigil_user::Role;

/// Who may call a method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience {
    /// Anyone, without a credential.
    Public,
    /// Only the platform operator.
    Operator,
    /// Tenant users of at least this role (and not the operator).
    Tenant(Role),
    /// Tenant users of at least this role, and the operator too.
    Shared(Role),
}

macro_rules! sigil_methods {
    ($( $variant:ident => $op:literal, $id:literal, $audience:expr; )*) => {
        /// One of Sigil's own API methods.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum SigilMethod { $($variant,)* }

        impl SigilMethod {
            /// Every method, in the order of the spec's tags.
            pub const ALL: &'static [SigilMethod] = &[$(SigilMethod::$variant,)*];

            /// The registry method id (`tokens.create`).
            pub const fn id(self) -> &'static str {
                match self { $(SigilMethod::$variant => $id,)* }
            }

            /// The operationId of the spec (`createToken`), the public contract.
            pub const fn operation_id(self) -> &'static str {
                match self { $(SigilMethod::$variant => $op,)* }
            }

            /// Who may call it.
            pub const fn audience(self) -> Audience {
                use Audience::*;
                use Role::*;
                match self { $(SigilMethod::$variant => $audience,)* }
            }

            /// The method with this registry id.
            pub fn from_id(id: &str) -> Option<SigilMethod> {
                match id { $($id => Some(SigilMethod::$variant),)* _ => None }
            }

            /// The method of this operationId.
            pub fn from_operation_id(op: &str) -> Option<SigilMethod> {
                match op { $($op => Some(SigilMethod::$variant),)* _ => None }
            }
        }
    };
}

sigil_methods! {
    Login => "login", "auth.login", Public;
    ConfirmPassword => "confirmPassword", "auth.confirm_password", Tenant(Member);
    GetCurrentUser => "getCurrentUser", "me.get", Tenant(Member);
    UpdateCurrentUser => "updateCurrentUser", "me.update", Tenant(Member);
    ChangePassword => "changePassword", "me.change_password", Tenant(Member);
    CompleteLogin => "completeLogin", "auth.complete_login", Public;
    BeginTotpEnrolment => "beginTotpEnrolment", "me.two_factor.begin", Tenant(Member);
    ConfirmTotpEnrolment => "confirmTotpEnrolment", "me.two_factor.confirm", Tenant(Member);
    DisableTotp => "disableTotp", "me.two_factor.disable", Tenant(Member);
    CreateTenant => "createTenant", "tenants.create", Operator;
    ListTenants => "listTenants", "tenants.list", Operator;
    GetTenant => "getTenant", "tenants.get", Operator;
    UpdateTenant => "updateTenant", "tenants.update", Operator;
    DisableTenant => "disableTenant", "tenants.disable", Operator;
    GetMyTenant => "getMyTenant", "tenant.get", Tenant(Member);
    UpdateTenantPolicy => "updateTenantPolicy", "tenant.update_policy", Tenant(Admin);
    ListSigningKeys => "listSigningKeys", "signing_keys.list", Tenant(TokenManager);
    RotateSigningKey => "rotateSigningKey", "signing_keys.rotate", Tenant(Admin);
    GetJwks => "getJwks", "jwks.get", Public;
    CreateUser => "createUser", "users.create", Tenant(Admin);
    ListUsers => "listUsers", "users.list", Tenant(TokenManager);
    GetUser => "getUser", "users.get", Tenant(TokenManager);
    UpdateUser => "updateUser", "users.update", Tenant(Admin);
    DeactivateUser => "deactivateUser", "users.deactivate", Tenant(Admin);
    DeleteUser => "deleteUser", "users.delete", Tenant(Admin);
    ResetUserTwoFactor => "resetUserTwoFactor", "users.reset_two_factor", Tenant(Admin);
    ListPlugins => "listPlugins", "plugins.list", Shared(Member);
    RegisterPlugin => "registerPlugin", "plugins.register", Shared(Admin);
    GetPlugin => "getPlugin", "plugins.get", Shared(Member);
    DeletePlugin => "deletePlugin", "plugins.delete", Shared(Admin);
    ListMethods => "listMethods", "methods.list", Shared(Member);
    ListScopeSets => "listScopeSets", "scope_sets.list", Tenant(Member);
    CreateScopeSet => "createScopeSet", "scope_sets.create", Tenant(Admin);
    GetScopeSet => "getScopeSet", "scope_sets.get", Tenant(Member);
    UpdateScopeSet => "updateScopeSet", "scope_sets.update", Tenant(Admin);
    DeleteScopeSet => "deleteScopeSet", "scope_sets.delete", Tenant(Admin);
    CreateToken => "createToken", "tokens.create", Tenant(Member);
    ListTokens => "listTokens", "tokens.list", Tenant(Member);
    GetToken => "getToken", "tokens.get", Tenant(Member);
    UpdateToken => "updateToken", "tokens.update", Tenant(Member);
    RegenerateToken => "regenerateToken", "tokens.regenerate", Tenant(Member);
    RotateCurrentToken => "rotateCurrentToken", "tokens.rotate_current", Tenant(Member);
    CopyToken => "copyToken", "tokens.copy", Tenant(Member);
    DeleteToken => "deleteToken", "tokens.delete", Tenant(Member);
    DeleteTokens => "deleteTokens", "tokens.delete_bulk", Tenant(Member);
    GetTokenHygiene => "getTokenHygiene", "tokens.hygiene", Tenant(Member);
    ReportLeakedTokens => "reportLeakedTokens", "tokens.report_leaked", Tenant(Member);
    ReportSecretScanningMatches => "reportSecretScanningMatches", "tokens.report_secret_scanning", Public;
    IntrospectToken => "introspectToken", "sigil.introspect", Tenant(Member);
    AuthorizeRequest => "authorizeRequest", "sigil.authorize", Public;
    ListAuditEvents => "listAuditEvents", "audit.list", Shared(Member);
    CreateWebhook => "createWebhook", "tenant.webhooks.create", Tenant(Admin);
    ListWebhooks => "listWebhooks", "tenant.webhooks.list", Tenant(Admin);
    GetWebhook => "getWebhook", "tenant.webhooks.get", Tenant(Admin);
    UpdateWebhook => "updateWebhook", "tenant.webhooks.update", Tenant(Admin);
    DeleteWebhook => "deleteWebhook", "tenant.webhooks.delete", Tenant(Admin);
    SendTestWebhook => "sendTestWebhook", "tenant.webhooks.test", Tenant(Admin);
    ListWebhookDeliveries => "listWebhookDeliveries", "tenant.webhooks.list_deliveries", Tenant(Admin);
    GetHealth => "getHealth", "service.health", Public;
    GetReadiness => "getReadiness", "service.readiness", Public;
}

impl SigilMethod {
    /// Whether the platform operator may call it.
    pub const fn operator_may_call(self) -> bool {
        matches!(
            self.audience(),
            Audience::Operator | Audience::Shared(_) | Audience::Public
        )
    }

    /// Whether only the platform operator may call it.
    pub const fn operator_only(self) -> bool {
        matches!(self.audience(), Audience::Operator)
    }

    /// Whether a tenant user of `role` may call it (their token's scope aside).
    pub fn allows_role(self, role: Role) -> bool {
        match self.audience() {
            Audience::Public => true,
            Audience::Operator => false,
            Audience::Tenant(min) | Audience::Shared(min) => rank(role) >= rank(min),
        }
    }

    /// Whether it needs no credential.
    pub const fn is_public(self) -> bool {
        matches!(self.audience(), Audience::Public)
    }
}

const fn rank(role: Role) -> u8 {
    match role {
        Role::Member => 0,
        Role::TokenManager => 1,
        Role::Admin => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_operation_ids_are_unique_and_round_trip() {
        for m in SigilMethod::ALL {
            assert_eq!(SigilMethod::from_id(m.id()), Some(*m));
            assert_eq!(SigilMethod::from_operation_id(m.operation_id()), Some(*m));
        }
        let mut ids: Vec<_> = SigilMethod::ALL.iter().map(|m| m.id()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), SigilMethod::ALL.len());
    }

    #[test]
    fn roles_are_ordered() {
        let m = SigilMethod::UpdateUser;
        assert!(m.allows_role(Role::Admin));
        assert!(!m.allows_role(Role::TokenManager));
        assert!(SigilMethod::ListUsers.allows_role(Role::TokenManager));
        assert!(!SigilMethod::ListUsers.allows_role(Role::Member));
        assert!(!SigilMethod::CreateTenant.allows_role(Role::Admin));
        assert!(SigilMethod::CreateTenant.operator_only());
        assert!(SigilMethod::RegisterPlugin.operator_may_call());
        assert!(!SigilMethod::CreateToken.operator_may_call());
    }
}
