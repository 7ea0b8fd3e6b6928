use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, Func};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, Set,
};
use sigil_core::db::Db;
use sigil_core::{Error, Result, ScopeSetId, TenantId, TenantOwned};

use super::entity::scope_set;
use super::plugins::bump_version;
use crate::access::Access;

/// A tenant admin's own scope set.
#[derive(Clone, Debug)]
pub struct CustomSet {
    pub id: ScopeSetId,
    pub tenant: TenantId,
    pub slug: String,
    pub name: String,
    pub description: String,
    pub entries: Vec<String>,
    pub access: Option<Access>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug)]
pub struct CustomSetInput {
    pub slug: String,
    pub name: String,
    pub description: String,
    pub entries: Vec<String>,
    pub access: Option<Access>,
}

impl TryFrom<scope_set::Model> for CustomSet {
    type Error = Error;
    fn try_from(m: scope_set::Model) -> Result<Self> {
        Ok(Self {
            id: m.id,
            tenant: m.tenant_id,
            slug: m.slug,
            name: m.name,
            description: m.description,
            entries: serde_json::from_str(&m.entries).map_err(Error::internal)?,
            access: m.access.as_deref().and_then(|a| a.parse().ok()),
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

/// The row of `tenant`'s set `slug`; another tenant's set of that id is not found.
async fn find_row(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    slug: &str,
) -> Result<Option<scope_set::Model>> {
    Ok(scope_set::Entity::find_in(tenant)
        .filter(scope_set::Column::Slug.eq(slug))
        .one(conn)
        .await?)
}

/// Custom set slugs: no dots (dotted ids belong to plugin sets) and not a built-in name.
pub fn validate_slug(slug: &str) -> Result<()> {
    let ok = (2..=63).contains(&slug.len())
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && slug != crate::READ_ONLY_SET
        && slug != crate::READ_CHANGE_SET;
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_field(
            "invalid_scope_set_id",
            "id",
            "id must be 2-63 characters of a-z, 0-9, '-' and '_', and not a built-in set",
        ))
    }
}

/// `tenant`'s sets matching `q` (in id or name), by id.
pub(crate) async fn list(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    q: Option<&str>,
) -> Result<Vec<CustomSet>> {
    let mut query = scope_set::Entity::find_in(tenant);
    if let Some(q) = q.filter(|q| !q.is_empty()) {
        let pattern = sigil_core::page::contains_pattern(q);
        query = query.filter(
            Condition::any()
                .add(Expr::col(scope_set::Column::Slug).like(pattern.clone()))
                .add(Expr::expr(Func::lower(Expr::col(scope_set::Column::Name))).like(pattern)),
        );
    }
    query
        .order_by_asc(scope_set::Column::Slug)
        .all(conn)
        .await?
        .into_iter()
        .map(CustomSet::try_from)
        .collect()
}

/// Every tenant's custom sets, by tenant and id (to tell what a global plugin change adds
/// to them).
pub(crate) async fn list_all(conn: &impl ConnectionTrait) -> Result<Vec<CustomSet>> {
    // Across tenants on purpose: a global plugin changes what every tenant's sets grant.
    scope_set::Entity::find()
        .order_by_asc(scope_set::Column::TenantId)
        .order_by_asc(scope_set::Column::Slug)
        .all(conn)
        .await?
        .into_iter()
        .map(CustomSet::try_from)
        .collect()
}

/// `tenant`'s set `slug`.
pub(crate) async fn find(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    slug: &str,
) -> Result<Option<CustomSet>> {
    find_row(conn, tenant, slug)
        .await?
        .map(CustomSet::try_from)
        .transpose()
}

/// Stores a new set of `tenant` and bumps the registry version, in the caller's
/// transaction.
pub(crate) async fn create(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    input: CustomSetInput,
) -> Result<CustomSet> {
    validate_slug(&input.slug)?;
    if find_row(conn, tenant, &input.slug).await?.is_some() {
        return Err(Error::conflict(
            "scope_set_exists",
            "a scope set with this id exists",
        ));
    }
    let now = sigil_core::now();
    let model = scope_set::ActiveModel {
        id: Set(ScopeSetId::new()),
        tenant_id: Set(tenant),
        slug: Set(input.slug),
        name: Set(input.name),
        description: Set(input.description),
        entries: Set(serde_json::to_string(&input.entries).map_err(Error::internal)?),
        access: Set(input.access.map(|a| a.as_str().to_owned())),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(conn)
    .await
    .map_err(|e| match Error::from(e) {
        Error::Conflict { .. } => {
            Error::conflict("scope_set_exists", "a scope set with this id exists")
        }
        other => other,
    })?;
    bump_version(conn).await?;
    model.try_into()
}

/// What a change of a set writes; what is `None` stays.
#[derive(Clone, Debug, Default)]
pub(crate) struct SetUpdate {
    pub name: Option<String>,
    pub description: Option<String>,
    pub entries: Option<Vec<String>>,
    pub access: Option<Option<Access>>,
}

/// Changes the set `before` (as read in the caller's transaction) and bumps the registry
/// version; returns the set after.
pub(crate) async fn update(
    conn: &impl ConnectionTrait,
    before: &CustomSet,
    change: SetUpdate,
) -> Result<CustomSet> {
    let mut set = before.clone();
    // Only the given fields are written, so concurrent changes of others stay.
    let mut update =
        scope_set::Entity::update_many_in(set.tenant).filter(scope_set::Column::Id.eq(set.id));
    if let Some(name) = change.name {
        update = update.col_expr(scope_set::Column::Name, Expr::value(name.clone()));
        set.name = name;
    }
    if let Some(description) = change.description {
        update = update.col_expr(
            scope_set::Column::Description,
            Expr::value(description.clone()),
        );
        set.description = description;
    }
    if let Some(entries) = change.entries {
        let json = serde_json::to_string(&entries).map_err(Error::internal)?;
        update = update.col_expr(scope_set::Column::Entries, Expr::value(json));
        set.entries = entries;
    }
    if let Some(access) = change.access {
        update = update.col_expr(
            scope_set::Column::Access,
            Expr::value(access.map(|a| a.as_str().to_owned())),
        );
        set.access = access;
    }
    set.updated_at = sigil_core::now();
    let res = update
        .col_expr(scope_set::Column::UpdatedAt, Expr::value(set.updated_at))
        .exec(conn)
        .await?;
    if res.rows_affected == 0 {
        // Deleted meanwhile.
        return Err(Error::not_found("scope set"));
    }
    bump_version(conn).await?;
    Ok(set)
}

/// Deletes `tenant`'s set `slug` and bumps the registry version, in the caller's
/// transaction; returns the set as it was.
pub(crate) async fn delete(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    slug: &str,
) -> Result<CustomSet> {
    let row = find_row(conn, tenant, slug)
        .await?
        .ok_or_else(|| Error::not_found("scope set"))?;
    scope_set::Entity::delete_many_in(tenant)
        .filter(scope_set::Column::Id.eq(row.id))
        .exec(conn)
        .await?;
    bump_version(conn).await?;
    row.try_into()
}

/// Reads of the custom sets; changes go through the use cases' transactions.
#[derive(Clone)]
pub struct ScopeSetStore {
    db: Db,
}

impl ScopeSetStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub async fn find(&self, tenant: TenantId, slug: &str) -> Result<Option<CustomSet>> {
        find(&self.db, tenant, slug).await
    }

    pub async fn list(&self, tenant: TenantId, q: Option<&str>) -> Result<Vec<CustomSet>> {
        list(&self.db, tenant, q).await
    }

    /// Every tenant's custom sets, by tenant and id.
    pub async fn list_all(&self) -> Result<Vec<CustomSet>> {
        list_all(&self.db).await
    }
}
