use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, Func};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, Select, Set,
    TransactionTrait,
};
use sigil_core::db::Db;
use sigil_core::{Error, Result, ScopeSetId, TenantId};

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

fn in_tenant(tenant: TenantId) -> Select<scope_set::Entity> {
    scope_set::Entity::find().filter(scope_set::Column::TenantId.eq(tenant))
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
        in_tenant(tenant)
            .filter(scope_set::Column::Slug.eq(slug))
            .one(&self.db)
            .await?
            .map(CustomSet::try_from)
            .transpose()
    }

    pub async fn list(&self, tenant: TenantId, q: Option<&str>) -> Result<Vec<CustomSet>> {
        let mut query = in_tenant(tenant);
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

    pub async fn update(
        &self,
        tenant: TenantId,
        slug: &str,
        name: Option<String>,
        description: Option<String>,
        entries: Option<Vec<String>>,
        access: Option<Option<Access>>,
    ) -> Result<CustomSet> {
        let current = in_tenant(tenant)
            .filter(scope_set::Column::Slug.eq(slug))
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::not_found("scope set"))?;
        let txn = self.db.begin().await?;
        let mut model: scope_set::ActiveModel = current.into();
        if let Some(name) = name {
            model.name = Set(name);
        }
        if let Some(description) = description {
            model.description = Set(description);
        }
        if let Some(entries) = entries {
            model.entries = Set(serde_json::to_string(&entries).map_err(Error::internal)?);
        }
        if let Some(access) = access {
            model.access = Set(access.map(|a| a.as_str().to_owned()));
        }
        model.updated_at = Set(sigil_core::now());
        let updated = model.update(&txn).await?;
        bump_version(&txn).await?;
        txn.commit().await?;
        updated.try_into()
    }

    pub async fn delete(&self, tenant: TenantId, slug: &str) -> Result<CustomSet> {
        let current = in_tenant(tenant)
            .filter(scope_set::Column::Slug.eq(slug))
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::not_found("scope set"))?;
        let txn = self.db.begin().await?;
        scope_set::Entity::delete_by_id(current.id)
            .exec(&txn)
            .await?;
        bump_version(&txn).await?;
        txn.commit().await?;
        current.try_into()
    }
}
