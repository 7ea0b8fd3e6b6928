use sea_orm::entity::prelude::*;
use sigil_core::{TenantId, TokenId, UserId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "tokens")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: TokenId,
    pub tenant_id: TenantId,
    pub owner_id: UserId,
    pub kind: String,
    pub name: String,
    pub description: String,
    pub scope_set: Option<String>,
    /// JSON array of method ids or globs, for a custom pick.
    pub scope_methods: Option<String>,
    pub expires_at: Option<DateTimeUtc>,
    /// JSON array of IPs/CIDRs.
    pub ip_filter: String,
    pub enabled: bool,
    pub generation: i32,
    /// Hex SHA-256 of the current secret.
    pub secret_hash: String,
    pub prev_secret_hash: Option<String>,
    pub prev_valid_until: Option<DateTimeUtc>,
    pub elevated_until: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub created_by: Option<UserId>,
    pub updated_at: DateTimeUtc,
    pub use_count: i64,
    pub last_used_at: Option<DateTimeUtc>,
    pub last_used_ip: Option<String>,
    pub revoked_at: Option<DateTimeUtc>,
    /// `leaked` when the secret was reported exposed (crate::leaks); NULL otherwise.
    pub revoked_reason: Option<String>,
    /// JSON array of the method ids the token may never exceed (the creator ceiling);
    /// NULL when only the owner's current rights bound it.
    pub ceiling: Option<String>,
    /// The oldest generation whose secret the token's own rotation replaced, with only
    /// self-rotations since (reuse detection); NULL after a regeneration by someone.
    pub self_rotated_from: Option<i32>,
    /// JSON array of the token's named rate limits; NULL for none.
    pub rate_limits: Option<String>,
    /// Uses left; NULL when the token has no credits (unlimited).
    pub credits_remaining: Option<i64>,
    /// JSON refill of the credits; NULL for none.
    pub credits_refill: Option<String>,
    /// Start of the period of the last refill (or when the credits were set).
    pub credits_refilled_at: Option<DateTimeUtc>,
    /// Raised whenever someone sets the credits, so older spends are not charged to the
    /// new balance.
    pub credits_version: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl sigil_core::TenantOwned for Entity {
    fn tenant_column() -> Column {
        Column::TenantId
    }
}
