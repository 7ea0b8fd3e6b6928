use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, Func};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, Set, TransactionTrait,
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

#[derive(Clone)]
pub struct ScopeSetStore {
    db: Db,
}

impl ScopeSetStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub async fn find(&self, tenant: TenantId, slug: &str) -> Result<Option<CustomSet>> {
        find_row(&self.db, tenant, slug)
            .await?
            .map(CustomSet::try_from)
            .transpose()
    }

    pub async fn list(&self, tenant: TenantId, q: Option<&str>) -> Result<Vec<CustomSet>> {
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
            .all(&self.db)
            .await?
            .into_iter()
            .map(CustomSet::try_from)
            .collect()
    }

    /// Every tenant's custom sets, by tenant and id (to tell what a global plugin change
    /// adds to them).
    pub async fn list_all(&self) -> Result<Vec<CustomSet>> {
        // Across tenants on purpose: a global plugin changes what every tenant's sets grant.
        scope_set::Entity::find()
            .order_by_asc(scope_set::Column::TenantId)
            .order_by_asc(scope_set::Column::Slug)
            .all(&self.db)
            .await?
            .into_iter()
            .map(CustomSet::try_from)
            .collect()
    }

    pub async fn create(&self, tenant: TenantId, input: CustomSetInput) -> Result<CustomSet> {
        validate_slug(&input.slug)?;
        if self.find(tenant, &input.slug).await?.is_some() {
            return Err(Error::conflict(
                "scope_set_exists",
                "a scope set with this id exists",
            ));
        }
        let now = sigil_core::now();
        let txn = self.db.begin().await?;
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
        .insert(&txn)
        .await
        .map_err(|e| match Error::from(e) {
            Error::Conflict { .. } => {
                Error::conflict("scope_set_exists", "a scope set with this id exists")
            }
            other => other,
        })?;
        bump_version(&txn).await?;
        txn.commit().await?;
        model.try_into()
    }

    /// Changes `tenant`'s set `slug`; what is `None` stays.
    pub async fn update(
        &self,
        tenant: TenantId,
        slug: &str,
        name: Option<String>,
        description: Option<String>,
        entries: Option<Vec<String>>,
        access: Option<Option<Access>>,
    ) -> Result<CustomSet> {
        let mut row = find_row(&self.db, tenant, slug)
            .await?
            .ok_or_else(|| Error::not_found("scope set"))?;
        // Only the given fields are written, so concurrent changes of others stay.
        let mut update =
            scope_set::Entity::update_many_in(tenant).filter(scope_set::Column::Id.eq(row.id));
        if let Some(name) = name {
            update = update.col_expr(scope_set::Column::Name, Expr::value(name.clone()));
            row.name = name;
        }
        if let Some(description) = description {
            update = update.col_expr(
                scope_set::Column::Description,
                Expr::value(description.clone()),
            );
            row.description = description;
        }
        if let Some(entries) = entries {
            let json = serde_json::to_string(&entries).map_err(Error::internal)?;
            update = update.col_expr(scope_set::Column::Entries, Expr::value(json.clone()));
            row.entries = json;
        }
        if let Some(access) = access {
            let access = access.map(|a| a.as_str().to_owned());
            update = update.col_expr(scope_set::Column::Access, Expr::value(access.clone()));
            row.access = access;
        }
        row.updated_at = sigil_core::now();
        let txn = self.db.begin().await?;
        let res = update
            .col_expr(scope_set::Column::UpdatedAt, Expr::value(row.updated_at))
            .exec(&txn)
            .await?;
        if res.rows_affected == 0 {
            // Deleted meanwhile.
            return Err(Error::not_found("scope set"));
        }
        bump_version(&txn).await?;
        txn.commit().await?;
        row.try_into()
    }

    /// Deletes `tenant`'s set `slug`; returns it as it was.
    pub async fn delete(&self, tenant: TenantId, slug: &str) -> Result<CustomSet> {
        let row = find_row(&self.db, tenant, slug)
            .await?
            .ok_or_else(|| Error::not_found("scope set"))?;
        let txn = self.db.begin().await?;
        scope_set::Entity::delete_many_in(tenant)
            .filter(scope_set::Column::Id.eq(row.id))
            .exec(&txn)
            .await?;
        bump_version(&txn).await?;
        txn.commit().await?;
        row.try_into()
    }
}
