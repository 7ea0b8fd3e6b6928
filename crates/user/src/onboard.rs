//! Onboarding: a tenant, its first signing key, its system user and its first admin, all in
//! one transaction.

use sea_orm::TransactionTrait;
use sigil_audit::Actor;
use sigil_core::db::Db;
use sigil_core::{crypto, Result};
use sigil_tenant::{KeyRing, NewTenant, Tenant, TenantService};

use crate::service::{NewUser, UserService};
use crate::types::{Role, User, UserKind};

pub struct Onboarded {
    pub tenant: Tenant,
    pub admin: User,
    /// The admin's password, when it was generated here (shown once).
    pub admin_password: String,
}

/// Onboards a tenant and writes no audit event (the command line's onboarding):
/// [`onboard_tenant_by`] files `tenant.create`.
pub async fn onboard_tenant(
    db: &Db,
    tenants: &TenantService,
    keys: &KeyRing,
    users: &UserService,
    new: NewTenant,
    admin_username: Option<String>,
    admin_password: Option<String>,
) -> Result<Onboarded> {
    let admin = (admin_username, admin_password);
    onboard(None, db, tenants, keys, users, new, admin).await
}

/// [`onboard_tenant`] by `actor`, whose `tenant.create` event (filed under the new tenant)
/// is written in the onboarding transaction.
#[allow(clippy::too_many_arguments)]
pub async fn onboard_tenant_by(
    actor: &Actor,
    db: &Db,
    tenants: &TenantService,
    keys: &KeyRing,
    users: &UserService,
    new: NewTenant,
    admin_username: Option<String>,
    admin_password: Option<String>,
) -> Result<Onboarded> {
    let admin = (admin_username, admin_password);
    onboard(Some(actor), db, tenants, keys, users, new, admin).await
}

async fn onboard(
    actor: Option<&Actor>,
    db: &Db,
    tenants: &TenantService,
    keys: &KeyRing,
    users: &UserService,
    new: NewTenant,
    (admin_username, admin_password): (Option<String>, Option<String>),
) -> Result<Onboarded> {
    let username = admin_username.unwrap_or_else(|| "admin".to_owned());
    let password = admin_password.unwrap_or_else(|| crypto::random_password(24));
    users
        .hasher()
        .check_policy("password", &username, &password)?;
    let txn = db.begin().await?;
    let tenant = tenants.insert(&txn, new).await?;
    keys.create_initial(&txn, tenant.id).await?;
    users.insert_system(&txn, tenant.id).await?;
    let admin = users
        .insert(
            &txn,
            tenant.id,
            NewUser {
                username,
                display_name: None,
                email: None,
                kind: UserKind::Person,
                role: Role::Admin,
                api_access: true,
                password: Some(password.clone()),
            },
        )
        .await?;
    if let Some(actor) = actor {
        sigil_audit::write(&txn, tenant.created_event(actor, &admin.username)).await?;
    }
    txn.commit().await?;
    Ok(Onboarded {
        tenant,
        admin,
        admin_password: password,
    })
}
