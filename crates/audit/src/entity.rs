use sea_orm::entity::prelude::*;
use sigil_core::{TenantId, TenantOwned, TokenId, UserId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Option<TenantId>,
    pub actor_id: Option<UserId>,
    pub actor_label: String,
    pub credential_id: Option<TokenId>,
    pub action: String,
    pub target_type: String,
    pub target_id: Option<String>,
    pub before: Option<String>,
    pub after: Option<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub occurrences: i32,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// A tenant's events; platform events (no tenant) are read only by the operator's
/// unscoped view.
impl TenantOwned for Entity {
    fn tenant_column() -> Column {
        Column::TenantId
    }
}
