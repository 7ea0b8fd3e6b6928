//! What another crate may learn about the users who own its rows (tokens): one owner read
//! under a row lock inside the caller's transaction, or the owners' state joined to a
//! query of the caller's so that one statement reads both. The `users` table itself stays
//! private to this crate.

use sea_orm::sea_query::{Alias, Expr, IntoIden, SelectStatement};
use sea_orm::{DatabaseTransaction, FromQueryResult, QuerySelect};
use sigil_core::{Result, TenantId, TenantOwned, UserId};

use crate::entity::{Column, Entity};
use crate::types::User;

/// An owner as verification needs it, read along with the owned row. Text columns are as
/// stored (`Role::parse`, `UserKind::parse` read them).
#[derive(Clone, Debug, PartialEq, Eq, FromQueryResult)]
pub struct OwnerState {
    pub username: String,
    pub user_kind: String,
    pub role: String,
    pub api_access: bool,
    pub active: bool,
    pub is_system: bool,
    /// The owner's rate limits, shared by all of their tokens (JSON; NULL for none).
    pub owner_rate_limits: Option<String>,
}

/// The user `id` of `tenant`, its row locked until `txn` ends (a row lock on PostgreSQL;
/// SQLite runs one transaction at a time), so that what is decided from it stays true
/// until the transaction commits. `None` when there is no such user.
pub async fn lock(txn: &DatabaseTransaction, tenant: TenantId, id: UserId) -> Result<Option<User>> {
    Entity::find_by_id_in(tenant, id)
        .lock_exclusive()
        .one(txn)
        .await?
        .as_ref()
        .map(User::try_from)
        .transpose()
}

/// Joins to `select` the owner of each row of `table` (the owner's id in column `owner`,
/// its tenant in `tenant`) and selects the [`OwnerState`] columns. A row whose owner does
/// not exist in the row's tenant drops out (an inner join).
pub fn join_state<T, C>(select: &mut SelectStatement, table: T, owner: C, tenant: C)
where
    T: IntoIden + Copy + 'static,
    C: IntoIden + Copy + 'static,
{
    let u = Entity;
    select
        .expr_as(Expr::col((u, Column::Username)), Alias::new("username"))
        .expr_as(Expr::col((u, Column::Kind)), Alias::new("user_kind"))
        .expr_as(Expr::col((u, Column::Role)), Alias::new("role"))
        .expr_as(Expr::col((u, Column::ApiAccess)), Alias::new("api_access"))
        .expr_as(Expr::col((u, Column::Active)), Alias::new("active"))
        .expr_as(Expr::col((u, Column::IsSystem)), Alias::new("is_system"))
        .expr_as(
            Expr::col((u, Column::RateLimits)),
            Alias::new("owner_rate_limits"),
        )
        .inner_join(
            u,
            Expr::col((u, Column::Id))
                .equals((table, owner))
                .and(Expr::col((u, Column::TenantId)).equals((table, tenant))),
        );
}
