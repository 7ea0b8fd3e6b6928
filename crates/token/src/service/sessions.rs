//! Login sessions: minted at sign-in, confirmed by the password for a while, lifted out
//! of enrolment, revoked when the password changes or the policy asks.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{ActiveModelTrait, DatabaseTransaction};
use sigil_core::{Change, Error, Result, TenantId, TokenId, UserId};
use sigil_user::sessions::Ending;
use sigil_user::{SessionEnder, SignedIn, User};

use super::minting::NewToken;
use super::store::{self, NewRow};
use super::TokenService;
use crate::ceiling;
use crate::types::{Minted, Scope, Token, TokenKind};
use crate::{Principal, SigilMethod};

/// What a session of a person who must enrol first (policy `require_two_factor`) may
/// call: who they are, and the enrolment.
pub const ENROLMENT_METHODS: [SigilMethod; 3] = [
    SigilMethod::GetCurrentUser,
    SigilMethod::BeginTotpEnrolment,
    SigilMethod::ConfirmTotpEnrolment,
];

/// Ends login sessions for the user crate, inside its transactions (a new password ends
/// the user's sessions in the transaction that stores it).
#[derive(Clone, Copy, Debug, Default)]
pub struct SessionRevoker;

impl SessionEnder for SessionRevoker {
    fn end_sessions<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        tenant: TenantId,
        user: UserId,
        keep: Option<TokenId>,
    ) -> Ending<'a> {
        Box::pin(store::revoke_sessions(txn, tenant, user, keep))
    }
}

impl TokenService {
    /// The session of a user who signed in (`sigil_user::LoginService`): a full one, or
    /// one that can only enrol a second factor when the tenant requires one they lack.
    pub async fn login_session(&self, signed: &SignedIn) -> Result<Minted> {
        let lifetime = signed.tenant.policy.session_lifetime_secs;
        if signed.enrol_only {
            let methods = ENROLMENT_METHODS.map(|m| m.id());
            self.create_limited_session(&signed.user, lifetime, &methods)
                .await
        } else {
            self.create_session(&signed.user, lifetime).await
        }
    }

    /// A login session for a user who just proved their password.
    pub async fn create_session(&self, user: &User, lifetime_secs: u32) -> Result<Minted> {
        self.open_session(user, lifetime_secs, "login session", None)
            .await
    }

    /// A login session that may call only `methods` (its stored ceiling), for a person
    /// who must enrol a second factor before anything else (tenant policy
    /// `require_two_factor`).
    pub async fn create_limited_session(
        &self,
        user: &User,
        lifetime_secs: u32,
        methods: &[&str],
    ) -> Result<Minted> {
        let ceiling = serde_json::to_string(methods).map_err(Error::internal)?;
        self.open_session(
            user,
            lifetime_secs,
            "login session (second factor enrolment)",
            Some(ceiling),
        )
        .await
    }

    /// Stores a new session of `user` (after removing their dead ones).
    async fn open_session(
        &self,
        user: &User,
        lifetime_secs: u32,
        name: &str,
        ceiling: Option<String>,
    ) -> Result<Minted> {
        let expires_at = ceiling::login(lifetime_secs).expires_at;
        let new = NewToken {
            kind: TokenKind::Session,
            owner: Some(user.id),
            name: name.to_owned(),
            description: String::new(),
            scope: Scope::All,
            expires_at,
            ip_filter: Vec::new(),
            enabled: true,
            rate_limits: Vec::new(),
            credits: None,
        };
        // Expired and revoked sessions go, so the table does not grow forever.
        store::prune_sessions(&self.db, user.tenant_id, user.id).await?;
        let id = TokenId::new();
        let secret = self
            .mint_secret(
                user.tenant_id,
                user.id,
                id,
                1,
                TokenKind::Session,
                expires_at,
            )
            .await?;
        let model = store::new_row(NewRow {
            id,
            tenant: user.tenant_id,
            owner: user.id,
            created_by: Some(user.id),
            kind: TokenKind::Session,
            new,
            ip_filter: Vec::new(),
            secret: &secret,
            ceiling,
        })?
        .insert(&self.db)
        .await?;
        Ok(Minted {
            token: Token::try_from(&model)?,
            secret,
        })
    }

    /// Lifts the ceiling of a limited login session (see
    /// [`TokenService::create_limited_session`]) once its person enrolled: the session
    /// then holds the user's rights like any other.
    pub async fn lift_session_ceiling(&self, actor: &Principal) -> Result<()> {
        if !actor.is_session() {
            return Ok(());
        }
        store::lift_session_ceiling(&self.db, actor.tenant_id, actor.token_id).await?;
        self.token_changed(actor.tenant_id, actor.token_id).await;
        Ok(())
    }

    /// Marks the session as password-confirmed for the tenant's confirmation window.
    pub async fn confirm_session(&self, actor: &Principal) -> Result<DateTime<Utc>> {
        if !actor.is_session() {
            return Err(Error::forbidden(
                "not_a_session",
                "only a login session can be confirmed; tokens are not asked to confirm",
            ));
        }
        let until = sigil_core::now()
            + Duration::seconds(i64::from(actor.policy.password_confirmation_secs));
        store::confirm_until(&self.db, actor.tenant_id, actor.token_id, until).await?;
        self.token_changed(actor.tenant_id, actor.token_id).await;
        Ok(until)
    }

    /// Ends every login session of a user except `keep`.
    pub async fn revoke_sessions(
        &self,
        tenant: TenantId,
        user: UserId,
        keep: Option<TokenId>,
    ) -> Result<()> {
        store::revoke_sessions(&self.db, tenant, user, keep).await?;
        self.changes.publish(Change::User { tenant, user }).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sea_orm::{ColumnTrait, QueryFilter};
    use sigil_core::crypto::MasterKey;
    use sigil_core::{ChangeFeed, TenantOwned};
    use sigil_scope_registry::store::ScopeSetStore;
    use sigil_scope_registry::{Registry, Snapshot};
    use sigil_tenant::{KeyRing, NewTenant, Tenant, TenantService};
    use sigil_user::{PasswordHasher, PasswordParams, UserService};

    use super::*;
    use crate::entity;

    struct World {
        db: sigil_core::db::Db,
        users: UserService,
        tokens: TokenService,
        tenant: Tenant,
        admin: User,
    }

    async fn world() -> World {
        let db = sigil_core::db::connect("sqlite::memory:", 1).await.unwrap();
        sigil_migrations::migrate(&db).await.unwrap();
        let master = MasterKey::generate();
        let changes = Arc::new(ChangeFeed::new(db.clone()));
        let tenants = TenantService::new(db.clone(), changes.clone());
        let hasher = PasswordHasher::new(PasswordParams {
            memory_kib: 8,
            iterations: 1,
            ..PasswordParams::default()
        })
        .unwrap();
        let users = UserService::new(
            db.clone(),
            hasher,
            changes.clone(),
            Arc::new(SessionRevoker),
        );
        let keys = KeyRing::new(db.clone(), master);
        let onboarded = sigil_user::onboard_tenant(
            &db,
            &tenants,
            &keys,
            &users,
            NewTenant {
                slug: "acme".into(),
                name: None,
                policy: None,
            },
            None,
            Some("correct-horse-battery".into()),
        )
        .await
        .unwrap();
        let tokens = TokenService::new(
            db.clone(),
            keys,
            users.clone(),
            Arc::new(Registry::new(Snapshot::empty())),
            ScopeSetStore::new(db.clone()),
            changes,
        );
        World {
            db,
            users,
            tokens,
            tenant: onboarded.tenant,
            admin: onboarded.admin,
        }
    }

    async fn session_row(w: &World, id: TokenId) -> entity::Model {
        entity::Entity::find_by_id_in(w.tenant.id, id)
            .one(&w.db)
            .await
            .unwrap()
            .unwrap()
    }

    #[tokio::test]
    async fn a_new_password_revokes_every_other_session_with_it() {
        let w = world().await;
        let kept = w.tokens.create_session(&w.admin, 3600).await.unwrap();
        let other = w.tokens.create_session(&w.admin, 3600).await.unwrap();
        w.users
            .change_password(
                w.tenant.id,
                w.admin.id,
                "a-brand-new-passphrase".into(),
                Some(kept.token.id),
            )
            .await
            .unwrap();
        assert!(session_row(&w, kept.token.id).await.revoked_at.is_none());
        assert!(session_row(&w, other.token.id).await.revoked_at.is_some());
        // The next sign-in removes the revoked session.
        w.tokens.create_session(&w.admin, 3600).await.unwrap();
        let left = entity::Entity::find_in(w.tenant.id)
            .filter(entity::Column::Id.eq(other.token.id))
            .one(&w.db)
            .await
            .unwrap();
        assert!(left.is_none());
    }

    #[tokio::test]
    async fn a_session_that_must_enrol_may_only_enrol() {
        let w = world().await;
        let signed = SignedIn {
            user: w.admin.clone(),
            tenant: w.tenant.clone(),
            enrol_only: true,
        };
        let limited = w.tokens.login_session(&signed).await.unwrap();
        let ceiling =
            crate::ceiling::stored_ids(session_row(&w, limited.token.id).await.ceiling.as_deref());
        let enrolment: Vec<String> = ENROLMENT_METHODS
            .iter()
            .map(|m| m.id().to_owned())
            .collect();
        assert_eq!(ceiling, Some(enrolment));
        assert_eq!(limited.token.kind, TokenKind::Session);

        let full = w
            .tokens
            .login_session(&SignedIn {
                enrol_only: false,
                ..signed
            })
            .await
            .unwrap();
        assert!(session_row(&w, full.token.id).await.ceiling.is_none());
        let lifetime = i64::from(w.tenant.policy.session_lifetime_secs);
        let expires_in = (full.token.expires_at.unwrap() - Utc::now()).num_seconds();
        assert!(
            (lifetime - 5..=lifetime).contains(&expires_in),
            "{expires_in}"
        );
    }
}
