use sea_orm::entity::prelude::*;
use sigil_core::{TenantId, UserId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: UserId,
    pub tenant_id: TenantId,
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    pub kind: String,
    pub role: String,
    pub api_access: bool,
    pub active: bool,
    pub is_system: bool,
    pub password_hash: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// When two-factor sign-in was turned on (NULL: off).
    pub two_factor_enabled_at: Option<DateTimeUtc>,
    /// JSON array of the user's rate limits, shared by all of their tokens; NULL: none.
    pub rate_limits: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl sigil_core::TenantOwned for Entity {
    fn tenant_column() -> Column {
        Column::TenantId
    }
}
