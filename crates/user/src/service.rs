//! The use cases of a tenant's users: create, read, change (a new password too), delete.
//! Each owns its transaction, writes its audit event in it (`sigil_audit::write`, for the
//! [`Actor`] it is given) and publishes its change to the caches. Every query is
//! scoped by tenant: a user id of another tenant is simply not found.

use std::sync::Arc;

use sea_orm::sea_query::{Expr, Func};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait,
};
use sigil_audit::{Actor, NewEvent};
use sigil_core::db::Db;
use sigil_core::page::{Page, PageRequest};
use sigil_core::{Change, ChangeFeed, Error, Result, TenantId, TenantOwned, TokenId, UserId};

use crate::entity::{self, Column, Entity};
use crate::password::PasswordHasher;
use crate::sessions::SessionEnder;
use crate::types::{Role, User, UserKind, SYSTEM_USERNAME};
use crate::validate::validate_contact;
pub use crate::validate::validate_username;

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
    /// A new password set by an admin: every login session of the user ends with it.
    pub password: Option<String>,
    /// The user's rate limits, shared by all of their tokens (an empty list removes them).
    pub rate_limits: Option<Vec<sigil_limits::RateLimit>>,
}

/// What a user changes of their own profile.
#[derive(Clone, Debug, Default)]
pub struct ProfilePatch {
    pub display_name: Option<String>,
    /// `Some(None)` clears the address.
    pub email: Option<Option<String>>,
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

pub(crate) async fn model_in(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    id: UserId,
) -> Result<entity::Model> {
    Entity::find_by_id_in(tenant, id)
        .one(conn)
        .await?
        .ok_or_else(|| Error::not_found("user"))
}

async fn active_admins_other_than(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    id: UserId,
) -> Result<u64> {
    Ok(Entity::find_in(tenant)
        .filter(Column::Role.eq(Role::Admin.as_str()))
        .filter(Column::Active.eq(true))
        .filter(Column::ApiAccess.eq(true))
        .filter(Column::Id.ne(id))
        .count(conn)
        .await?)
}

/// Serialises, per tenant, user updates and deletions (the ones that could remove its last
/// active admin among them): each first writes the tenant's system-user row inside its
/// transaction. That is a row lock on PostgreSQL and the write lock on SQLite, so the admin
/// count read next is current and two admins stepping down at once cannot both succeed.
async fn lock_admin_changes(conn: &impl ConnectionTrait, tenant: TenantId) -> Result<()> {
    Entity::update_many_in(tenant)
        .col_expr(Column::UpdatedAt, Expr::col(Column::UpdatedAt).into())
        .filter(Column::IsSystem.eq(true))
        .exec(conn)
        .await?;
    Ok(())
}

/// Refuses a change that would leave the tenant without an active admin.
async fn keep_an_admin(
    conn: &impl ConnectionTrait,
    current: &entity::Model,
    loses_admin: bool,
) -> Result<()> {
    // An admin without api_access cannot use the API: it does not count as one.
    let is_admin = current.role == Role::Admin.as_str() && current.active && current.api_access;
    if is_admin
        && loses_admin
        && active_admins_other_than(conn, current.tenant_id, current.id).await? == 0
    {
        return Err(Error::conflict(
            "last_admin",
            "the tenant must keep one active admin",
        ));
    }
    Ok(())
}

/// A new user that passed the checks, their password hashed.
struct CheckedUser {
    username: String,
    display_name: String,
    email: Option<String>,
    kind: UserKind,
    role: Role,
    api_access: bool,
    password_hash: Option<String>,
}

/// Inserts a checked user unless the username is taken in the tenant.
async fn insert_checked(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    new: CheckedUser,
) -> Result<User> {
    let taken = Entity::find_in(tenant)
        .filter(Column::Username.eq(new.username.as_str()))
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
        display_name: Set(new.display_name),
        email: Set(new.email),
        kind: Set(new.kind.as_str().to_owned()),
        role: Set(new.role.as_str().to_owned()),
        api_access: Set(new.api_access),
        active: Set(true),
        is_system: Set(false),
        password_hash: Set(new.password_hash),
        created_at: Set(now),
        updated_at: Set(now),
        two_factor_enabled_at: Set(None),
        rate_limits: Set(None),
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

#[derive(Clone)]
pub struct UserService {
    db: Db,
    hasher: PasswordHasher,
    changes: Arc<ChangeFeed>,
    sessions: Arc<dyn SessionEnder>,
}

impl UserService {
    pub fn new(
        db: Db,
        hasher: PasswordHasher,
        changes: Arc<ChangeFeed>,
        sessions: Arc<dyn SessionEnder>,
    ) -> Self {
        Self {
            db,
            hasher,
            changes,
            sessions,
        }
    }

    pub fn hasher(&self) -> &PasswordHasher {
        &self.hasher
    }

    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    /// Creates a user inside the caller's transaction or connection (onboarding, where
    /// the tenant's creation is the audited change).
    pub async fn insert(
        &self,
        conn: &impl ConnectionTrait,
        tenant: TenantId,
        new: NewUser,
    ) -> Result<User> {
        let checked = self.check_new(new).await?;
        insert_checked(conn, tenant, checked).await
    }

    /// Checks a new user and hashes their password: everything of a creation that needs
    /// no database.
    async fn check_new(&self, new: NewUser) -> Result<CheckedUser> {
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
        Ok(CheckedUser {
            username: new.username,
            display_name,
            email: new.email,
            kind: new.kind,
            role: new.role,
            api_access: new.api_access,
            password_hash,
        })
    }

    /// `actor` creates a user (`user.create`, in the same transaction).
    pub async fn create(&self, actor: &Actor, tenant: TenantId, new: NewUser) -> Result<User> {
        // Checked and hashed before the transaction (on SQLite it holds the only connection).
        let checked = self.check_new(new).await?;
        let txn = self.db.begin().await?;
        let user = insert_checked(&txn, tenant, checked).await?;
        let event = actor
            .event("user.create", "user")
            .in_tenant(tenant)
            .target(user.id)
            .after(user.audit_view());
        sigil_audit::write(&txn, event).await?;
        txn.commit().await?;
        Ok(user)
    }

    pub async fn get(&self, tenant: TenantId, id: UserId) -> Result<User> {
        User::try_from(&model_in(&self.db, tenant, id).await?)
    }

    pub async fn find(&self, tenant: TenantId, id: UserId) -> Result<Option<User>> {
        Entity::find_by_id_in(tenant, id)
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
        let mut query = Entity::find_in(tenant);
        if let Some(q) = filter.q.filter(|q| !q.is_empty()) {
            let pattern = sigil_core::page::contains_pattern(&q);
            query = query.filter(
                Condition::any()
                    .add(Expr::expr(Func::lower(Expr::col(Column::Username))).like(pattern.clone()))
                    .add(
                        Expr::expr(Func::lower(Expr::col(Column::DisplayName)))
                            .like(pattern.clone()),
                    )
                    .add(Expr::expr(Func::lower(Expr::col(Column::Email))).like(pattern)),
            );
        }
        if let Some(role) = filter.role {
            query = query.filter(Column::Role.eq(role.as_str()));
        }
        if let Some(kind) = filter.kind {
            query = query.filter(Column::Kind.eq(kind.as_str()));
        }
        if let Some(active) = filter.active {
            query = query.filter(Column::Active.eq(active));
        }
        match filter.two_factor {
            Some(true) => query = query.filter(Column::TwoFactorEnabledAt.is_not_null()),
            Some(false) => query = query.filter(Column::TwoFactorEnabledAt.is_null()),
            None => {}
        }
        let total = query.clone().count(&self.db).await?;
        let items = query
            .order_by_asc(Column::Username)
            .offset(page.offset)
            .limit(page.limit)
            .all(&self.db)
            .await?
            .iter()
            .map(User::try_from)
            .collect::<Result<Vec<_>>>()?;
        Ok(Page { items, total })
    }

    /// An admin's change to a user (`user.update`, with the user before and after). Your
    /// own password is refused here: it goes through [`UserService::change_own_password`],
    /// which checks the current one.
    pub async fn update(
        &self,
        actor: &Actor,
        tenant: TenantId,
        id: UserId,
        patch: UserPatch,
    ) -> Result<User> {
        if actor.user == Some(id) && patch.password.is_some() {
            return Err(Error::conflict(
                "use_change_password",
                "change your own password with changePassword",
            ));
        }
        self.apply(tenant, id, patch, |before, after| {
            actor
                .event("user.update", "user")
                .in_tenant(tenant)
                .target(id)
                .before(before.audit_view())
                .after(after.audit_view())
        })
        .await
    }

    /// Deactivates a user: their logins and tokens stop working at once
    /// (`user.deactivate`). Nobody deactivates themselves.
    pub async fn deactivate(&self, actor: &Actor, tenant: TenantId, id: UserId) -> Result<User> {
        if actor.user == Some(id) {
            return Err(Error::conflict(
                "cannot_deactivate_self",
                "you cannot deactivate yourself",
            ));
        }
        let patch = UserPatch {
            active: Some(false),
            ..UserPatch::default()
        };
        self.apply(tenant, id, patch, |_, after| {
            actor
                .event("user.deactivate", "user")
                .in_tenant(tenant)
                .target(id)
                .after(after.audit_view())
        })
        .await
    }

    /// A user changes their own display name or email (`user.update`, with the profile
    /// before and after).
    pub async fn update_profile(
        &self,
        actor: &Actor,
        tenant: TenantId,
        id: UserId,
        profile: ProfilePatch,
    ) -> Result<User> {
        let patch = UserPatch {
            display_name: profile.display_name,
            email: profile.email,
            ..UserPatch::default()
        };
        self.apply(tenant, id, patch, |before, after| {
            actor
                .event("user.update", "user")
                .in_tenant(tenant)
                .target(id)
                .before(before.profile_view())
                .after(after.profile_view())
        })
        .await
    }

    /// Applies a patch and writes the audit event `event` makes of the user before and
    /// after, in one transaction; refuses to change the system user or to leave the tenant
    /// without an active admin. A new password in the patch ends every login session of
    /// the user in the same transaction.
    async fn apply(
        &self,
        tenant: TenantId,
        id: UserId,
        patch: UserPatch,
        event: impl FnOnce(&User, &User) -> NewEvent,
    ) -> Result<User> {
        // Refused once the user is found (a missing user is answered first).
        let limits_checked = match &patch.rate_limits {
            Some(limits) => sigil_limits::spec::validate_rate_limits("rate_limits", limits),
            None => Ok(()),
        };
        let loses_admin = patch.role.is_some_and(|r| r != Role::Admin)
            || patch.active == Some(false)
            || patch.api_access == Some(false);
        // Hashed before the transaction (on SQLite it holds the only connection); its
        // refusal waits until the patch itself has been checked, which is refused first.
        let new_hash = match &patch.password {
            Some(password) if limits_checked.is_ok() => {
                Some(self.new_password_hash(tenant, id, password.clone()).await)
            }
            _ => None,
        };
        let txn = self.db.begin().await?;
        // Always first: on SQLite a transaction that reads before it writes fails (busy
        // snapshot) when any other write lands in between.
        lock_admin_changes(&txn, tenant).await?;
        let current = model_in(&txn, tenant, id).await?;
        limits_checked?;
        if current.is_system {
            return Err(Error::forbidden(
                "system_user",
                "the system user cannot be changed",
            ));
        }
        keep_an_admin(&txn, &current, loses_admin).await?;
        let display_name = patch
            .display_name
            .clone()
            .unwrap_or(current.display_name.clone());
        let email = patch.email.clone().unwrap_or(current.email.clone());
        validate_contact(&display_name, email.as_deref())?;
        let new_hash = new_hash.transpose()?;
        let before = User::try_from(&current)?;
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
        if let Some(hash) = &new_hash {
            model.password_hash = Set(Some(hash.clone()));
        }
        if let Some(limits) = &patch.rate_limits {
            model.rate_limits = Set(
                (!limits.is_empty()).then(|| serde_json::to_string(limits).unwrap_or_default())
            );
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
        if new_hash.is_some() {
            self.sessions.end_sessions(&txn, tenant, id, None).await?;
        }
        let after = User::try_from(&updated)?;
        sigil_audit::write(&txn, event(&before, &after)).await?;
        txn.commit().await?;
        self.user_changed(tenant, id).await;
        Ok(after)
    }

    /// Deletes a user (`user.delete`, with the user before); their tokens go with them in
    /// the same statement (the tokens' foreign key cascades), so nothing of theirs
    /// outlives them. Nobody deletes themselves.
    pub async fn delete(&self, actor: &Actor, tenant: TenantId, id: UserId) -> Result<User> {
        if actor.user == Some(id) {
            return Err(Error::conflict(
                "cannot_delete_self",
                "you cannot delete yourself",
            ));
        }
        let txn = self.db.begin().await?;
        lock_admin_changes(&txn, tenant).await?;
        let current = model_in(&txn, tenant, id).await?;
        if current.is_system {
            return Err(Error::forbidden(
                "system_user",
                "the system user cannot be deleted",
            ));
        }
        keep_an_admin(&txn, &current, true).await?;
        let user = User::try_from(&current)?;
        Entity::delete_many_in(tenant)
            .filter(Column::Id.eq(id))
            .exec(&txn)
            .await?;
        let event = actor
            .event("user.delete", "user")
            .in_tenant(tenant)
            .target(id)
            .before(user.audit_view());
        sigil_audit::write(&txn, event).await?;
        txn.commit().await?;
        self.user_changed(tenant, id).await;
        Ok(user)
    }

    pub async fn check_password(
        &self,
        tenant: TenantId,
        id: UserId,
        password: String,
    ) -> Result<bool> {
        let model = model_in(&self.db, tenant, id).await?;
        self.hasher.verify(password, model.password_hash).await
    }

    /// The user changes their own password (`user.change_password`): every other login
    /// session of theirs ends (all but `keep`, the session they change it with), in the
    /// same transaction.
    pub async fn change_own_password(
        &self,
        actor: &Actor,
        tenant: TenantId,
        id: UserId,
        password: String,
        keep: Option<TokenId>,
    ) -> Result<()> {
        let hash = self.new_password_hash(tenant, id, password).await?;
        let txn = self.db.begin().await?;
        let res = Entity::update_many_in(tenant)
            .col_expr(Column::PasswordHash, Expr::value(Some(hash)))
            .col_expr(Column::UpdatedAt, Expr::value(sigil_core::now()))
            .filter(Column::Id.eq(id))
            .exec(&txn)
            .await?;
        if res.rows_affected == 0 {
            return Err(Error::not_found("user"));
        }
        self.sessions.end_sessions(&txn, tenant, id, keep).await?;
        let event = actor
            .event("user.change_password", "user")
            .in_tenant(tenant)
            .target(id);
        sigil_audit::write(&txn, event).await?;
        txn.commit().await?;
        self.user_changed(tenant, id).await;
        Ok(())
    }

    /// [`UserService::change_own_password`] outside a request (tools and tests): filed as
    /// the platform operator's change.
    pub async fn change_password(
        &self,
        tenant: TenantId,
        id: UserId,
        password: String,
        keep: Option<TokenId>,
    ) -> Result<()> {
        self.change_own_password(&Actor::operator(), tenant, id, password, keep)
            .await
    }

    /// The hash of a new password of user `id`, once it passes the policy.
    async fn new_password_hash(
        &self,
        tenant: TenantId,
        id: UserId,
        password: String,
    ) -> Result<String> {
        let current = model_in(&self.db, tenant, id).await?;
        if current.is_system {
            return Err(Error::forbidden(
                "system_user",
                "the system user has no password",
            ));
        }
        self.hasher
            .check_policy("new_password", &current.username, &password)?;
        self.hasher.hash(password).await
    }

    /// Tells the caches (here and on every replica) that the user changed.
    async fn user_changed(&self, tenant: TenantId, user: UserId) {
        self.changes.publish(Change::User { tenant, user }).await;
    }

    /// Inserts the built-in `system` user of a tenant (no password, no API access).
    pub(crate) async fn insert_system(
        &self,
        conn: &impl ConnectionTrait,
        tenant: TenantId,
    ) -> Result<()> {
        let now = sigil_core::now();
        Entity::insert(entity::ActiveModel {
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
            rate_limits: Set(None),
        })
        .exec_without_returning(conn)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use sea_orm::Statement;

    use super::*;
    use crate::testing::{code, World, PASSWORD};

    const NEW_PASSWORD: &str = "a-brand-new-passphrase";

    async fn password_is(w: &World, user: UserId, password: &str) -> bool {
        w.users
            .check_password(w.tenant.id, user, password.into())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_new_password_and_the_end_of_the_sessions_commit_together() {
        let w = World::new().await;
        let bob = w.user("bob", UserKind::Person).await;
        let keep = TokenId::new();
        let mut feed = w.changes.subscribe();
        w.users
            .change_password(w.tenant.id, bob.id, NEW_PASSWORD.into(), Some(keep))
            .await
            .unwrap();
        assert!(password_is(&w, bob.id, NEW_PASSWORD).await);
        assert_eq!(w.ended(), [(bob.id, Some(keep))]);
        assert_eq!(
            feed.try_recv().unwrap(),
            Change::User {
                tenant: w.tenant.id,
                user: bob.id
            }
        );

        // Sessions that cannot be ended keep the old password too.
        w.ender.refuse.store(true, Ordering::Relaxed);
        let failed = w
            .users
            .change_password(w.tenant.id, bob.id, "yet-another-passphrase".into(), None)
            .await;
        assert!(failed.is_err());
        assert!(password_is(&w, bob.id, NEW_PASSWORD).await);
        assert!(feed.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_password_set_by_an_admin_ends_every_session() {
        let w = World::new().await;
        let bob = w.user("bob", UserKind::Person).await;
        let patch = UserPatch {
            display_name: Some("Bob B.".into()),
            password: Some(NEW_PASSWORD.into()),
            ..UserPatch::default()
        };
        let user = w
            .users
            .update(&w.actor(), w.tenant.id, bob.id, patch)
            .await
            .unwrap();
        assert_eq!(user.display_name, "Bob B.");
        assert!(password_is(&w, bob.id, NEW_PASSWORD).await);
        assert_eq!(w.ended(), [(bob.id, None)]);

        // Without a password nothing ends.
        let patch = UserPatch {
            display_name: Some("Bob".into()),
            ..UserPatch::default()
        };
        w.users
            .update(&w.actor(), w.tenant.id, bob.id, patch)
            .await
            .unwrap();
        assert_eq!(w.ended().len(), 1);
    }

    #[tokio::test]
    async fn the_patch_is_refused_before_the_password_and_nothing_changes() {
        let w = World::new().await;
        let bob = w.user("bob", UserKind::Person).await;
        let bad_email = UserPatch {
            email: Some(Some("not an address".into())),
            password: Some("short".into()),
            ..UserPatch::default()
        };
        assert_eq!(
            code(
                w.users
                    .update(&w.actor(), w.tenant.id, bob.id, bad_email)
                    .await
            ),
            "invalid_user"
        );
        let weak = UserPatch {
            display_name: Some("Bobby".into()),
            password: Some("short".into()),
            ..UserPatch::default()
        };
        assert_eq!(
            code(w.users.update(&w.actor(), w.tenant.id, bob.id, weak).await),
            "weak_password"
        );
        let bob = w.users.get(w.tenant.id, bob.id).await.unwrap();
        assert_eq!(bob.display_name, "bob");
        assert!(password_is(&w, bob.id, PASSWORD).await);
        assert!(w.ended().is_empty());
    }

    #[tokio::test]
    async fn the_system_user_has_no_password_to_change() {
        let w = World::new().await;
        let filter = UserFilter {
            q: Some("system".into()),
            ..UserFilter::default()
        };
        let page = PageRequest::new(None, None).unwrap();
        let system = w.users.list(w.tenant.id, filter, page).await.unwrap().items[0].clone();
        let patch = UserPatch {
            password: Some(NEW_PASSWORD.into()),
            ..UserPatch::default()
        };
        assert_eq!(
            code(
                w.users
                    .update(&w.actor(), w.tenant.id, system.id, patch)
                    .await
            ),
            "system_user"
        );
        assert_eq!(
            code(
                w.users
                    .change_password(w.tenant.id, system.id, NEW_PASSWORD.into(), None)
                    .await
            ),
            "system_user"
        );
    }

    #[tokio::test]
    async fn a_deleted_users_tokens_go_with_them() {
        let w = World::new().await;
        let bob = w.user("bob", UserKind::Person).await;
        let token = |id: TokenId, owner: UserId| {
            Statement::from_sql_and_values(
                w.db.get_database_backend(),
                "INSERT INTO tokens (id, tenant_id, owner_id, kind, name, description, \
                 ip_filter, enabled, generation, secret_hash, created_at, updated_at, use_count) \
                 VALUES (?, ?, ?, 'personal', 't', '', '[]', true, 1, '', ?, ?, 0)",
                [
                    id.0.into(),
                    w.tenant.id.0.into(),
                    owner.0.into(),
                    sigil_core::now().into(),
                    sigil_core::now().into(),
                ],
            )
        };
        w.db.execute(token(TokenId::new(), bob.id)).await.unwrap();
        w.db.execute(token(TokenId::new(), w.admin.id))
            .await
            .unwrap();
        let mut feed = w.changes.subscribe();
        w.users
            .delete(&w.actor(), w.tenant.id, bob.id)
            .await
            .unwrap();
        assert_eq!(
            feed.try_recv().unwrap(),
            Change::User {
                tenant: w.tenant.id,
                user: bob.id
            }
        );
        let owners =
            w.db.query_all(Statement::from_string(
                w.db.get_database_backend(),
                "SELECT owner_id FROM tokens",
            ))
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get::<uuid::Uuid>("", "owner_id").unwrap())
            .collect::<Vec<_>>();
        assert_eq!(owners, [w.admin.id.0]);
        // A token cannot name a missing owner.
        assert!(w.db.execute(token(TokenId::new(), bob.id)).await.is_err());
    }

    #[tokio::test]
    async fn the_last_admin_stays() {
        let w = World::new().await;
        let admin = w.admin.id;
        assert_eq!(
            code(w.users.delete(&Actor::operator(), w.tenant.id, admin).await),
            "last_admin"
        );
        let step_down = UserPatch {
            role: Some(Role::Member),
            ..UserPatch::default()
        };
        assert_eq!(
            code(
                w.users
                    .update(&Actor::operator(), w.tenant.id, admin, step_down)
                    .await
            ),
            "last_admin"
        );
    }

    fn carol() -> NewUser {
        NewUser {
            username: "carol".into(),
            display_name: Some("Carol".into()),
            email: None,
            kind: UserKind::Person,
            role: Role::Member,
            api_access: true,
            password: Some(PASSWORD.into()),
        }
    }

    #[tokio::test]
    async fn a_creation_and_a_deletion_each_write_one_event_by_the_actor() {
        let w = World::new().await;
        assert!(w.events().await.is_empty(), "onboarding writes none here");
        let actor = w.actor();
        let carol = w.users.create(&actor, w.tenant.id, carol()).await.unwrap();
        let events = w.events().await;
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(
            (e.action.as_str(), e.target_type.as_str()),
            ("user.create", "user")
        );
        assert_eq!(e.tenant, Some(w.tenant.id));
        assert_eq!(e.actor, Some(w.admin.id));
        assert_eq!(e.actor_label, "admin");
        assert_eq!(e.credential, actor.credential);
        assert_eq!(e.client_ip.as_deref(), Some("192.0.2.1"));
        assert_eq!(e.user_agent.as_deref(), Some("tests"));
        assert_eq!(e.target_id, Some(carol.id.to_string()));
        assert_eq!(e.before, None);
        assert_eq!(
            e.after,
            Some(serde_json::json!({
                "username": "carol", "display_name": "Carol", "email": null, "kind": "person",
                "role": "member", "api_access": true, "active": true, "rate_limits": [],
            }))
        );

        w.users.delete(&actor, w.tenant.id, carol.id).await.unwrap();
        let events = w.events().await;
        assert_eq!(events.len(), 2);
        let e = &events[1];
        assert_eq!(e.action, "user.delete");
        assert_eq!(e.actor, Some(w.admin.id));
        assert_eq!(e.target_id, Some(carol.id.to_string()));
        assert_eq!(e.before, Some(carol.audit_view()));
        assert_eq!(e.after, None);
    }

    #[tokio::test]
    async fn a_refused_use_case_writes_no_event() {
        let w = World::new().await;
        let actor = w.actor();
        let taken = NewUser {
            username: "admin".into(),
            ..carol()
        };
        assert_eq!(
            code(w.users.create(&actor, w.tenant.id, taken).await),
            "user_exists"
        );
        let bob = w.user("bob", UserKind::Person).await;
        let events = w.events().await.len();
        let weak = UserPatch {
            display_name: Some("Bobby".into()),
            password: Some("short".into()),
            ..UserPatch::default()
        };
        assert_eq!(
            code(w.users.update(&actor, w.tenant.id, bob.id, weak).await),
            "weak_password"
        );
        let bad_limits = || UserPatch {
            rate_limits: Some(vec![sigil_limits::RateLimit::new("", 0, 0)]),
            ..UserPatch::default()
        };
        assert_eq!(
            code(
                w.users
                    .update(&actor, w.tenant.id, bob.id, bad_limits())
                    .await
            ),
            "invalid_rate_limits"
        );
        // A missing user is answered first, as before the use case read it itself.
        assert_eq!(
            code(
                w.users
                    .update(&actor, w.tenant.id, UserId::new(), bad_limits())
                    .await
            ),
            "not_found"
        );
        assert_eq!(
            code(w.users.delete(&actor, w.tenant.id, UserId::new()).await),
            "not_found"
        );
        // The sessions cannot end: the password stays, and so does the log.
        w.ender.refuse.store(true, Ordering::Relaxed);
        let failed = w
            .users
            .change_own_password(
                &w.actor_of(&bob),
                w.tenant.id,
                bob.id,
                NEW_PASSWORD.into(),
                None,
            )
            .await;
        assert!(failed.is_err());
        assert!(password_is(&w, bob.id, PASSWORD).await);
        assert_eq!(w.events().await.len(), events);
    }

    #[tokio::test]
    async fn nobody_deactivates_deletes_or_resets_the_password_of_themselves() {
        let w = World::new().await;
        let actor = w.actor();
        let me = w.admin.id;
        assert_eq!(
            code(w.users.deactivate(&actor, w.tenant.id, me).await),
            "cannot_deactivate_self"
        );
        assert_eq!(
            code(w.users.delete(&actor, w.tenant.id, me).await),
            "cannot_delete_self"
        );
        let password = UserPatch {
            password: Some(NEW_PASSWORD.into()),
            ..UserPatch::default()
        };
        assert_eq!(
            code(w.users.update(&actor, w.tenant.id, me, password).await),
            "use_change_password"
        );
        assert!(w.events().await.is_empty());
        assert!(password_is(&w, me, PASSWORD).await);
    }

    #[tokio::test]
    async fn an_update_files_the_user_before_and_after() {
        let w = World::new().await;
        let bob = w.user("bob", UserKind::Person).await;
        let patch = UserPatch {
            role: Some(Role::TokenManager),
            ..UserPatch::default()
        };
        let after = w
            .users
            .update(&w.actor(), w.tenant.id, bob.id, patch)
            .await
            .unwrap();
        let e = w.events().await.pop().unwrap();
        assert_eq!(e.action, "user.update");
        assert_eq!(e.before, Some(bob.audit_view()));
        assert_eq!(e.after, Some(after.audit_view()));
        assert_eq!(e.after.unwrap()["role"], "token_manager");

        // Their own profile: the profile only.
        let profile = ProfilePatch {
            email: Some(Some("bob@example.com".into())),
            ..ProfilePatch::default()
        };
        w.users
            .update_profile(&w.actor_of(&bob), w.tenant.id, bob.id, profile)
            .await
            .unwrap();
        let e = w.events().await.pop().unwrap();
        assert_eq!((e.action.as_str(), e.actor), ("user.update", Some(bob.id)));
        assert_eq!(
            e.before,
            Some(serde_json::json!({"display_name": "bob", "email": null}))
        );
        assert_eq!(
            e.after,
            Some(serde_json::json!({"display_name": "bob", "email": "bob@example.com"}))
        );
    }

    #[tokio::test]
    async fn an_operators_deactivation_is_filed_under_the_tenant() {
        let w = World::new().await;
        let bob = w.user("bob", UserKind::Person).await;
        let user = w
            .users
            .deactivate(&Actor::operator(), w.tenant.id, bob.id)
            .await
            .unwrap();
        assert!(!user.active);
        let e = w.events().await.pop().unwrap();
        assert_eq!(e.action, "user.deactivate");
        assert_eq!(e.tenant, Some(w.tenant.id));
        assert_eq!((e.actor, e.actor_label.as_str()), (None, "operator"));
        assert_eq!(e.before, None);
        assert_eq!(e.after.unwrap()["active"], false);
    }

    #[tokio::test]
    async fn a_password_change_is_filed_as_the_users() {
        let w = World::new().await;
        let bob = w.user("bob", UserKind::Person).await;
        w.users
            .change_own_password(
                &w.actor_of(&bob),
                w.tenant.id,
                bob.id,
                NEW_PASSWORD.into(),
                None,
            )
            .await
            .unwrap();
        let e = w.events().await.pop().unwrap();
        assert_eq!(e.action, "user.change_password");
        assert_eq!(e.actor, Some(bob.id));
        assert_eq!(e.target_id, Some(bob.id.to_string()));
        assert_eq!((e.before, e.after), (None, None));
    }
}
