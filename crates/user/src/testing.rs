//! A tenant on an in-memory SQLite database, for the tests of the use cases.

use std::sync::{Arc, Mutex};

use sea_orm::{ConnectionTrait, DatabaseTransaction};
use sigil_audit::{Actor, AuditEvent, AuditFilter, AuditLog};
use sigil_core::crypto::MasterKey;
use sigil_core::db::Db;
use sigil_core::{ChangeFeed, Error, Result, TenantId, TokenId, UserId};
use sigil_tenant::{KeyRing, NewTenant, Tenant, TenantService};

use crate::sessions::{Ending, SessionEnder};
use crate::{
    onboard_tenant, LoginService, LoginThrottle, NewUser, PasswordHasher, PasswordParams, Role,
    TwoFactorService, User, UserKind, UserService,
};

pub const PASSWORD: &str = "correct-horse-battery";

/// Records the sessions it was asked to end; refuses when told to.
#[derive(Default)]
pub struct Ender {
    pub calls: Mutex<Vec<(UserId, Option<TokenId>)>>,
    pub refuse: std::sync::atomic::AtomicBool,
}

impl SessionEnder for Ender {
    fn end_sessions<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        _tenant: TenantId,
        user: UserId,
        keep: Option<TokenId>,
    ) -> Ending<'a> {
        Box::pin(async move {
            // A statement of the caller's transaction, as the real one writes.
            txn.execute_unprepared("SELECT 1").await?;
            if self.refuse.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(Error::Unavailable("sessions unavailable".into()));
            }
            if let Ok(mut calls) = self.calls.lock() {
                calls.push((user, keep));
            }
            Ok(())
        })
    }
}

pub struct World {
    pub db: Db,
    pub tenants: TenantService,
    pub users: UserService,
    pub two_factor: TwoFactorService,
    pub logins: LoginService,
    pub ender: Arc<Ender>,
    pub changes: Arc<ChangeFeed>,
    pub tenant: Tenant,
    pub admin: User,
}

impl World {
    pub async fn new() -> Self {
        let db = sigil_core::db::connect("sqlite::memory:", 1).await.unwrap();
        sigil_migrations::migrate(&db).await.unwrap();
        let master = MasterKey::generate();
        let changes = Arc::new(ChangeFeed::new(db.clone()));
        let tenants = TenantService::new(db.clone(), changes.clone());
        // The cheapest hashes Argon2 allows: the tests are about the flow.
        let hasher = PasswordHasher::new(PasswordParams {
            memory_kib: 8,
            iterations: 1,
            ..PasswordParams::default()
        })
        .unwrap();
        let ender = Arc::new(Ender::default());
        let users = UserService::new(db.clone(), hasher, changes.clone(), ender.clone());
        let keys = KeyRing::new(db.clone(), master.clone());
        let onboarded = onboard_tenant(
            &db,
            &tenants,
            &keys,
            &users,
            NewTenant {
                slug: "acme".into(),
                name: None,
                policy: None,
            },
            Some("admin".into()),
            Some(PASSWORD.into()),
        )
        .await
        .unwrap();
        let two_factor = TwoFactorService::new(db.clone(), master, changes.clone()).unwrap();
        let logins = LoginService::new(
            users.clone(),
            tenants.clone(),
            two_factor.clone(),
            LoginThrottle::new(),
        );
        Self {
            db,
            tenants,
            users,
            two_factor,
            logins,
            ender,
            changes,
            tenant: onboarded.tenant,
            admin: onboarded.admin,
        }
    }

    /// The tenant's admin, acting from a client.
    pub fn actor(&self) -> Actor {
        Actor::user(self.tenant.id, self.admin.id, "admin", Some(TokenId::new()))
            .from_client(Some("192.0.2.1".into()), Some("tests".into()))
    }

    /// `user` acting for themselves, with no credential.
    pub fn actor_of(&self, user: &User) -> Actor {
        Actor::user(self.tenant.id, user.id, &user.username, None)
    }

    /// Every audit event written so far, oldest first.
    pub async fn events(&self) -> Vec<AuditEvent> {
        let filter = AuditFilter {
            limit: 200,
            ..AuditFilter::default()
        };
        let mut events = AuditLog::new(self.db.clone())
            .list(None, filter)
            .await
            .unwrap();
        events.reverse();
        events
    }

    /// The actions of the audit events written so far, oldest first.
    pub async fn actions(&self) -> Vec<String> {
        self.events().await.into_iter().map(|e| e.action).collect()
    }

    /// A member of the tenant with [`PASSWORD`], created by the admin.
    pub async fn user(&self, username: &str, kind: UserKind) -> User {
        self.users
            .create(
                &self.actor(),
                self.tenant.id,
                NewUser {
                    username: username.into(),
                    display_name: None,
                    email: None,
                    kind,
                    role: Role::Member,
                    api_access: true,
                    password: Some(PASSWORD.into()),
                },
            )
            .await
            .unwrap()
    }

    pub fn ended(&self) -> Vec<(UserId, Option<TokenId>)> {
        self.ender.calls.lock().unwrap().clone()
    }
}

/// The code of a refusal.
pub fn code<T: std::fmt::Debug>(r: Result<T>) -> &'static str {
    match r {
        Err(Error::Conflict { code, .. })
        | Err(Error::Invalid { code, .. })
        | Err(Error::Unauthorized { code, .. })
        | Err(Error::Forbidden { code, .. })
        | Err(Error::TooMany { code, .. }) => code,
        Err(Error::NotFound { .. }) => "not_found",
        other => panic!("expected a refusal, got {other:?}"),
    }
}
