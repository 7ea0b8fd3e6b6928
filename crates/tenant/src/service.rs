//! Tenant records: onboarding, listing, renaming, enabling and the policy. A change to a
//! tenant is published on the change feed by the use case that made it, so every replica
//! drops what it cached of the tenant (its enabled flag, its policy); its audit event is
//! written in the change's transaction, so both commit or neither does.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, Func};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait,
};
use sigil_audit::{Actor, NewEvent};
use sigil_core::db::Db;
use sigil_core::page::{Page, PageRequest};
use sigil_core::{Change, ChangeFeed, Error, Result, TenantId};

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

impl Tenant {
    /// What `tenant.update` keeps of a tenant: its name and whether it is enabled.
    fn audit_view(&self) -> serde_json::Value {
        serde_json::json!({"name": self.name, "enabled": self.enabled})
    }

    /// The `tenant.create` event of onboarding, by `actor`, filed under the new tenant:
    /// written in the onboarding transaction (see `sigil_user::onboard`).
    pub fn created_event(&self, actor: &Actor, admin_username: &str) -> NewEvent {
        actor
            .event("tenant.create", "tenant")
            .in_tenant(self.id)
            .target(self.id)
            .after(serde_json::json!({
                "slug": self.slug,
                "name": self.name,
                "enabled": self.enabled,
                "admin_username": admin_username,
            }))
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

/// A tenant as it was before a change and as the change left it (for the audit log).
#[derive(Clone, Debug)]
pub struct TenantChange {
    pub before: Tenant,
    pub after: Tenant,
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
    changes: Arc<ChangeFeed>,
}

impl TenantService {
    pub fn new(db: Db, changes: Arc<ChangeFeed>) -> Self {
        Self { db, changes }
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
        self.model(id).await?.try_into()
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

    /// Renames, enables or disables a tenant (`tenant.update`, filed under the tenant);
    /// every replica stops serving what it cached of the tenant before this returns (a
    /// disabled tenant's tokens stop at once).
    pub async fn update(
        &self,
        actor: &Actor,
        id: TenantId,
        patch: TenantPatch,
    ) -> Result<TenantChange> {
        self.change(id, patch, |change| {
            actor
                .event("tenant.update", "tenant")
                .in_tenant(id)
                .target(id)
                .before(change.before.audit_view())
                .after(change.after.audit_view())
        })
        .await
    }

    /// Disables a tenant (`tenant.disable`, filed under the tenant): its logins and tokens
    /// stop working at once.
    pub async fn disable(&self, actor: &Actor, id: TenantId) -> Result<TenantChange> {
        let patch = TenantPatch {
            name: None,
            enabled: Some(false),
        };
        self.change(id, patch, |change| {
            actor
                .event("tenant.disable", "tenant")
                .in_tenant(id)
                .target(id)
                .before(serde_json::json!({"enabled": change.before.enabled}))
                .after(serde_json::json!({"enabled": change.after.enabled}))
        })
        .await
    }

    /// Applies `patch` and writes the event `audit` makes of the change, in one
    /// transaction; then publishes the change.
    async fn change(
        &self,
        id: TenantId,
        patch: TenantPatch,
        audit: impl FnOnce(&TenantChange) -> NewEvent,
    ) -> Result<TenantChange> {
        let txn = self.db.begin().await?;
        let current = model(&txn, id).await?;
        let before = Tenant::try_from(current.clone())?;
        let mut row: tenant::ActiveModel = current.into();
        if let Some(name) = patch.name {
            validate_name(&name)?;
            row.name = Set(name);
        }
        if let Some(enabled) = patch.enabled {
            row.enabled = Set(enabled);
        }
        row.updated_at = Set(sigil_core::now());
        let after = Tenant::try_from(row.update(&txn).await?)?;
        let change = TenantChange { before, after };
        sigil_audit::write(&txn, audit(&change)).await?;
        txn.commit().await?;
        self.changes.publish(Change::Tenant { tenant: id }).await;
        Ok(change)
    }

    /// Replaces the tenant's policy (`tenant.update_policy`, the whole policy before and
    /// after); cached verifications of the tenant follow it at once.
    pub async fn update_policy(
        &self,
        actor: &Actor,
        id: TenantId,
        policy: TenantPolicy,
    ) -> Result<Tenant> {
        self.update_policy_with(actor, id, policy, &crate::NoEffects)
            .await
    }

    /// [`TenantService::update_policy`], with the change's consequences (`effects`)
    /// checked and applied in the same transaction.
    pub async fn update_policy_with(
        &self,
        actor: &Actor,
        id: TenantId,
        policy: TenantPolicy,
        effects: &dyn crate::PolicyEffects,
    ) -> Result<Tenant> {
        policy.validate()?;
        let txn = self.db.begin().await?;
        let current = model(&txn, id).await?;
        let before = Tenant::try_from(current.clone())?;
        effects
            .apply(&txn, actor, id, &before.policy, &policy)
            .await?;
        let mut row: tenant::ActiveModel = current.into();
        row.policy = Set(serde_json::to_string(&policy).map_err(Error::internal)?);
        row.updated_at = Set(sigil_core::now());
        let tenant = Tenant::try_from(row.update(&txn).await?)?;
        let event = actor
            .event("tenant.update_policy", "tenant")
            .in_tenant(id)
            .target(id)
            .before(before.policy.audit_view())
            .after(tenant.policy.audit_view());
        sigil_audit::write(&txn, event).await?;
        txn.commit().await?;
        self.changes.publish(Change::Tenant { tenant: id }).await;
        Ok(tenant)
    }

    async fn model(&self, id: TenantId) -> Result<tenant::Model> {
        model(&self.db, id).await
    }
}

async fn model(conn: &impl ConnectionTrait, id: TenantId) -> Result<tenant::Model> {
    tenant::Entity::find_by_id(id)
        .one(conn)
        .await?
        .ok_or_else(|| Error::not_found("tenant"))
}

#[cfg(test)]
mod tests {
    use tokio::sync::broadcast::error::TryRecvError;

    use super::*;
    use crate::test_db;

    fn code_of(e: &Error) -> &'static str {
        match e {
            Error::Invalid { code, .. } | Error::Conflict { code, .. } => code,
            Error::NotFound { .. } => "not_found",
            other => panic!("unexpected error {other:?}"),
        }
    }

    fn new_tenant(slug: &str) -> NewTenant {
        NewTenant {
            slug: slug.into(),
            name: None,
            policy: None,
        }
    }

    async fn service() -> TenantService {
        let db = test_db::migrated().await;
        TenantService::new(db.clone(), test_db::feed(&db))
    }

    #[test]
    fn slugs_are_lowercase_words_joined_by_hyphens() {
        for good in ["ab", "acme", "acme-2", "a1-b2-c3", &"x".repeat(63)] {
            assert!(validate_slug(good).is_ok(), "{good:?} is a valid slug");
        }
        for bad in [
            "",
            "a",
            &"x".repeat(64),
            "Acme",
            "-acme",
            "acme-",
            "ac me",
            "ac_me",
            "acmé",
        ] {
            let err = validate_slug(bad).err();
            assert!(
                matches!(err, Some(Error::Invalid { code: "invalid_slug", ref errors, .. })
                    if errors.iter().all(|e| e.field == "slug")),
                "{bad:?} must be refused, got {err:?}"
            );
        }
    }

    #[test]
    fn names_count_characters_not_bytes() {
        assert!(validate_name("Acme").is_ok());
        assert!(validate_name(&"é".repeat(200)).is_ok());
        assert!(validate_name(&"é".repeat(201)).is_err());
        assert!(validate_name("").is_err());
        assert!(validate_name("  \t ").is_err());
    }

    #[tokio::test]
    async fn a_new_tenant_is_enabled_named_after_its_slug_with_the_default_policy() {
        let tenants = service().await;
        let created = tenants
            .insert(&tenants.db, new_tenant("acme"))
            .await
            .unwrap();
        assert_eq!(created.name, "acme");
        assert!(created.enabled);
        assert_eq!(created.policy, TenantPolicy::default());
        let read = tenants.get(created.id).await.unwrap();
        assert_eq!(read.slug, "acme");
        assert_eq!(read.policy, TenantPolicy::default());
        let by_slug = tenants.get_by_slug("acme").await.unwrap().unwrap();
        assert_eq!(by_slug.id, created.id);
    }

    #[tokio::test]
    async fn a_taken_slug_is_a_conflict() {
        let tenants = service().await;
        tenants
            .insert(&tenants.db, new_tenant("acme"))
            .await
            .unwrap();
        let again = tenants.insert(&tenants.db, new_tenant("acme")).await;
        assert_eq!(again.err().as_ref().map(code_of), Some("tenant_exists"));
    }

    #[tokio::test]
    async fn a_tenant_with_an_invalid_policy_is_not_stored() {
        let tenants = service().await;
        let new = NewTenant {
            policy: Some(TenantPolicy {
                session_lifetime_secs: 10,
                ..TenantPolicy::default()
            }),
            ..new_tenant("acme")
        };
        let refused = tenants.insert(&tenants.db, new).await;
        assert_eq!(refused.err().as_ref().map(code_of), Some("invalid_policy"));
        assert!(tenants.get_by_slug("acme").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn an_update_returns_both_sides_and_is_published() {
        let tenants = service().await;
        let mut changes = tenants.changes.subscribe();
        let t = tenants
            .insert(&tenants.db, new_tenant("acme"))
            .await
            .unwrap();
        let patch = TenantPatch {
            name: Some("Acme Corp".into()),
            enabled: None,
        };
        let changed = tenants
            .update(&Actor::operator(), t.id, patch)
            .await
            .unwrap();
        assert_eq!(changed.before.name, "acme");
        assert_eq!(changed.after.name, "Acme Corp");
        assert!(changed.after.enabled);
        assert!(changed.after.updated_at >= changed.before.updated_at);
        assert_eq!(tenants.get(t.id).await.unwrap().name, "Acme Corp");
        assert_eq!(changes.try_recv(), Ok(Change::Tenant { tenant: t.id }));
        assert_eq!(changes.try_recv(), Err(TryRecvError::Empty));
    }

    #[tokio::test]
    async fn disabling_is_published() {
        let tenants = service().await;
        let t = tenants
            .insert(&tenants.db, new_tenant("acme"))
            .await
            .unwrap();
        let mut changes = tenants.changes.subscribe();
        let changed = tenants.disable(&Actor::operator(), t.id).await.unwrap();
        assert!(changed.before.enabled);
        assert!(!changed.after.enabled);
        assert!(!tenants.get(t.id).await.unwrap().enabled);
        assert_eq!(changes.try_recv(), Ok(Change::Tenant { tenant: t.id }));
    }

    #[tokio::test]
    async fn a_refused_update_changes_and_publishes_nothing() {
        let tenants = service().await;
        let t = tenants
            .insert(&tenants.db, new_tenant("acme"))
            .await
            .unwrap();
        let mut changes = tenants.changes.subscribe();
        let patch = TenantPatch {
            name: Some(" ".into()),
            enabled: Some(false),
        };
        let refused = tenants.update(&Actor::operator(), t.id, patch).await;
        assert_eq!(refused.err().as_ref().map(code_of), Some("invalid_name"));
        let unknown = tenants.disable(&Actor::operator(), TenantId::new()).await;
        assert_eq!(unknown.err().as_ref().map(code_of), Some("not_found"));
        let bad_policy = TenantPolicy {
            login_max_failures: 0,
            ..TenantPolicy::default()
        };
        let refused = tenants
            .update_policy(&Actor::operator(), t.id, bad_policy)
            .await;
        assert_eq!(refused.err().as_ref().map(code_of), Some("invalid_policy"));
        let stored = tenants.get(t.id).await.unwrap();
        assert!(stored.enabled);
        assert_eq!(stored.name, "acme");
        assert_eq!(stored.policy, TenantPolicy::default());
        assert_eq!(changes.try_recv(), Err(TryRecvError::Empty));
    }

    #[tokio::test]
    async fn a_new_policy_is_stored_and_published() {
        let tenants = service().await;
        let t = tenants
            .insert(&tenants.db, new_tenant("acme"))
            .await
            .unwrap();
        let mut changes = tenants.changes.subscribe();
        let policy = TenantPolicy {
            require_two_factor: true,
            ip_allowlist: vec!["10.0.0.0/8".into()],
            ..TenantPolicy::default()
        };
        let updated = tenants
            .update_policy(&Actor::operator(), t.id, policy.clone())
            .await
            .unwrap();
        assert_eq!(updated.policy, policy);
        assert_eq!(tenants.get(t.id).await.unwrap().policy, policy);
        assert_eq!(changes.try_recv(), Ok(Change::Tenant { tenant: t.id }));
    }

    #[tokio::test]
    async fn the_list_searches_slug_and_name_and_pages_by_slug() {
        let tenants = service().await;
        for (slug, name) in [
            ("beta", "Widgets Ltd"),
            ("alpha", "Acme"),
            ("gamma", "ACME East"),
        ] {
            let new = NewTenant {
                name: Some(name.into()),
                ..new_tenant(slug)
            };
            tenants.insert(&tenants.db, new).await.unwrap();
        }
        let slugs = |page: &Page<Tenant>| {
            page.items
                .iter()
                .map(|t| t.slug.clone())
                .collect::<Vec<_>>()
        };
        let all = tenants.list(None, PageRequest::default()).await.unwrap();
        assert_eq!(slugs(&all), ["alpha", "beta", "gamma"]);
        assert_eq!(all.total, 3);
        // The name matches whatever its case; the slug matches too.
        let acme = tenants
            .list(Some("acme"), PageRequest::default())
            .await
            .unwrap();
        assert_eq!(slugs(&acme), ["alpha", "gamma"]);
        let beta = tenants
            .list(Some("bet"), PageRequest::default())
            .await
            .unwrap();
        assert_eq!(slugs(&beta), ["beta"]);
        // `%` is searched for literally, not as a wildcard.
        let none = tenants
            .list(Some("%"), PageRequest::default())
            .await
            .unwrap();
        assert_eq!(none.total, 0);
        let second = PageRequest::new(Some(1), Some(1)).unwrap();
        let page = tenants.list(None, second).await.unwrap();
        assert_eq!(slugs(&page), ["beta"]);
        assert_eq!(page.total, 3);
    }

    #[tokio::test]
    async fn an_operators_update_is_one_event_filed_under_the_tenant() {
        let tenants = service().await;
        let t = tenants
            .insert(&tenants.db, new_tenant("acme"))
            .await
            .unwrap();
        let patch = TenantPatch {
            name: Some("Acme Corp".into()),
            enabled: None,
        };
        tenants
            .update(&test_db::operator(), t.id, patch)
            .await
            .unwrap();
        let events = test_db::events(&tenants.db).await;
        assert_eq!(events.len(), 1, "{events:#?}");
        let e = &events[0];
        assert_eq!(e.action, "tenant.update");
        assert_eq!(e.target_type, "tenant");
        assert_eq!(e.target_id, Some(t.id.to_string()));
        assert_eq!(e.tenant_id, Some(t.id));
        assert_eq!(e.actor_id, None);
        assert_eq!(e.actor_label, "operator");
        assert_eq!(e.credential_id, None);
        assert_eq!(e.client_ip.as_deref(), Some("192.0.2.1"));
        assert_eq!(e.user_agent.as_deref(), Some("curl/8"));
        assert_eq!(
            test_db::json(&e.before),
            serde_json::json!({"name": "acme", "enabled": true})
        );
        assert_eq!(
            test_db::json(&e.after),
            serde_json::json!({"name": "Acme Corp", "enabled": true})
        );
    }

    #[tokio::test]
    async fn disabling_is_one_event_with_the_enabled_flag_only() {
        let tenants = service().await;
        let t = tenants
            .insert(&tenants.db, new_tenant("acme"))
            .await
            .unwrap();
        tenants.disable(&test_db::operator(), t.id).await.unwrap();
        let events = test_db::events(&tenants.db).await;
        assert_eq!(events.len(), 1, "{events:#?}");
        let e = &events[0];
        assert_eq!(e.action, "tenant.disable");
        assert_eq!(e.tenant_id, Some(t.id));
        assert_eq!(e.target_id, Some(t.id.to_string()));
        assert_eq!(e.actor_label, "operator");
        assert_eq!(
            test_db::json(&e.before),
            serde_json::json!({"enabled": true})
        );
        assert_eq!(
            test_db::json(&e.after),
            serde_json::json!({"enabled": false})
        );
    }

    #[tokio::test]
    async fn a_policy_change_is_one_event_by_the_admin_with_both_policies() {
        let tenants = service().await;
        let t = tenants
            .insert(&tenants.db, new_tenant("acme"))
            .await
            .unwrap();
        let admin = test_db::alice(t.id);
        let policy = TenantPolicy {
            max_tokens_per_user: 42,
            default_token_rate_limits: vec![sigil_limits::RateLimit::new("burst", 1, 10)],
            ..TenantPolicy::default()
        };
        tenants
            .update_policy(&admin, t.id, policy.clone())
            .await
            .unwrap();
        let events = test_db::events(&tenants.db).await;
        assert_eq!(events.len(), 1, "{events:#?}");
        let e = &events[0];
        assert_eq!(e.action, "tenant.update_policy");
        assert_eq!(e.target_type, "tenant");
        assert_eq!(e.target_id, Some(t.id.to_string()));
        assert_eq!(e.tenant_id, Some(t.id));
        assert_eq!(e.actor_id, admin.user);
        assert_eq!(e.actor_label, "alice");
        assert_eq!(e.credential_id, admin.credential);
        assert_eq!(e.client_ip.as_deref(), Some("192.0.2.7"));
        assert_eq!(e.user_agent.as_deref(), Some("sdk/1"));
        assert_eq!(
            test_db::json(&e.before),
            TenantPolicy::default().audit_view()
        );
        let after = test_db::json(&e.after);
        assert_eq!(after, policy.audit_view());
        assert_eq!(after["max_tokens_per_user"], 42);
        assert_eq!(
            after["default_token_rate_limits"],
            serde_json::json!([{"name": "burst", "window_secs": 1, "limit": 10}])
        );
    }

    #[tokio::test]
    async fn a_refused_change_writes_no_event() {
        let tenants = service().await;
        let t = tenants
            .insert(&tenants.db, new_tenant("acme"))
            .await
            .unwrap();
        let op = test_db::operator();
        let patch = TenantPatch {
            name: Some(" ".into()),
            enabled: Some(false),
        };
        assert!(tenants.update(&op, t.id, patch).await.is_err());
        assert!(tenants.disable(&op, TenantId::new()).await.is_err());
        let bad_policy = TenantPolicy {
            login_max_failures: 0,
            ..TenantPolicy::default()
        };
        let admin = test_db::alice(t.id);
        assert!(tenants
            .update_policy(&admin, t.id, bad_policy)
            .await
            .is_err());
        let unknown = tenants
            .update_policy(&op, TenantId::new(), TenantPolicy::default())
            .await;
        assert_eq!(unknown.err().as_ref().map(code_of), Some("not_found"));
        assert!(test_db::events(&tenants.db).await.is_empty());
        // The connection is free again: the refused transactions were rolled back.
        tenants.disable(&op, t.id).await.unwrap();
        assert_eq!(test_db::events(&tenants.db).await.len(), 1);
    }

    #[test]
    fn the_creation_event_is_filed_under_the_new_tenant() {
        let now = sigil_core::now();
        let t = Tenant {
            id: TenantId::new(),
            slug: "acme".into(),
            name: "Acme".into(),
            enabled: true,
            policy: TenantPolicy::default(),
            created_at: now,
            updated_at: now,
        };
        let e = t.created_event(&test_db::operator(), "root");
        assert_eq!(e.action, "tenant.create");
        assert_eq!(e.target_type, "tenant");
        assert_eq!(e.target_id, Some(t.id.to_string()));
        assert_eq!(e.tenant, Some(t.id));
        assert_eq!(e.actor, None);
        assert_eq!(e.actor_label, "operator");
        assert_eq!(e.client_ip.as_deref(), Some("192.0.2.1"));
        assert_eq!(e.before, None);
        assert_eq!(
            e.after,
            Some(serde_json::json!({
                "slug": "acme", "name": "Acme", "enabled": true, "admin_username": "root",
            }))
        );
    }
}
