//! Two-factor sign-in for people: TOTP enrolment (pending until a first code confirms
//! it), code checks where each time step is accepted once, single-use recovery codes,
//! and turning it off. `api` users (and the system user) have no second factor: they sign
//! in with tokens. Each change (and each spent recovery code) files its audit event in its
//! own transaction. Knows no HTTP.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, DatabaseTransaction, EntityTrait, PaginatorTrait,
    QueryFilter, Set, TransactionTrait,
};
use sigil_audit::Actor;
use sigil_core::changes::{Change, ChangeFeed};
use sigil_core::crypto::MasterKey;
use sigil_core::db::Db;
use sigil_core::{Error, Result, TenantId, TenantOwned, UserId};

use crate::two_factor_entity::{recovery_code, totp as totp_row};
use crate::types::{User, UserKind};
use crate::{entity, recovery, totp};

/// A second factor as the person typed it.
#[derive(Clone, Debug)]
pub enum SecondFactor {
    Totp(String),
    RecoveryCode(String),
}

/// A second factor that was accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verified {
    Totp,
    /// A recovery code, now spent; how many unused ones are left.
    RecoveryCode {
        left: u64,
    },
}

/// Why a code was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeRefused {
    /// Not a current code (or not a recovery code of the user).
    Invalid,
    /// The code of a time step already used, or a spent recovery code.
    Reused,
}

impl CodeRefused {
    /// The answer to the code: 401 at login (`at_login`), else 403.
    pub fn error(self, at_login: bool) -> Error {
        let (code, detail) = match self {
            CodeRefused::Invalid => ("invalid_code", "the code is wrong or too old"),
            CodeRefused::Reused => (
                "code_already_used",
                "this code was already used; wait for the next one from the app",
            ),
        };
        if at_login {
            Error::unauthorized(code, detail)
        } else {
            Error::forbidden(code, detail)
        }
    }
}

/// A started enrolment: what the authenticator app needs.
#[derive(Clone)]
pub struct Enrolment {
    /// The secret in base32, for typing it in by hand.
    pub secret: String,
    /// The `otpauth://` URI the QR code carries.
    pub otpauth_uri: String,
}

/// A user's second factor, for display.
#[derive(Clone, Copy, Debug, Default)]
pub struct Status {
    pub enabled_at: Option<DateTime<Utc>>,
    /// An enrolment waits for its first code.
    pub pending: bool,
    pub recovery_codes_left: u64,
}

#[derive(Clone)]
pub struct TwoFactorService {
    db: Db,
    master: MasterKey,
    recovery_key: [u8; 32],
    /// Where a change of a user's two-factor state is published (cached profiles).
    changes: Arc<ChangeFeed>,
}

fn seal_context(user: UserId) -> String {
    format!("sigil:totp:{}", user.0)
}

fn unix_now() -> u64 {
    u64::try_from(Utc::now().timestamp()).unwrap_or_default()
}

fn step_value(step: u64) -> i64 {
    i64::try_from(step).unwrap_or(i64::MAX)
}

/// Turns two-factor sign-in off in `txn` (and drops a pending enrolment and the recovery
/// codes). Whether it was on.
async fn turn_off(txn: &DatabaseTransaction, tenant: TenantId, user: UserId) -> Result<bool> {
    let was_on = entity::Entity::update_many_in(tenant)
        .col_expr(
            entity::Column::TwoFactorEnabledAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(entity::Column::Id.eq(user))
        .filter(entity::Column::TwoFactorEnabledAt.is_not_null())
        .exec(txn)
        .await?
        .rows_affected
        > 0;
    totp_row::Entity::delete_many_in(tenant)
        .filter(totp_row::Column::UserId.eq(user))
        .exec(txn)
        .await?;
    recovery_code::Entity::delete_many_in(tenant)
        .filter(recovery_code::Column::UserId.eq(user))
        .exec(txn)
        .await?;
    Ok(was_on)
}

impl TwoFactorService {
    pub fn new(db: Db, master: MasterKey, changes: Arc<ChangeFeed>) -> Result<Self> {
        let recovery_key = master.derive_key("sigil:recovery-codes:v1")?;
        Ok(Self {
            db,
            master,
            recovery_key,
            changes,
        })
    }

    /// Tells the caches (here and on every replica) that the user's two-factor state
    /// changed.
    async fn changed(&self, tenant: TenantId, user: UserId) {
        self.changes.publish(Change::User { tenant, user }).await;
    }

    /// The key login challenges are sealed with.
    pub fn master(&self) -> &MasterKey {
        &self.master
    }

    /// Refuses users who cannot have a second factor: `api` users and the system user.
    pub fn require_person(user: &User) -> Result<()> {
        if user.kind != UserKind::Person || user.is_system {
            return Err(Error::conflict(
                "two_factor_not_for_api_users",
                "api users have no second factor: they sign in with application tokens",
            ));
        }
        Ok(())
    }

    async fn row(&self, tenant: TenantId, user: UserId) -> Result<Option<totp_row::Model>> {
        Ok(totp_row::Entity::find_by_id_in(tenant, user)
            .one(&self.db)
            .await?)
    }

    fn secret_of(&self, row: &totp_row::Model) -> Result<Vec<u8>> {
        self.master
            .open(&row.secret_sealed, &seal_context(row.user_id))
    }

    /// Starts (or restarts) an enrolment with a new secret; it stays off until
    /// [`TwoFactorService::confirm`] gets a code of it.
    pub async fn begin(&self, user: &User, account: &str) -> Result<Enrolment> {
        Self::require_person(user)?;
        if user.two_factor_enabled_at.is_some() {
            return Err(Error::conflict(
                "two_factor_already_enabled",
                "two-factor sign-in is already on; turn it off first to enrol a new authenticator",
            ));
        }
        let secret = totp::generate_secret();
        let enrolment = Enrolment {
            secret: totp::secret_base32(&secret)?,
            otpauth_uri: totp::otpauth_uri(&secret, account)?,
        };
        let sealed = self.master.seal(&secret, &seal_context(user.id))?;
        let txn = self.db.begin().await?;
        totp_row::Entity::delete_many_in(user.tenant_id)
            .filter(totp_row::Column::UserId.eq(user.id))
            .filter(totp_row::Column::ConfirmedAt.is_null())
            .exec(&txn)
            .await?;
        totp_row::ActiveModel {
            user_id: Set(user.id),
            tenant_id: Set(user.tenant_id),
            secret_sealed: Set(sealed),
            confirmed_at: Set(None),
            last_used_step: Set(None),
            created_at: Set(sigil_core::now()),
        }
        .insert(&txn)
        .await
        .map_err(|e| match Error::from(e) {
            Error::Conflict { .. } => Error::conflict(
                "two_factor_already_enabled",
                "two-factor sign-in is already on",
            ),
            other => other,
        })?;
        txn.commit().await?;
        self.changed(user.tenant_id, user.id).await;
        Ok(enrolment)
    }

    /// Turns the pending enrolment on with a first code (`user.two_factor.enable`);
    /// answers the new recovery codes (shown once: only their hashes are kept).
    pub async fn confirm(
        &self,
        actor: &Actor,
        user: &User,
        code: &str,
    ) -> Result<std::result::Result<Vec<String>, CodeRefused>> {
        Self::require_person(user)?;
        let row = self.row(user.tenant_id, user.id).await?;
        let row = match row {
            Some(r) if r.confirmed_at.is_none() => r,
            Some(_) => {
                return Err(Error::conflict(
                    "two_factor_already_enabled",
                    "two-factor sign-in is already on",
                ))
            }
            None => {
                return Err(Error::conflict(
                    "no_pending_enrolment",
                    "start with beginTotpEnrolment, then confirm with a code from the app",
                ))
            }
        };
        let secret = self.secret_of(&row)?;
        let Some(step) = totp::matching_step(&secret, code, unix_now())? else {
            return Ok(Err(CodeRefused::Invalid));
        };
        let now = sigil_core::now();
        let codes = recovery::generate();
        let txn = self.db.begin().await?;
        let done = totp_row::Entity::update_many_in(user.tenant_id)
            .col_expr(totp_row::Column::ConfirmedAt, Expr::value(Some(now)))
            .col_expr(
                totp_row::Column::LastUsedStep,
                Expr::value(Some(step_value(step))),
            )
            .filter(totp_row::Column::UserId.eq(user.id))
            .filter(totp_row::Column::ConfirmedAt.is_null())
            .filter(totp_row::Column::SecretSealed.eq(row.secret_sealed.as_str()))
            .exec(&txn)
            .await?;
        if done.rows_affected != 1 {
            return Err(Error::conflict(
                "no_pending_enrolment",
                "the enrolment changed meanwhile; start again with beginTotpEnrolment",
            ));
        }
        self.replace_recovery_codes(&txn, user, &codes).await?;
        entity::Entity::update_many_in(user.tenant_id)
            .col_expr(entity::Column::TwoFactorEnabledAt, Expr::value(Some(now)))
            .filter(entity::Column::Id.eq(user.id))
            .exec(&txn)
            .await?;
        let event = actor
            .event("user.two_factor.enable", "user")
            .in_tenant(user.tenant_id)
            .target(user.id)
            .before(serde_json::json!({"two_factor": false}))
            .after(serde_json::json!({"two_factor": true, "method": "totp"}));
        sigil_audit::write(&txn, event).await?;
        txn.commit().await?;
        self.changed(user.tenant_id, user.id).await;
        Ok(Ok(codes))
    }

    async fn replace_recovery_codes(
        &self,
        conn: &impl sea_orm::ConnectionTrait,
        user: &User,
        codes: &[String],
    ) -> Result<()> {
        recovery_code::Entity::delete_many_in(user.tenant_id)
            .filter(recovery_code::Column::UserId.eq(user.id))
            .exec(conn)
            .await?;
        let now = sigil_core::now();
        let mut rows = Vec::with_capacity(codes.len());
        for code in codes {
            let normalised = recovery::normalise(code)
                .ok_or_else(|| Error::internal("a generated recovery code does not read back"))?;
            rows.push(recovery_code::ActiveModel {
                id: Set(uuid::Uuid::now_v7()),
                tenant_id: Set(user.tenant_id),
                user_id: Set(user.id),
                code_hash: Set(recovery::hash(&self.recovery_key, user.id, &normalised)?),
                used_at: Set(None),
                created_at: Set(now),
            });
        }
        recovery_code::Entity::insert_many(rows)
            .exec_without_returning(conn)
            .await?;
        Ok(())
    }

    /// Checks a second factor of a user with TOTP on. A TOTP code is accepted once: its
    /// time step must be later than the last one accepted (a conditional update, so two
    /// requests with one code cannot both pass). A recovery code is spent by the check,
    /// which `actor` files (`user.two_factor.recovery_code_used`) in the same transaction.
    pub async fn verify(
        &self,
        actor: &Actor,
        user: &User,
        factor: &SecondFactor,
    ) -> Result<std::result::Result<Verified, CodeRefused>> {
        let row = self
            .row(user.tenant_id, user.id)
            .await?
            .filter(|r| r.confirmed_at.is_some())
            .ok_or_else(|| {
                Error::conflict("two_factor_not_enabled", "two-factor sign-in is off")
            })?;
        match factor {
            SecondFactor::Totp(code) => {
                let secret = self.secret_of(&row)?;
                let Some(step) = totp::matching_step(&secret, code, unix_now())? else {
                    return Ok(Err(CodeRefused::Invalid));
                };
                let step = step_value(step);
                let done = totp_row::Entity::update_many_in(user.tenant_id)
                    .col_expr(totp_row::Column::LastUsedStep, Expr::value(Some(step)))
                    .filter(totp_row::Column::UserId.eq(user.id))
                    .filter(totp_row::Column::ConfirmedAt.is_not_null())
                    .filter(
                        Condition::any()
                            .add(totp_row::Column::LastUsedStep.is_null())
                            .add(totp_row::Column::LastUsedStep.lt(step)),
                    )
                    .exec(&self.db)
                    .await?;
                Ok(if done.rows_affected == 1 {
                    Ok(Verified::Totp)
                } else {
                    Err(CodeRefused::Reused)
                })
            }
            SecondFactor::RecoveryCode(code) => {
                let Some(normalised) = recovery::normalise(code) else {
                    return Ok(Err(CodeRefused::Invalid));
                };
                let hash = recovery::hash(&self.recovery_key, user.id, &normalised)?;
                let of_user = || {
                    recovery_code::Entity::find_in(user.tenant_id)
                        .filter(recovery_code::Column::UserId.eq(user.id))
                };
                let txn = self.db.begin().await?;
                let done = recovery_code::Entity::update_many_in(user.tenant_id)
                    .col_expr(
                        recovery_code::Column::UsedAt,
                        Expr::value(Some(sigil_core::now())),
                    )
                    .filter(recovery_code::Column::UserId.eq(user.id))
                    .filter(recovery_code::Column::CodeHash.eq(hash.as_str()))
                    .filter(recovery_code::Column::UsedAt.is_null())
                    .exec(&txn)
                    .await?;
                if done.rows_affected == 1 {
                    let left = of_user()
                        .filter(recovery_code::Column::UsedAt.is_null())
                        .count(&txn)
                        .await?;
                    let event = actor
                        .event("user.two_factor.recovery_code_used", "user")
                        .in_tenant(user.tenant_id)
                        .target(user.id)
                        .after(serde_json::json!({"recovery_codes_left": left}));
                    sigil_audit::write(&txn, event).await?;
                    txn.commit().await?;
                    self.changed(user.tenant_id, user.id).await;
                    return Ok(Ok(Verified::RecoveryCode { left }));
                }
                // Nothing was spent: was it spent before?
                let spent = of_user()
                    .filter(recovery_code::Column::CodeHash.eq(hash.as_str()))
                    .count(&txn)
                    .await?;
                txn.rollback().await?;
                Ok(Err(if spent > 0 {
                    CodeRefused::Reused
                } else {
                    CodeRefused::Invalid
                }))
            }
        }
    }

    /// The user turns their own two-factor sign-in off (`user.two_factor.disable`, when
    /// it was on), dropping a pending enrolment and the recovery codes. Answers the user
    /// as they are now.
    pub async fn disable(&self, actor: &Actor, tenant: TenantId, user: UserId) -> Result<User> {
        let txn = self.db.begin().await?;
        if turn_off(&txn, tenant, user).await? {
            let event = actor
                .event("user.two_factor.disable", "user")
                .in_tenant(tenant)
                .target(user)
                .before(serde_json::json!({"two_factor": true}))
                .after(serde_json::json!({"two_factor": false}));
            sigil_audit::write(&txn, event).await?;
        }
        let now = User::try_from(&crate::service::model_in(&txn, tenant, user).await?)?;
        txn.commit().await?;
        self.changed(tenant, user).await;
        Ok(now)
    }

    /// An admin turns off another person's two-factor sign-in, e.g. when their app is
    /// lost (`user.two_factor.reset`). Your own goes through [`TwoFactorService::disable`];
    /// refused when it is off. Answers the user as they are now.
    pub async fn reset(&self, actor: &Actor, user: &User) -> Result<User> {
        if actor.user == Some(user.id) {
            return Err(Error::conflict(
                "use_disable_totp",
                "turn off your own two-factor sign-in with disableTotp",
            ));
        }
        Self::require_person(user)?;
        let tenant = user.tenant_id;
        let txn = self.db.begin().await?;
        if !turn_off(&txn, tenant, user.id).await? {
            return Err(Error::conflict(
                "two_factor_not_enabled",
                "the user's two-factor sign-in is off",
            ));
        }
        let event = actor
            .event("user.two_factor.reset", "user")
            .in_tenant(tenant)
            .target(user.id)
            .before(serde_json::json!({"two_factor": true}))
            .after(serde_json::json!({"two_factor": false}));
        sigil_audit::write(&txn, event).await?;
        let now = User::try_from(&crate::service::model_in(&txn, tenant, user.id).await?)?;
        txn.commit().await?;
        self.changed(tenant, user.id).await;
        Ok(now)
    }

    pub async fn status(&self, user: &User) -> Result<Status> {
        let row = self.row(user.tenant_id, user.id).await?;
        let recovery_codes_left = if user.two_factor_enabled_at.is_some() {
            recovery_code::Entity::find_in(user.tenant_id)
                .filter(recovery_code::Column::UserId.eq(user.id))
                .filter(recovery_code::Column::UsedAt.is_null())
                .count(&self.db)
                .await?
        } else {
            0
        };
        Ok(Status {
            enabled_at: user.two_factor_enabled_at,
            pending: row.is_some_and(|r| r.confirmed_at.is_none()),
            recovery_codes_left,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{code, World};

    /// A current code of the pending or confirmed secret behind `enrolment`.
    fn code_of(enrolment: &Enrolment) -> String {
        let secret = totp_rs::Secret::Encoded(enrolment.secret.clone())
            .to_bytes()
            .unwrap();
        totp_rs::TOTP::new(
            totp_rs::Algorithm::SHA1,
            6,
            1,
            30,
            secret,
            None,
            String::new(),
        )
        .unwrap()
        .generate_current()
        .unwrap()
    }

    /// Turns `user`'s second factor on, as they do; answers their recovery codes.
    async fn enrol(w: &World, user: &User) -> Vec<String> {
        let enrolment = w.two_factor.begin(user, "acme").await.unwrap();
        w.two_factor
            .confirm(&w.actor_of(user), user, &code_of(&enrolment))
            .await
            .unwrap()
            .unwrap()
    }

    #[tokio::test]
    async fn enabling_and_disabling_each_write_one_event() {
        let w = World::new().await;
        let bob = w.user("bob", UserKind::Person).await;
        let enrolment = w.two_factor.begin(&bob, "acme").await.unwrap();
        let bob_actor = w.actor_of(&bob);
        // Not a code at all: refused, and not filed.
        let wrong = w
            .two_factor
            .confirm(&bob_actor, &bob, "abcdef")
            .await
            .unwrap();
        assert_eq!(wrong, Err(CodeRefused::Invalid));
        assert_eq!(w.actions().await, ["user.create"]);
        w.two_factor
            .confirm(&bob_actor, &bob, &code_of(&enrolment))
            .await
            .unwrap()
            .unwrap();
        let e = w.events().await.pop().unwrap();
        assert_eq!(e.action, "user.two_factor.enable");
        assert_eq!((e.actor, e.tenant), (Some(bob.id), Some(w.tenant.id)));
        assert_eq!(e.target_id, Some(bob.id.to_string()));
        assert_eq!(e.before, Some(serde_json::json!({"two_factor": false})));
        assert_eq!(
            e.after,
            Some(serde_json::json!({"two_factor": true, "method": "totp"}))
        );

        let user = w
            .two_factor
            .disable(&bob_actor, w.tenant.id, bob.id)
            .await
            .unwrap();
        assert_eq!(user.two_factor_enabled_at, None);
        let e = w.events().await.pop().unwrap();
        assert_eq!(e.action, "user.two_factor.disable");
        assert_eq!(e.before, Some(serde_json::json!({"two_factor": true})));
        assert_eq!(e.after, Some(serde_json::json!({"two_factor": false})));
        // Already off: nothing changes, nothing is filed.
        let n = w.events().await.len();
        w.two_factor
            .disable(&bob_actor, w.tenant.id, bob.id)
            .await
            .unwrap();
        assert_eq!(w.events().await.len(), n);
    }

    #[tokio::test]
    async fn a_spent_recovery_code_is_filed_with_what_is_left() {
        let w = World::new().await;
        let bob = w.user("bob", UserKind::Person).await;
        let codes = enrol(&w, &bob).await;
        let bob = w.users.get(w.tenant.id, bob.id).await.unwrap();
        let actor = w.actor_of(&bob);
        let n = w.events().await.len();
        let wrong = SecondFactor::RecoveryCode("AAAAA-AAAAA".into());
        assert_eq!(
            w.two_factor.verify(&actor, &bob, &wrong).await.unwrap(),
            Err(CodeRefused::Invalid)
        );
        assert_eq!(w.events().await.len(), n, "a refused code is no event");
        let right = SecondFactor::RecoveryCode(codes[3].clone());
        assert_eq!(
            w.two_factor.verify(&actor, &bob, &right).await.unwrap(),
            Ok(Verified::RecoveryCode { left: 9 })
        );
        let e = w.events().await.pop().unwrap();
        assert_eq!(e.action, "user.two_factor.recovery_code_used");
        assert_eq!(e.actor, Some(bob.id));
        assert_eq!(e.after, Some(serde_json::json!({"recovery_codes_left": 9})));
        assert_eq!(
            w.two_factor.verify(&actor, &bob, &right).await.unwrap(),
            Err(CodeRefused::Reused)
        );
        assert_eq!(w.events().await.len(), n + 1);
    }

    #[tokio::test]
    async fn an_admins_reset_is_filed_and_refused_for_themselves_or_when_off() {
        let w = World::new().await;
        let bob = w.user("bob", UserKind::Person).await;
        enrol(&w, &bob).await;
        let bob = w.users.get(w.tenant.id, bob.id).await.unwrap();
        let admin = w.actor();
        assert_eq!(
            code(w.two_factor.reset(&admin, &w.admin).await),
            "use_disable_totp"
        );
        let ci = w.user("ci", UserKind::Api).await;
        assert_eq!(
            code(w.two_factor.reset(&admin, &ci).await),
            "two_factor_not_for_api_users"
        );
        let n = w.events().await.len();
        let user = w.two_factor.reset(&admin, &bob).await.unwrap();
        assert_eq!(user.two_factor_enabled_at, None);
        let events = w.events().await;
        assert_eq!(events.len(), n + 1);
        let e = events.last().unwrap();
        assert_eq!(e.action, "user.two_factor.reset");
        assert_eq!(e.actor, Some(w.admin.id));
        assert_eq!(e.target_id, Some(bob.id.to_string()));
        assert_eq!(e.before, Some(serde_json::json!({"two_factor": true})));
        assert_eq!(e.after, Some(serde_json::json!({"two_factor": false})));
        assert_eq!(
            code(w.two_factor.reset(&admin, &bob).await),
            "two_factor_not_enabled"
        );
        assert_eq!(w.events().await.len(), n + 1);
    }
}
