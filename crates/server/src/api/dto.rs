//! Response shapes shared by several resources. Domain records never leave the server as
//! they are: each is mapped to one of these.

use chrono::{DateTime, Utc};
use poem_openapi::{Enum, Object};
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum, serde::Serialize)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum, serde::Serialize)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
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
#[derive(Clone, Debug, Object, serde::Serialize)]
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
    /// Whether the user signs in with a second factor (TOTP).
    pub two_factor: bool,
    /// When two-factor sign-in was turned on.
    #[serde(serialize_with = "super::json_out::rfc3339_opt")]
    pub two_factor_enabled_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "super::json_out::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "super::json_out::rfc3339")]
    pub updated_at: DateTime<Utc>,
    /// Rate limits shared by all of the user's tokens (empty: the tenant's defaults for
    /// owners apply). Set by admins with `updateUser`.
    pub rate_limits: Vec<super::limits::RateLimitDto>,
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
            two_factor: u.two_factor_enabled_at.is_some(),
            two_factor_enabled_at: u.two_factor_enabled_at,
            created_at: u.created_at,
            updated_at: u.updated_at,
            rate_limits: super::limits::rate_limits_to(&u.rate_limits),
        }
    }
}

/// Id-and-name reference to what the request acted on, for bulk answers.
#[derive(Clone, Debug, Object)]
pub struct Removed {
    pub id: Uuid,
    pub name: String,
}

/// Declares the envelope every list operation answers, `{items, total, offset, limit}`,
/// for one item type (listAuditEvents adds `next_cursor` to the same fields). Each
/// resource keeps a schema name of its own (`TokenList`, ...) so generated clients get
/// one readable model per list, all with the same fields.
macro_rules! list_envelope {
    ($(#[$attr:meta])* $name:ident, $item:ty) => {
        $(#[$attr])*
        #[derive(poem_openapi::Object)]
        pub struct $name {
            /// This page's items.
            pub items: Vec<$item>,
            /// How many items match the query, over all pages.
            pub total: u64,
            /// How many matching items come before this page.
            pub offset: u64,
            /// The largest number of items a page holds.
            pub limit: u64,
        }

        impl $name {
            pub fn new(items: Vec<$item>, total: u64, page: sigil_core::page::PageRequest) -> Self {
                Self {
                    items,
                    total,
                    offset: page.offset,
                    limit: page.limit,
                }
            }

            /// The page of an already filtered, ordered list held in memory.
            #[allow(dead_code)]
            pub fn slice(all: Vec<$item>, page: sigil_core::page::PageRequest) -> Self {
                let total = all.len() as u64;
                let items = all
                    .into_iter()
                    .skip(usize::try_from(page.offset).unwrap_or(usize::MAX))
                    .take(usize::try_from(page.limit).unwrap_or(usize::MAX))
                    .collect();
                Self::new(items, total, page)
            }
        }
    };
}
pub(crate) use list_envelope;
