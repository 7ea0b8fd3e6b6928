use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sigil_core::{Error, Result, TenantId, UserId};

use crate::entity;

pub const SYSTEM_USERNAME: &str = "system";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Member,
    TokenManager,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::TokenManager => "token_manager",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "member" => Ok(Role::Member),
            "token_manager" => Ok(Role::TokenManager),
            "admin" => Ok(Role::Admin),
            _ => Err(Error::invalid_field(
                "invalid_role",
                "role",
                "role must be admin, token_manager or member",
            )),
        }
    }

    /// Whether this role manages every API token of the tenant (seed 001's token manager).
    pub fn manages_all_tokens(self) -> bool {
        matches!(self, Role::Admin | Role::TokenManager)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserKind {
    Person,
    Api,
}

impl UserKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UserKind::Person => "person",
            UserKind::Api => "api",
        }
    }

    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "person" => Ok(UserKind::Person),
            "api" => Ok(UserKind::Api),
            _ => Err(Error::invalid_field(
                "invalid_kind",
                "kind",
                "kind must be person or api",
            )),
        }
    }
}

#[derive(Clone, Debug)]
pub struct User {
    pub id: UserId,
    pub tenant_id: TenantId,
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    pub kind: UserKind,
    pub role: Role,
    pub api_access: bool,
    pub active: bool,
    pub is_system: bool,
    pub has_password: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When two-factor sign-in (TOTP) was turned on; `None`: off.
    pub two_factor_enabled_at: Option<DateTime<Utc>>,
    /// Rate limits shared by all of the user's tokens (the tenant's defaults apply when
    /// there are none).
    pub rate_limits: Vec<sigil_limits::RateLimit>,
}

impl User {
    /// Whether the user signs in with a second factor.
    pub fn has_two_factor(&self) -> bool {
        self.kind == UserKind::Person && self.two_factor_enabled_at.is_some()
    }

    /// Whether the tenant's policy keeps this user to enrolment until they have a second
    /// factor.
    pub fn must_enrol(&self, policy: &sigil_tenant::TenantPolicy) -> bool {
        policy.require_two_factor
            && self.kind == UserKind::Person
            && self.two_factor_enabled_at.is_none()
    }

    /// What the audit log keeps of a user before and after an admin's change.
    pub fn audit_view(&self) -> serde_json::Value {
        serde_json::json!({
            "username": self.username, "display_name": self.display_name, "email": self.email,
            "kind": self.kind.as_str(), "role": self.role.as_str(), "api_access": self.api_access,
            "active": self.active, "rate_limits": self.rate_limits,
        })
    }

    /// What the audit log keeps of a user's change to their own profile.
    pub fn profile_view(&self) -> serde_json::Value {
        serde_json::json!({"display_name": self.display_name, "email": self.email})
    }
}

impl TryFrom<&entity::Model> for User {
    type Error = Error;
    fn try_from(m: &entity::Model) -> Result<Self> {
        Ok(Self {
            id: m.id,
            tenant_id: m.tenant_id,
            username: m.username.clone(),
            display_name: m.display_name.clone(),
            email: m.email.clone(),
            kind: UserKind::parse(&m.kind)?,
            role: Role::parse(&m.role)?,
            api_access: m.api_access,
            active: m.active,
            is_system: m.is_system,
            has_password: m.password_hash.is_some(),
            created_at: m.created_at,
            updated_at: m.updated_at,
            two_factor_enabled_at: m.two_factor_enabled_at,
            rate_limits: m
                .rate_limits
                .as_deref()
                .and_then(|j| serde_json::from_str(j).ok())
                .unwrap_or_default(),
        })
    }
}
