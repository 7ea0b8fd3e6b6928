//! User records of a tenant. Every query is scoped by tenant id: a user id of another
//! tenant is simply not found.

use sea_orm::sea_query::{Expr, Func};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Select, Set, TransactionTrait,
};
use sigil_core::db::Db;
use sigil_core::page::{Page, PageRequest};
use sigil_core::{Error, FieldError, Result, TenantId, UserId};

use crate::entity;
use crate::password::PasswordHasher;
use crate::types::{Role, User, UserKind, SYSTEM_USERNAME};

#[derive(Clone, Debug)]
pub struct NewUser {
    pub username: String,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub kind: UserKind,
    pub role: Role,
    pub api_access: bool,
    pub password: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct UserPatch {
    pub display_name: Option<String>,
    pub email: Option<Option<String>>,
    pub role: Option<Role>,
    pub api_access: Option<bool>,
    pub active: Option<bool>,
}

#[derive(Clone, Debug, Default)]
pub struct UserFilter {
    pub q: Option<String>,
    pub role: Option<Role>,
    pub kind: Option<UserKind>,
    pub active: Option<bool>,
    /// Only users with (true) or without (false) two-factor sign-in on.
    pub two_factor: Option<bool>,
}

fn in_tenant(tenant: TenantId) -> Select<entity::Entity> {
    entity::Entity::find().filter(entity::Column::TenantId.eq(tenant))
}

async fn model_in(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    id: UserId,
) -> Result<entity::Model> {
    in_tenant(tenant)
        .filter(entity::Column::Id.eq(id))
        .one(conn)
        .await?
        .ok_or_else(|| Error::not_found("user"))
}

async fn active_admins_other_than(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    id: UserId,
) -> Result<u64> {
    Ok(in_tenant(tenant)
        .filter(entity::Column::Role.eq(Role::Admin.as_str()))
        .filter(entity::Column::Active.eq(true))
        .filter(entity::Column::ApiAccess.eq(true))
        .filter(entity::Column::Id.ne(id))
        .count(conn)
        .await?)
}

/// Serialises, per tenant, user updates and deletions (the ones that could remove its last
/// active admin among them): each first writes the tenant's system-user row inside its
/// transaction. That is a row lock on PostgreSQL and the write lock on SQLite, so the admin
/// count read next is current and two admins stepping down at once cannot both succeed.
async fn lock_admin_changes(conn: &impl ConnectionTrait, tenant: TenantId) -> Result<()> {
    entity::Entity::update_many()
        .col_expr(
            entity::Column::UpdatedAt,
            Expr::col(entity::Column::UpdatedAt).into(),
        )
        .filter(entity::Column::TenantId.eq(tenant))
        .filter(entity::Column::IsSystem.eq(true))
        .exec(conn)
        .await?;
    Ok(())
}

pub fn validate_username(username: &str) -> Result<()> {
    let ok = (1..=64).contains(&username.len())
        && username
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
    if !ok {
        return Err(Error::invalid_field(
            "invalid_username",
            "username",
            "username must be 1-64 characters of letters, digits, '.', '_', '-' and '@'",
        ));
    }
    Ok(())
}

fn validate_contact(display_name: &str, email: Option<&str>) -> Result<()> {
    let mut errors = Vec::new();
    if display_name.trim().is_empty() || display_name.chars().count() > 200 {
        errors.push(FieldError::new(
            "display_name",
            "display_name must be 1-200 characters",
        ));
    }
    if let Some(email) = email {
        let valid = email.len() <= 254
            && email
                .split_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && d.contains('.'))
            && !email.chars().any(char::is_whitespace);
        if !valid {
            errors.push(FieldError::new("email", "email is not a valid address"));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::invalid_with(
            "invalid_user",
            "the user's fields are invalid",
            errors,
        ))
    }
}

#[derive(Clone)]
pub struct UserService {
    db: Db,
    hasher: PasswordHasher,
}

impl UserService {
    pub fn new(db: Db, hasher: PasswordHasher) -> Self {
        Self { db, hasher }
    }

    pub fn hasher(&self) -> &PasswordHasher {
        &self.hasher
    }

    /// Creates a user inside the caller's transaction or connection.
    pub async fn insert(
        &self,
        conn: &impl ConnectionTrait,
        tenant: TenantId,
        new: NewUser,
    ) -> Result<User> {
        validate_username(&new.username)?;
        if new.username.eq_ignore_ascii_case(SYSTEM_USERNAME) {
            return Err(Error::conflict(
                "user_exists",
                "the username 'system' is reserved",
            ));
        }
        let display_name = new.display_name.unwrap_or_else(|| new.username.clone());
        validate_contact(&display_name, new.email.as_deref())?;
        let password_hash = match new.password {
            Some(password) => {
                self.hasher
                    .check_policy("password", &new.username, &password)?;
                Some(self.hasher.hash(password).await?)
            }
            None => None,
        };
        let taken = in_tenant(tenant)
            .filter(entity::Column::Username.eq(new.username.as_str()))
            .count(conn)
            .await?;
        if taken > 0 {
            return Err(Error::conflict(
                "user_exists",
                "a user with this username exists",
            ));
        }
        let now = sigil_core::now();
        let model = entity::ActiveModel {
            id: Set(UserId::new()),
            tenant_id: Set(tenant),
            username: Set(new.username),
            display_name: Set(display_name),
            email: Set(new.email),
            kind: Set(new.kind.as_str().to_owned()),
            role: Set(new.role.as_str().to_owned()),
            api_access: Set(new.api_access),
            active: Set(true),
            is_system: Set(false),
            password_hash: Set(password_hash),
            created_at: Set(now),
            updated_at: Set(now),
            two_factor_enabled_at: Set(None),
        }
        .insert(conn)
        .await
        .map_err(|e| match Error::from(e) {
            Error::Conflict { .. } => {
                Error::conflict("user_exists", "a user with this username exists")
            }
            other => other,
        })?;
        User::try_from(&model)
    }

    pub async fn create(&self, tenant: TenantId, new: NewUser) -> Result<User> {
        self.insert(&self.db, tenant, new).await
    }

    pub async fn get(&self, tenant: TenantId, id: UserId) -> Result<User> {
        let model = in_tenant(tenant)
            .filter(entity::Column::Id.eq(id))
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::not_found("user"))?;
        User::try_from(&model)
    }

    pub async fn find(&self, tenant: TenantId, id: UserId) -> Result<Option<User>> {
        in_tenant(tenant)
            .filter(entity::Column::Id.eq(id))
            .one(&self.db)
            .await?
            .as_ref()
            .map(User::try_from)
            .transpose()
    }

    pub async fn list(
        &self,
        tenant: TenantId,
        filter: UserFilter,
        page: PageRequest,
    ) -> Result<Page<User>> {
        let mut query = in_tenant(tenant);
        if let Some(q) = filter.q.filter(|q| !q.is_empty()) {
            let pattern = sigil_core::page::contains_pattern(&q);
            query = query.filter(
                Condition::any()
                    .add(
                        Expr::expr(Func::lower(Expr::col(entity::Column::Username)))
                            .like(pattern.clone()),
                    )
                    .add(
                        Expr::expr(Func::lower(Expr::col(entity::Column::DisplayName)))
                            .like(pattern.clone()),
                    )
                    .add(Expr::expr(Func::lower(Expr::col(entity::Column::Email))).like(pattern)),
            );
        }
        if let Some(role) = filter.role {
            query = query.filter(entity::Column::Role.eq(role.as_str()));
        }
        if let Some(kind) = filter.kind {
            query = query.filter(entity::Column::Kind.eq(kind.as_str()));
        }
        if let Some(active) = filter.active {
            query = query.filter(entity::Column::Active.eq(active));
        }
        match filter.two_factor {
            Some(true) => query = query.filter(entity::Column::TwoFactorEnabledAt.is_not_null()),
            Some(false) => query = query.filter(entity::Column::TwoFactorEnabledAt.is_null()),
            None => {}
        }
        let total = query.clone().count(&self.db).await?;
        let items = query
            .order_by_asc(entity::Column::Username)
            .offset(page.offset)
            .limit(page.limit)
            .all(&self.db)
            .await?
            .iter()
            .map(User::try_from)
            .collect::<Result<Vec<_>>>()?;
        Ok(Page { items, total })
    }

    async fn model(&self, tenant: TenantId, id: UserId) -> Result<entity::Model> {
        model_in(&self.db, tenant, id).await
    }

    /// Applies a patch; refuses to change the system user or to leave the tenant without an
    /// active admin.
    pub async fn update(&self, tenant: TenantId, id: UserId, patch: UserPatch) -> Result<User> {
        // An admin without api_access cannot use the API: it does not count as one.
        let loses_admin = patch.role.is_some_and(|r| r != Role::Admin)
            || patch.active == Some(false)
            || patch.api_access == Some(false);
        let txn = self.db.begin().await?;
        // Always first: on SQLite a transaction that reads before it writes fails (busy
        // snapshot) when any other write lands in between.
        lock_admin_changes(&txn, tenant).await?;
        let current = model_in(&txn, tenant, id).await?;
        if current.is_system {
            return Err(Error::forbidden(
                "system_user",
                "the system user cannot be changed",
            ));
        }
        let was_admin =
            current.role == Role::Admin.as_str() && current.active && current.api_access;
        if was_admin && loses_admin && active_admins_other_than(&txn, tenant, id).await? == 0 {
            return Err(Error::conflict(
                "last_admin",
                "the tenant must keep one active admin",
            ));
        }
        let display_name = patch
            .display_name
            .clone()
            .unwrap_or(current.display_name.clone());
        let email = patch.email.clone().unwrap_or(current.email.clone());
        validate_contact(&display_name, email.as_deref())?;
        let deactivated = current.active && patch.active == Some(false);
        let mut model: entity::ActiveModel = current.into();
        model.display_name = Set(display_name);
        model.email = Set(email);
        if let Some(role) = patch.role {
            model.role = Set(role.as_str().to_owned());
        }
        if let Some(api_access) = patch.api_access {
            model.api_access = Set(api_access);
        }
        if let Some(active) = patch.active {
            model.active = Set(active);
        }
        model.updated_at = Set(sigil_core::now());
        let updated = model.update(&txn).await?;
        if deactivated {
            // With the change's transaction: the webhook outbox (sigil_core::outbox).
            sigil_core::outbox::enqueue(
                &txn,
                tenant,
                sigil_core::outbox::events::USER_DEACTIVATED,
                serde_json::json!({
                    "tenant_id": tenant.0,
                    "user_id": updated.id.0,
                    "username": updated.username,
                }),
            )
            .await?;
        }
        txn.commit().await?;
        User::try_from(&updated)
    }

    pub async fn delete(&self, tenant: TenantId, id: UserId) -> Result<User> {
        let txn = self.db.begin().await?;
        lock_admin_changes(&txn, tenant).await?;
        let current = model_in(&txn, tenant, id).await?;
        if current.is_system {
            return Err(Error::forbidden(
                "system_user",
                "the system user cannot be deleted",
            ));
        }
        if current.role == Role::Admin.as_str()
            && current.active
            && current.api_access
            && active_admins_other_than(&txn, tenant, id).await? == 0
        {
            return Err(Error::conflict(
                "last_admin",
                "the tenant must keep one active admin",
            ));
        }
        let user = User::try_from(&current)?;
        entity::Entity::delete_many()
            .filter(entity::Column::TenantId.eq(tenant))
            .filter(entity::Column::Id.eq(id))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(user)
    }

    /// Checks a username and password. Every refusal up to the password check answers the
    /// same `invalid_credentials` after the same amount of work, so usernames cannot be
    /// probed; a deactivated user is named only once the password is right.
    pub async fn authenticate(
        &self,
        tenant: TenantId,
        username: &str,
        password: String,
    ) -> Result<User> {
        let model = in_tenant(tenant)
            .filter(entity::Column::Username.eq(username))
            .one(&self.db)
            .await?
            .filter(|m| !m.is_system);
        let stored = model.as_ref().and_then(|m| m.password_hash.clone());
        let ok = self.hasher.verify(password, stored).await?;
        let model = match model {
            Some(m) if ok => m,
            _ => {
                return Err(Error::unauthorized(
                    "invalid_credentials",
                    "the username or password is wrong",
                ))
            }
        };
        if !model.active {
            return Err(Error::unauthorized(
                "user_deactivated",
                "the user is deactivated",
            ));
        }
        User::try_from(&model)
    }

    pub async fn check_password(
        &self,
        tenant: TenantId,
        id: UserId,
        password: String,
    ) -> Result<bool> {
        let model = self.model(tenant, id).await?;
        self.hasher.verify(password, model.password_hash).await
    }

    pub async fn set_password(&self, tenant: TenantId, id: UserId, password: String) -> Result<()> {
        let current = self.model(tenant, id).await?;
        if current.is_system {
            return Err(Error::forbidden(
                "system_user",
                "the system user has no password",
            ));
        }
        self.hasher
            .check_policy("new_password", &current.username, &password)?;
        let hash = self.hasher.hash(password).await?;
        let mut model: entity::ActiveModel = current.into();
        model.password_hash = Set(Some(hash));
        model.updated_at = Set(sigil_core::now());
        model.update(&self.db).await?;
        Ok(())
    }

    /// Inserts the built-in `system` user of a tenant (no password, no API access).
    pub(crate) async fn insert_system(
        &self,
        conn: &impl ConnectionTrait,
        tenant: TenantId,
    ) -> Result<()> {
        let now = sigil_core::now();
        entity::Entity::insert(entity::ActiveModel {
            id: Set(UserId::new()),
            tenant_id: Set(tenant),
            username: Set(SYSTEM_USERNAME.to_owned()),
            display_name: Set("System".to_owned()),
            email: Set(None),
            kind: Set(UserKind::Api.as_str().to_owned()),
            role: Set(Role::Member.as_str().to_owned()),
            api_access: Set(false),
            active: Set(true),
            is_system: Set(true),
            password_hash: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
            two_factor_enabled_at: Set(None),
        })
        .exec_without_returning(conn)
        .await?;
        Ok(())
    }
}
