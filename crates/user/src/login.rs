//! Signing in. The password check costs the same and answers the same for an unknown
//! tenant, an unknown user and a wrong password; every attempt first takes a slot of the
//! throttle; then the gates: the tenant enabled, the user active, API access, and a second
//! factor (a sealed challenge, completed with a code) for people who have one. Minting the
//! session is the token crate's (`TokenService::login_session`); knows no HTTP.

use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, QueryFilter};
use sigil_audit::Actor;
use sigil_core::{Error, Result, TenantId, TenantOwned, UserId};
use sigil_tenant::{Tenant, TenantPolicy, TenantService};

use crate::challenge::{self, ChallengeError};
use crate::entity::{Column, Entity};
use crate::service::UserService;
use crate::throttle::{LoginAttempt, LoginThrottle};
use crate::two_factor::{CodeRefused, SecondFactor, TwoFactorService, Verified};
use crate::types::User;

/// A login as it arrived.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// The tenant's slug.
    pub tenant: String,
    pub username: String,
    pub password: String,
    /// Sent with HTTP Basic, which cannot carry a second factor.
    pub via_basic: bool,
    pub client_ip: Option<IpAddr>,
}

/// A user who proved who they are: their session is to be minted.
#[derive(Clone, Debug)]
pub struct SignedIn {
    pub user: User,
    pub tenant: Tenant,
    /// The tenant requires a second factor the user does not have yet: the session may
    /// only enrol one.
    pub enrol_only: bool,
}

impl SignedIn {
    fn new(user: User, tenant: Tenant) -> Self {
        let enrol_only = user.must_enrol(&tenant.policy);
        Self {
            user,
            tenant,
            enrol_only,
        }
    }
}

/// The password was right; a second factor is to come ([`LoginService::complete`]).
#[derive(Clone, Debug)]
pub struct Challenge {
    /// Sealed; given back with the code.
    pub text: String,
    pub expires_at: DateTime<Utc>,
    pub tenant: Tenant,
}

#[derive(Clone, Debug)]
pub enum Login {
    SignedIn(SignedIn),
    Challenge(Challenge),
}

/// What became of the second factor of a completed login, for metrics and audit.
#[derive(Clone, Debug)]
pub enum FactorNote {
    /// The challenge did not open (expired, or not one of this server's).
    ChallengeInvalid,
    /// The throttle refused before the code was looked at.
    Throttled,
    Accepted {
        user: User,
        verified: Verified,
    },
    Refused(CodeRefused),
}

/// The second step of a login: the session to mint (or why not), and what became of the
/// code on the way.
#[derive(Debug)]
pub struct Completion {
    pub note: Option<FactorNote>,
    pub result: Result<SignedIn>,
}

/// A signed-in user whose password is asked again (password confirmation, password
/// change, the two-factor changes).
#[derive(Clone, Copy, Debug)]
pub struct Account<'a> {
    pub tenant: TenantId,
    pub user: UserId,
    pub username: &'a str,
    pub policy: &'a TenantPolicy,
}

fn invalid_credentials() -> Error {
    Error::unauthorized("invalid_credentials", "the username or password is wrong")
}

fn tenant_disabled() -> Error {
    Error::unauthorized("tenant_disabled", "the tenant is disabled")
}

fn user_deactivated() -> Error {
    Error::unauthorized("user_deactivated", "the user is deactivated")
}

fn check_api_access(user: &User) -> Result<()> {
    if user.api_access {
        Ok(())
    } else {
        Err(Error::forbidden(
            "api_access_denied",
            "the user lacks the api_access permission",
        ))
    }
}

#[derive(Clone)]
pub struct LoginService {
    users: UserService,
    tenants: TenantService,
    two_factor: TwoFactorService,
    throttle: LoginThrottle,
}

impl LoginService {
    pub fn new(
        users: UserService,
        tenants: TenantService,
        two_factor: TwoFactorService,
        throttle: LoginThrottle,
    ) -> Self {
        Self {
            users,
            tenants,
            two_factor,
            throttle,
        }
    }

    /// Checks a login: a session to mint, or a challenge for the second factor.
    pub async fn sign_in(&self, c: Credentials) -> Result<Login> {
        let Some(tenant) = self.tenants.get_by_slug(&c.tenant).await? else {
            // Same work as a real attempt, so unknown tenants cannot be told apart.
            let _ = self.users.hasher().verify(c.password, None).await;
            return Err(invalid_credentials());
        };
        let attempt = self.attempt(tenant.id, &c.username, c.client_ip, &tenant.policy)?;
        let authenticated = self.authenticate(tenant.id, &c.username, c.password).await;
        if !tenant.enabled {
            // The same hash work as a real attempt and the same answer whatever the
            // password; the slot stays taken either way, so nothing recorded tells a right
            // password from a wrong one.
            drop((attempt, authenticated));
            return Err(tenant_disabled());
        }
        // A wrong password (or a deactivated user) keeps the slot it reserved.
        let user = authenticated?;
        if user.has_two_factor() {
            // The second factor is still to come: earlier failures stay counted, so codes
            // cannot be guessed by signing in again with the password between guesses.
            attempt.released();
            check_api_access(&user)?;
            if c.via_basic {
                return Err(Error::forbidden(
                    "basic_login_refused",
                    "this user signs in with a second factor, which HTTP Basic cannot carry: sign in with a JSON or form body (login, then completeLogin with a code), or use a personal token for scripts",
                ));
            }
            let (text, expires_at) =
                challenge::issue(self.two_factor.master(), tenant.id, user.id)?;
            return Ok(Login::Challenge(Challenge {
                text,
                expires_at,
                tenant,
            }));
        }
        attempt.succeeded();
        check_api_access(&user)?;
        Ok(Login::SignedIn(SignedIn::new(user, tenant)))
    }

    /// The second step of a login with a second factor: the challenge `sign_in` answered
    /// and a code. A wrong code counts toward the same throttle as a wrong password. A
    /// spent recovery code is audited as the user's, from the client (`client_ip`,
    /// `user_agent`), with no credential yet.
    pub async fn complete(
        &self,
        challenge: &str,
        factor: &SecondFactor,
        client_ip: Option<IpAddr>,
        user_agent: Option<String>,
    ) -> Completion {
        let mut note = None;
        let result = self
            .completed(challenge, factor, client_ip, user_agent, &mut note)
            .await;
        Completion { note, result }
    }

    async fn completed(
        &self,
        text: &str,
        factor: &SecondFactor,
        client_ip: Option<IpAddr>,
        user_agent: Option<String>,
        note: &mut Option<FactorNote>,
    ) -> Result<SignedIn> {
        let challenge = challenge::open(self.two_factor.master(), text).map_err(|why| {
            *note = Some(FactorNote::ChallengeInvalid);
            match why {
                ChallengeError::Expired => Error::unauthorized(
                    "challenge_expired",
                    "the login challenge has expired: sign in again",
                ),
                ChallengeError::Invalid => Error::unauthorized(
                    "challenge_invalid",
                    "this is not a login challenge of this server: sign in again",
                ),
            }
        })?;
        let tenant = self.tenants.get(challenge.tenant).await?;
        if !tenant.enabled {
            return Err(tenant_disabled());
        }
        let user = self
            .users
            .find(tenant.id, challenge.user)
            .await?
            .filter(User::has_two_factor)
            .ok_or_else(|| {
                Error::unauthorized(
                    "challenge_invalid",
                    "the challenge no longer applies: sign in again",
                )
            })?;
        if !user.active {
            return Err(user_deactivated());
        }
        let attempt = self
            .attempt(tenant.id, &user.username, client_ip, &tenant.policy)
            .inspect_err(|_| *note = Some(FactorNote::Throttled))?;
        // At login there is no credential yet: filed under the tenant, by the user.
        let actor = Actor::user(tenant.id, user.id, &user.username, None)
            .from_client(client_ip.map(|ip| ip.to_string()), user_agent);
        match self.two_factor.verify(&actor, &user, factor).await? {
            Ok(verified) => {
                attempt.succeeded();
                *note = Some(FactorNote::Accepted {
                    user: user.clone(),
                    verified,
                });
            }
            Err(why) => {
                // A wrong code keeps the slot it reserved, like a wrong password.
                drop(attempt);
                *note = Some(FactorNote::Refused(why));
                return Err(why.error(true));
            }
        }
        check_api_access(&user)?;
        Ok(SignedIn::new(user, tenant))
    }

    /// Checks a signed-in user's own password under one reserved attempt of the login
    /// throttle. A wrong password keeps the slot (403 `invalid_password`, `detail` naming
    /// which password); a right one hands the attempt back for the caller to finish.
    pub async fn check_password(
        &self,
        account: Account<'_>,
        client_ip: Option<IpAddr>,
        password: String,
        detail: &'static str,
    ) -> Result<LoginAttempt<'_>> {
        let attempt = self.attempt(account.tenant, account.username, client_ip, account.policy)?;
        if self
            .users
            .check_password(account.tenant, account.user, password)
            .await?
        {
            Ok(attempt)
        } else {
            // Dropped: the slot stays taken.
            drop(attempt);
            Err(Error::forbidden("invalid_password", detail))
        }
    }

    /// Reserves one password attempt for the user (login, its second factor, and every
    /// password asked again share the per-user count) and the client address, before any
    /// hashing. Dropping the attempt counts it as a failure; only a right password (and
    /// code) gives it back.
    fn attempt(
        &self,
        tenant: TenantId,
        username: &str,
        client_ip: Option<IpAddr>,
        policy: &TenantPolicy,
    ) -> Result<LoginAttempt<'_>> {
        let window = Duration::from_secs(u64::from(policy.login_lockout_secs));
        self.throttle.reserve(
            tenant,
            username,
            client_ip,
            policy.login_max_failures,
            window,
        )
    }

    /// Checks a username and password. Every refusal up to the password check answers the
    /// same `invalid_credentials` after the same amount of work, so usernames cannot be
    /// probed; a deactivated user is named only once the password is right.
    async fn authenticate(
        &self,
        tenant: TenantId,
        username: &str,
        password: String,
    ) -> Result<User> {
        let model = Entity::find_in(tenant)
            .filter(Column::Username.eq(username))
            .one(self.users.db())
            .await?
            .filter(|m| !m.is_system);
        let stored = model.as_ref().and_then(|m| m.password_hash.clone());
        let ok = self.users.hasher().verify(password, stored).await?;
        let model = match model {
            Some(m) if ok => m,
            _ => return Err(invalid_credentials()),
        };
        if !model.active {
            return Err(user_deactivated());
        }
        User::try_from(&model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{code, World, PASSWORD};
    use crate::{UserKind, UserPatch};

    fn login(username: &str, password: &str) -> Credentials {
        Credentials {
            tenant: "acme".into(),
            username: username.into(),
            password: password.into(),
            via_basic: false,
            client_ip: None,
        }
    }

    fn signed_in(login: Result<Login>) -> SignedIn {
        match login {
            Ok(Login::SignedIn(s)) => s,
            other => panic!("expected a session, got {other:?}"),
        }
    }

    /// Turns bob's second factor on; answers his recovery codes.
    async fn enrol(w: &World, user: &User) -> Vec<String> {
        let enrolment = w.two_factor.begin(user, "bob (acme)").await.unwrap();
        let secret = totp_rs::Secret::Encoded(enrolment.secret)
            .to_bytes()
            .unwrap();
        let app = totp_rs::TOTP::new(
            totp_rs::Algorithm::SHA1,
            6,
            1,
            30,
            secret,
            None,
            String::new(),
        )
        .unwrap();
        let code = app.generate_current().unwrap();
        w.two_factor
            .confirm(&w.actor_of(user), user, &code)
            .await
            .unwrap()
            .unwrap()
    }

    #[tokio::test]
    async fn unknown_tenant_unknown_user_and_wrong_password_answer_alike() {
        let w = World::new().await;
        w.user("bob", UserKind::Person).await;
        let elsewhere = Credentials {
            tenant: "nowhere".into(),
            ..login("bob", PASSWORD)
        };
        assert_eq!(
            code(w.logins.sign_in(elsewhere).await),
            "invalid_credentials"
        );
        assert_eq!(
            code(w.logins.sign_in(login("nobody", PASSWORD)).await),
            "invalid_credentials"
        );
        assert_eq!(
            code(w.logins.sign_in(login("bob", "wrong-password-1")).await),
            "invalid_credentials"
        );
        // The system user has no password and never signs in.
        assert_eq!(
            code(w.logins.sign_in(login("system", "")).await),
            "invalid_credentials"
        );
        let s = signed_in(w.logins.sign_in(login("bob", PASSWORD)).await);
        assert_eq!((s.user.username.as_str(), s.enrol_only), ("bob", false));
    }

    #[tokio::test]
    async fn the_gates_after_the_password() {
        let w = World::new().await;
        let bob = w.user("bob", UserKind::Person).await;
        let actor = w.actor();
        let patch = |p: UserPatch| w.users.update(&actor, w.tenant.id, bob.id, p);
        patch(UserPatch {
            api_access: Some(false),
            ..UserPatch::default()
        })
        .await
        .unwrap();
        assert_eq!(
            code(w.logins.sign_in(login("bob", PASSWORD)).await),
            "api_access_denied"
        );
        patch(UserPatch {
            active: Some(false),
            ..UserPatch::default()
        })
        .await
        .unwrap();
        // Deactivation is named only to the right password.
        assert_eq!(
            code(w.logins.sign_in(login("bob", "wrong-password-1")).await),
            "invalid_credentials"
        );
        assert_eq!(
            code(w.logins.sign_in(login("bob", PASSWORD)).await),
            "user_deactivated"
        );
        w.tenants
            .disable(&Actor::operator(), w.tenant.id)
            .await
            .unwrap();
        for password in [PASSWORD, "wrong-password-1"] {
            assert_eq!(
                code(w.logins.sign_in(login("admin", password)).await),
                "tenant_disabled"
            );
        }
    }

    #[tokio::test]
    async fn failures_past_the_policy_lock_the_user_out() {
        let w = World::new().await;
        w.user("bob", UserKind::Person).await;
        for _ in 0..w.tenant.policy.login_max_failures {
            assert_eq!(
                code(w.logins.sign_in(login("bob", "wrong-password-1")).await),
                "invalid_credentials"
            );
        }
        assert_eq!(
            code(w.logins.sign_in(login("bob", PASSWORD)).await),
            "login_throttled"
        );
        // Others are not.
        signed_in(w.logins.sign_in(login("admin", PASSWORD)).await);
    }

    #[tokio::test]
    async fn a_required_second_factor_limits_the_session_to_enrolment() {
        let w = World::new().await;
        w.user("bob", UserKind::Person).await;
        w.user("ci", UserKind::Api).await;
        let policy = TenantPolicy {
            require_two_factor: true,
            ..w.tenant.policy.clone()
        };
        w.tenants
            .update_policy(&Actor::operator(), w.tenant.id, policy)
            .await
            .unwrap();
        assert!(signed_in(w.logins.sign_in(login("bob", PASSWORD)).await).enrol_only);
        // Api users have no second factor to enrol.
        assert!(!signed_in(w.logins.sign_in(login("ci", PASSWORD)).await).enrol_only);
    }

    #[tokio::test]
    async fn a_second_factor_turns_the_login_into_a_challenge() {
        let w = World::new().await;
        let bob = w.user("bob", UserKind::Person).await;
        let recovery = enrol(&w, &bob).await;
        let basic = Credentials {
            via_basic: true,
            ..login("bob", PASSWORD)
        };
        assert_eq!(code(w.logins.sign_in(basic).await), "basic_login_refused");
        let challenge = match w.logins.sign_in(login("bob", PASSWORD)).await.unwrap() {
            Login::Challenge(c) => c,
            other => panic!("expected a challenge, got {other:?}"),
        };
        assert_eq!(challenge.tenant.slug, "acme");

        let forged = w
            .logins
            .complete(
                "not-a-challenge",
                &SecondFactor::Totp("123456".into()),
                None,
                None,
            )
            .await;
        assert!(matches!(forged.note, Some(FactorNote::ChallengeInvalid)));
        assert_eq!(code(forged.result), "challenge_invalid");

        let wrong = SecondFactor::RecoveryCode("AAAAA-AAAAA".into());
        let refused = w.logins.complete(&challenge.text, &wrong, None, None).await;
        assert!(matches!(
            refused.note,
            Some(FactorNote::Refused(CodeRefused::Invalid))
        ));
        assert_eq!(code(refused.result), "invalid_code");

        let right = SecondFactor::RecoveryCode(recovery[0].clone());
        let ip = Some("192.0.2.9".parse().unwrap());
        let done = w
            .logins
            .complete(&challenge.text, &right, ip, Some("app/1".into()))
            .await;
        match done.note {
            Some(FactorNote::Accepted { user, verified }) => {
                assert_eq!(user.id, bob.id);
                assert_eq!(verified, Verified::RecoveryCode { left: 9 });
            }
            other => panic!("expected an accepted code, got {other:?}"),
        }
        assert_eq!(done.result.unwrap().user.id, bob.id);
        // The spent code is audited as bob's, from his client, with no credential yet.
        let spent = w.events().await.pop().unwrap();
        assert_eq!(spent.action, "user.two_factor.recovery_code_used");
        assert_eq!(
            (spent.tenant, spent.actor, spent.actor_label.as_str()),
            (Some(w.tenant.id), Some(bob.id), "bob")
        );
        assert_eq!(spent.credential, None);
        assert_eq!(spent.target_id, Some(bob.id.to_string()));
        assert_eq!(
            spent.after,
            Some(serde_json::json!({"recovery_codes_left": 9}))
        );
        assert_eq!(
            (spent.client_ip.as_deref(), spent.user_agent.as_deref()),
            (Some("192.0.2.9"), Some("app/1"))
        );
        let before_reuse = w.events().await.len();

        let again = w.logins.complete(&challenge.text, &right, None, None).await;
        assert!(matches!(
            again.note,
            Some(FactorNote::Refused(CodeRefused::Reused))
        ));
        assert_eq!(code(again.result), "code_already_used");
        // A refused code is not an event.
        assert_eq!(w.events().await.len(), before_reuse);
    }

    #[tokio::test]
    async fn a_password_asked_again_counts_toward_the_same_throttle() {
        let w = World::new().await;
        let bob = w.user("bob", UserKind::Person).await;
        let account = Account {
            tenant: w.tenant.id,
            user: bob.id,
            username: "bob",
            policy: &w.tenant.policy,
        };
        w.logins
            .check_password(account, None, PASSWORD.into(), "wrong")
            .await
            .unwrap()
            .succeeded();
        for _ in 0..w.tenant.policy.login_max_failures {
            let r = w
                .logins
                .check_password(account, None, "nope-nope-nope".into(), "wrong")
                .await
                .map(|_| ());
            assert_eq!(code(r), "invalid_password");
        }
        assert_eq!(
            code(w.logins.sign_in(login("bob", PASSWORD)).await),
            "login_throttled"
        );
    }
}
