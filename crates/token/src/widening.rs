//! Tokens a registry change may widen: registering or updating a plugin reports the tokens
//! whose own method list grants new methods, and how many tokens use each widened set.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Select,
};
use sigil_core::{Error, Result, TenantId, TenantOwned, TokenId};

use crate::entity;

/// Above this many new method ids, every custom method list is read instead of filtering
/// on them in SQL.
const MAX_LITERALS: usize = 100;
/// Set ids per `IN (...)` list.
const SET_CHUNK: usize = 500;

/// id, tenant, name, scope_methods, ceiling.
type CustomScopeRow = (TokenId, TenantId, String, Option<String>, Option<String>);

/// A live token with its own method list (no scope set).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomScopeToken {
    pub id: TokenId,
    pub tenant: TenantId,
    pub name: String,
    /// Method ids and globs, as stored.
    pub methods: Vec<String>,
    /// The creator ceiling: method ids the token can never exceed, when set.
    pub ceiling: Option<Vec<String>>,
}

/// The tokens of `tenant`, or of every tenant: a global plugin widens every tenant's.
fn of_tenant(tenant: Option<TenantId>) -> Select<entity::Entity> {
    match tenant {
        Some(t) => entity::Entity::find_in(t),
        None => entity::Entity::find(),
    }
}

/// Live (not revoked) tokens of `tenant` (`None`: of every tenant) with a custom method
/// list that could match one of `new_ids`: the list has a glob, or names one of them.
/// Over-inclusion is harmless (the caller matches exactly); with many new ids every
/// custom list is returned.
pub async fn tokens_with_custom_methods(
    db: &impl ConnectionTrait,
    tenant: Option<TenantId>,
    new_ids: &[&str],
) -> Result<Vec<CustomScopeToken>> {
    let mut query = of_tenant(tenant)
        .select_only()
        .columns([
            entity::Column::Id,
            entity::Column::TenantId,
            entity::Column::Name,
            entity::Column::ScopeMethods,
            entity::Column::Ceiling,
        ])
        .filter(entity::Column::ScopeSet.is_null())
        .filter(entity::Column::ScopeMethods.is_not_null())
        .filter(entity::Column::RevokedAt.is_null());
    if new_ids.len() <= MAX_LITERALS {
        let mut any = Condition::any();
        for glob in ["*", "?", "[", "{"] {
            any = any.add(entity::Column::ScopeMethods.like(format!("%{glob}%")));
        }
        for id in new_ids {
            // The list is a JSON array of strings: an exact entry appears quoted.
            any = any.add(entity::Column::ScopeMethods.like(format!("%\"{id}\"%")));
        }
        query = query.filter(any);
    }
    let rows: Vec<CustomScopeRow> = query
        .order_by_asc(entity::Column::TenantId)
        .order_by_asc(entity::Column::CreatedAt)
        .into_tuple()
        .all(db)
        .await?;
    rows.into_iter()
        .map(|(id, tenant, name, methods, ceiling)| {
            Ok(CustomScopeToken {
                id,
                tenant,
                name,
                methods: serde_json::from_str(methods.as_deref().unwrap_or("[]"))
                    .map_err(Error::internal)?,
                ceiling: ceiling
                    .as_deref()
                    .map(serde_json::from_str)
                    .transpose()
                    .map_err(Error::internal)?,
            })
        })
        .collect()
}

/// Live tokens without a creator ceiling (those that gain what their set gains) using one
/// of `sets`, of `tenant` (`None`: of every tenant), counted per tenant and set.
pub async fn count_using_sets(
    db: &impl ConnectionTrait,
    tenant: Option<TenantId>,
    sets: &[String],
) -> Result<Vec<(TenantId, String, u64)>> {
    let mut out = Vec::new();
    for chunk in sets.chunks(SET_CHUNK) {
        let query = of_tenant(tenant)
            .select_only()
            .column(entity::Column::TenantId)
            .column(entity::Column::ScopeSet)
            .column_as(Expr::col(entity::Column::Id).count(), "n")
            .filter(entity::Column::ScopeSet.is_in(chunk.iter().cloned()))
            .filter(entity::Column::RevokedAt.is_null())
            .filter(entity::Column::Ceiling.is_null());
        let rows: Vec<(TenantId, Option<String>, i64)> = query
            .group_by(entity::Column::TenantId)
            .group_by(entity::Column::ScopeSet)
            .into_tuple()
            .all(db)
            .await?;
        out.extend(
            rows.into_iter()
                .filter_map(|(t, set, n)| Some((t, set?, u64::try_from(n).unwrap_or(0)))),
        );
    }
    Ok(out)
}
