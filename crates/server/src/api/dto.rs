//! Response shapes shared by several resources. Domain records never leave the server as
//! they are: each is mapped to one of these.

use chrono::{DateTime, Utc};
use poem_openapi::{Enum, Object};
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum RoleDto {
    Admin,
    TokenManager,
    Member,
}

impl From<sigil_user::Role> for RoleDto {
    fn from(r: sigil_user::Role) -> Self {
        match r {
            sigil_user::Role::Admin => RoleDto::Admin,
            sigil_user::Role::TokenManager => RoleDto::TokenManager,
            sigil_user::Role::Member => RoleDto::Member,
        }
    }
}

impl From<RoleDto> for sigil_user::Role {
    fn from(r: RoleDto) -> Self {
        match r {
            RoleDto::Admin => sigil_user::Role::Admin,
            RoleDto::TokenManager => sigil_user::Role::TokenManager,
            RoleDto::Member => sigil_user::Role::Member,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum UserKindDto {
    Person,
    Api,
}

impl From<sigil_user::UserKind> for UserKindDto {
    fn from(k: sigil_user::UserKind) -> Self {
        match k {
            sigil_user::UserKind::Person => UserKindDto::Person,
            sigil_user::UserKind::Api => UserKindDto::Api,
        }
    }
}

impl From<UserKindDto> for sigil_user::UserKind {
    fn from(k: UserKindDto) -> Self {
        match k {
            UserKindDto::Person => sigil_user::UserKind::Person,
            UserKindDto::Api => sigil_user::UserKind::Api,
        }
    }
}

/// A user of a tenant.
#[derive(Clone, Debug, Object)]
pub struct UserDto {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    pub kind: UserKindDto,
    pub role: RoleDto,
    /// Required for any API call.
    pub api_access: bool,
    pub active: bool,
    /// The built-in system user: cannot log in or own tokens.
    pub is_system: bool,
    pub has_password: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&sigil_user::User> for UserDto {
    fn from(u: &sigil_user::User) -> Self {
        Self {
            id: u.id.0,
            tenant_id: u.tenant_id.0,
            username: u.username.clone(),
            display_name: u.display_name.clone(),
            email: u.email.clone(),
            kind: u.kind.into(),
            role: u.role.into(),
            api_access: u.api_access,
            active: u.active,
            is_system: u.is_system,
            has_password: u.has_password,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// Id-and-name reference to what the request acted on, for bulk answers.
#[derive(Clone, Debug, Object)]
pub struct Removed {
    pub id: Uuid,
    pub name: String,
}
