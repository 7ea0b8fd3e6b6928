//! Tenant records: onboarding, listing, renaming, enabling and the policy.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, Func};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set,
};
use sigil_core::db::Db;
use sigil_core::page::{Page, PageRequest};
use sigil_core::{Error, Result, TenantId};

use crate::entity::tenant;
use crate::policy::TenantPolicy;

#[derive(Clone, Debug)]
pub struct Tenant {
    pub id: TenantId,
    pub slug: String,
    pub name: String,
    pub enabled: bool,
    pub policy: TenantPolicy,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TryFrom<tenant::Model> for Tenant {
    type Error = Error;
    fn try_from(m: tenant::Model) -> Result<Self> {
        Ok(Self {
            policy: serde_json::from_str(&m.policy).map_err(Error::internal)?,
            id: m.id,
            slug: m.slug,
            name: m.name,
            enabled: m.enabled,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

#[derive(Clone, Debug)]
pub struct NewTenant {
    pub slug: String,
    pub name: Option<String>,
    pub policy: Option<TenantPolicy>,
}

#[derive(Clone, Debug, Default)]
pub struct TenantPatch {
    pub name: Option<String>,
    pub enabled: Option<bool>,
}

pub fn validate_slug(slug: &str) -> Result<()> {
    let ok = (2..=63).contains(&slug.len())
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !slug.starts_with('-')
        && !slug.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_field(
            "invalid_slug",
            "slug",
            "slug must be 2-63 characters of a-z, 0-9 and '-', not starting or ending with '-'",
        ))
    }
}

fn validate_name(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.chars().count() > 200 {
        return Err(Error::invalid_field(
            "invalid_name",
            "name",
            "name must be 1-200 characters",
        ));
    }
    Ok(())
}

#[derive(Clone)]
pub struct TenantService {
    db: Db,
}

impl TenantService {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Inserts the tenant row inside the caller's transaction (onboarding also creates the
    /// first key and users in the same transaction).
    pub async fn insert(&self, conn: &impl ConnectionTrait, new: NewTenant) -> Result<Tenant> {
        validate_slug(&new.slug)?;
        let name = new.name.unwrap_or_else(|| new.slug.clone());
        validate_name(&name)?;
        let policy = new.policy.unwrap_or_default();
        policy.validate()?;
        let exists = tenant::Entity::find()
            .filter(tenant::Column::Slug.eq(new.slug.as_str()))
            .count(conn)
            .await?;
        if exists > 0 {
            return Err(Error::conflict(
                "tenant_exists",
                "a tenant with this slug exists",
            ));
        }
        let now = sigil_core::now();
        let model = tenant::ActiveModel {
            id: Set(TenantId::new()),
            slug: Set(new.slug),
            name: Set(name),
            enabled: Set(true),
            policy: Set(serde_json::to_string(&policy).map_err(Error::internal)?),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(conn)
        .await
        .map_err(|e| match Error::from(e) {
            Error::Conflict { .. } => {
                Error::conflict("tenant_exists", "a tenant with this slug exists")
            }
            other => other,
        })?;
        model.try_into()
    }

    pub async fn get(&self, id: TenantId) -> Result<Tenant> {
        tenant::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::not_found("tenant"))?
            .try_into()
    }

    pub async fn find(&self, id: TenantId) -> Result<Option<Tenant>> {
        tenant::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .map(Tenant::try_from)
            .transpose()
    }

    pub async fn get_by_slug(&self, slug: &str) -> Result<Option<Tenant>> {
        tenant::Entity::find()
            .filter(tenant::Column::Slug.eq(slug))
            .one(&self.db)
            .await?
            .map(Tenant::try_from)
            .transpose()
    }

    pub async fn list(&self, q: Option<&str>, page: PageRequest) -> Result<Page<Tenant>> {
        let mut query = tenant::Entity::find();
        if let Some(q) = q.filter(|q| !q.is_empty()) {
            let pattern = sigil_core::page::contains_pattern(q);
            query = query.filter(
                Condition::any()
                    .add(Expr::col(tenant::Column::Slug).like(pattern.clone()))
                    .add(Expr::expr(Func::lower(Expr::col(tenant::Column::Name))).like(pattern)),
            );
        }
        let total = query.clone().count(&self.db).await?;
        let items = query
            .order_by_asc(tenant::Column::Slug)
            .offset(page.offset)
            .limit(page.limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(Tenant::try_from)
            .collect::<Result<Vec<_>>>()?;
        Ok(Page { items, total })
    }

    pub async fn update(&self, id: TenantId, patch: TenantPatch) -> Result<Tenant> {
        let current = tenant::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::not_found("tenant"))?;
        let mut model: tenant::ActiveModel = current.into();
        if let Some(name) = patch.name {
            validate_name(&name)?;
            model.name = Set(name);
        }
        if let Some(enabled) = patch.enabled {
            model.enabled = Set(enabled);
        }
        model.updated_at = Set(sigil_core::now());
        model.update(&self.db).await?.try_into()
    }

    pub async fn update_policy(&self, id: TenantId, policy: TenantPolicy) -> Result<Tenant> {
        policy.validate()?;
        let current = tenant::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::not_found("tenant"))?;
        let mut model: tenant::ActiveModel = current.into();
        model.policy = Set(serde_json::to_string(&policy).map_err(Error::internal)?);
        model.updated_at = Set(sigil_core::now());
        model.update(&self.db).await?.try_into()
    }
}
