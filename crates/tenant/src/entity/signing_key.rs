use sea_orm::entity::prelude::*;
use sigil_core::{TenantId, TenantOwned};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "signing_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub kid: String,
    pub tenant_id: TenantId,
    /// Base64url of the 32-byte Ed25519 public key (the JWK `x`).
    pub public_key: String,
    /// PKCS#8 private key sealed with the master key, bound to the kid.
    pub private_key_sealed: String,
    pub state: String,
    pub created_at: DateTimeUtc,
    pub retiring_at: Option<DateTimeUtc>,
    pub retire_after: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl TenantOwned for Entity {
    fn tenant_column() -> Column {
        Column::TenantId
    }
}
