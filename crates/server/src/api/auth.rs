use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use poem::http::StatusCode;
use poem::Request;
use poem_openapi::param::Query;
use poem_openapi::payload::{Form, Json};
use poem_openapi::{ApiRequest, ApiResponse, Object, OpenApi};
use sigil_core::Error;
use sigil_user::{Account, Credentials, Login, LoginAttempt, ProfilePatch, SignedIn};

use super::caller::TenantCaller;
use super::dto::{RoleDto, UserDto};
use super::json_out::JsonOut;
use super::optional_body::OptionalRequest;
use super::two_factor;
use super::ApiTags;
use crate::auth::client_ip;
use crate::metrics::LoginOutcome;
use crate::problem::ApiResult;
use crate::state::AppState;

pub struct AuthApi(pub Arc<AppState>);

/// Credentials for a login; with HTTP Basic, give only `tenant` here (or in the query).
#[derive(Debug, Object, serde::Deserialize)]
pub struct LoginBody {
    /// Tenant slug.
    pub tenant: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// The same credentials as a form. A schema of its own, so that generated clients can
/// tell the JSON body from the form body.
#[derive(Debug, Object, serde::Deserialize)]
pub struct LoginForm {
    /// Tenant slug.
    pub tenant: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl From<LoginForm> for LoginBody {
    fn from(f: LoginForm) -> Self {
        LoginBody {
            tenant: f.tenant,
            username: f.username,
            password: f.password,
        }
    }
}

#[derive(ApiRequest)]
pub enum LoginRequest {
    Json(Json<LoginBody>),
    Form(Form<LoginForm>),
}

/// A login session token (valid one hour unless the tenant policy shortens it).
#[derive(Object)]
pub struct LoginResult {
    /// The session token (a JWT); send it as `Authorization: Bearer <token>`.
    pub token: String,
    /// Always `Bearer`.
    pub token_type: String,
    pub expires_at: DateTime<Utc>,
    /// Seconds until expiry.
    pub expires_in: i64,
    pub tenant: String,
    pub user: UserDto,
    /// Present (true) when the tenant requires two-factor sign-in and the user has none
    /// yet: the session can only call `getCurrentUser`, `beginTotpEnrolment` and
    /// `confirmTotpEnrolment` until they enrol.
    #[oai(skip_serializing_if_is_none)]
    pub two_factor_enrolment_required: Option<bool>,
}

/// The second factor a login challenge asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, poem_openapi::Enum)]
#[oai(rename_all = "snake_case")]
pub enum SecondFactorKind {
    Totp,
}

/// The password was right and the user signs in with a second factor: complete the
/// login with `completeLogin` (the challenge and a code from the authenticator app, or
/// a recovery code) before `challenge_expires_at`.
#[derive(Object)]
pub struct LoginChallenge {
    /// Opaque; give it back to `completeLogin`.
    pub challenge: String,
    pub challenge_expires_at: DateTime<Utc>,
    /// What to give: `totp` (a code from the app, or a recovery code).
    pub second_factor: SecondFactorKind,
    pub tenant: String,
}

/// One answer per login, moved once: the size difference of its variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(ApiResponse)]
pub enum LoginResponse {
    /// Signed in.
    #[oai(status = 200)]
    Ok(Json<LoginResult>),
    /// The password is right; a second factor is needed (`completeLogin`).
    #[oai(status = 202)]
    SecondFactor(Json<LoginChallenge>),
}

/// The second step of a login with a second factor.
#[derive(Object)]
pub struct CompleteLoginBody {
    /// The challenge `login` answered.
    #[oai(validator(max_length = 1000))]
    pub challenge: String,
    /// A current code from the authenticator app (or give `recovery_code`).
    #[oai(validator(max_length = 16))]
    pub code: Option<String>,
    /// One of the user's recovery codes (each works once), instead of `code`.
    #[oai(validator(max_length = 32))]
    pub recovery_code: Option<String>,
}

#[derive(Object)]
pub struct ConfirmPasswordBody {
    pub password: String,
    /// With two-factor sign-in on: a current code from the authenticator app (or give
    /// `recovery_code`).
    #[oai(validator(max_length = 16))]
    pub code: Option<String>,
    /// With two-factor sign-in on: one of your recovery codes, instead of `code`.
    #[oai(validator(max_length = 32))]
    pub recovery_code: Option<String>,
}

#[derive(Object)]
pub struct Confirmation {
    /// Token changes made with this session need no new confirmation until then.
    pub confirmed_until: DateTime<Utc>,
}

#[derive(ApiResponse)]
pub enum ConfirmResponse {
    /// The session may change tokens for a few minutes.
    #[oai(status = 200)]
    Ok(Json<Confirmation>),
}

/// The signed-in user and the credential in use.
#[derive(Object, serde::Serialize)]
pub struct CurrentUser {
    pub user: UserDto,
    pub tenant: String,
    pub role: RoleDto,
    pub token_id: uuid::Uuid,
    /// `session`, `personal` or `application`.
    pub token_kind: String,
    #[serde(serialize_with = "super::json_out::rfc3339_opt")]
    pub token_expires_at: Option<DateTime<Utc>>,
    /// Until when token changes need no password confirmation.
    #[serde(serialize_with = "super::json_out::rfc3339_opt")]
    pub confirmed_until: Option<DateTime<Utc>>,
    /// Whether token changes with this credential need `confirmPassword` first.
    pub password_confirmation_required: bool,
    /// Methods this credential may call (scope ∩ role).
    pub methods: Vec<String>,
    /// The tenant requires two-factor sign-in and you have none yet: this session can
    /// only enrol (`beginTotpEnrolment`, `confirmTotpEnrolment`).
    pub two_factor_enrolment_required: bool,
    /// Unused recovery codes, when two-factor sign-in is on.
    pub recovery_codes_left: Option<u64>,
}

#[derive(ApiResponse)]
pub enum CurrentUserResponse {
    #[oai(status = 200)]
    Ok(JsonOut<CurrentUser>),
}

#[derive(Object)]
pub struct UpdateCurrentUserBody {
    #[oai(validator(min_length = 1, max_length = 200))]
    pub display_name: Option<String>,
    /// An address (`local@domain.tld`, no spaces); empty clears it.
    #[oai(validator(max_length = 254))]
    pub email: Option<String>,
}

#[derive(ApiResponse)]
pub enum UserResponse {
    #[oai(status = 200)]
    Ok(Json<UserDto>),
}

#[derive(Object)]
pub struct ChangePasswordBody {
    pub current_password: String,
    /// 12-256 characters (the default policy), not containing the username.
    pub new_password: String,
}

#[derive(ApiResponse)]
pub enum NoContent {
    /// Done.
    #[oai(status = 204)]
    Done,
}

fn basic_credentials(req: &Request) -> Option<(String, String)> {
    let value = req.headers().get("authorization")?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, pass) = decoded.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Auth")]
impl AuthApi {
    /// Sign in with username, password and tenant (JSON, form, or HTTP Basic plus tenant).
    ///
    /// With HTTP Basic the body is optional: give the tenant in the `tenant` query parameter.
    #[oai(path = "/auth/login", method = "post", operation_id = "login")]
    async fn login(
        &self,
        req: &Request,
        tenant: Query<Option<String>>,
        body: OptionalRequest<LoginRequest>,
    ) -> ApiResult<LoginResponse> {
        let result = self.sign_in(req, tenant.0, body).await;
        self.count_login(&result);
        result
    }

    /// Complete a login with a second factor: the challenge `login` answered and a
    /// current code from the authenticator app, or one of the recovery codes. Wrong codes
    /// count toward the same throttle as wrong passwords; a code works once.
    #[oai(
        path = "/auth/login/complete",
        method = "post",
        operation_id = "completeLogin"
    )]
    async fn complete_login(
        &self,
        req: &Request,
        body: Json<CompleteLoginBody>,
    ) -> ApiResult<LoginResponse> {
        let result = self.complete(req, body.0).await;
        self.count_login(&result);
        result
    }

    /// Confirm your password to change tokens with this login session for a few minutes.
    #[oai(
        path = "/auth/confirm-password",
        method = "post",
        operation_id = "confirmPassword"
    )]
    async fn confirm_password(
        &self,
        req: &Request,
        caller: TenantCaller,
        body: Json<ConfirmPasswordBody>,
    ) -> ApiResult<ConfirmResponse> {
        let p = caller.0;
        let body = body.0;
        // Only a login session is ever asked to confirm: refuse anything else before the
        // password is looked at (and before it costs a throttle slot).
        if !p.is_session() {
            return Err(Error::forbidden(
                "not_a_session",
                "only a login session can be confirmed; tokens are not asked to confirm",
            )
            .into());
        }
        let user = self.0.users.get(p.tenant_id, p.user_id).await?;
        let factor = if user.has_two_factor() {
            Some(
                two_factor::factor_from(body.code, body.recovery_code).map_err(|_| {
                    Error::forbidden(
                        "two_factor_code_required",
                        "two-factor sign-in is on: give a current code from your authenticator app (code) with the password",
                    )
                })?,
            )
        } else {
            None
        };
        let attempt =
            checked_password(&self.0, req, &p, body.password, "the password is wrong").await?;
        if let Some(factor) = factor {
            let actor = self.0.actor(req, Some(&p));
            match self.0.two_factor.verify(&actor, &user, &factor).await? {
                Ok(v) => two_factor::accepted(&self.0, v),
                Err(why) => {
                    // A wrong code keeps the slot too.
                    drop(attempt);
                    return Err(two_factor::refused(&self.0, why).into());
                }
            }
        }
        attempt.succeeded();
        let until = self.0.tokens.confirm_session(&p).await?;
        Ok(ConfirmResponse::Ok(Json(Confirmation {
            confirmed_until: until,
        })))
    }

    /// The signed-in user, their tenant and the rights of the credential in use.
    #[oai(path = "/users/me", method = "get", operation_id = "getCurrentUser")]
    async fn current_user(&self, caller: TenantCaller) -> ApiResult<CurrentUserResponse> {
        let p = caller.0;

        let profile = self.0.profiles.get(p.tenant_id, p.user_id).await?;
        let user = &profile.user;
        let snapshot = self.0.registry.load();
        let methods = snapshot.method_ids(&p.rights).map(str::to_owned).collect();
        let recovery_codes_left = profile.recovery_codes_left;
        Ok(CurrentUserResponse::Ok(JsonOut(CurrentUser {
            user: UserDto::from(user),
            tenant: p.tenant_slug.to_string(),
            role: p.role.into(),
            token_id: p.token_id.0,
            token_kind: p.token_kind.as_str().to_owned(),
            token_expires_at: p.expires_at,
            confirmed_until: p.elevated_until.filter(|t| *t > Utc::now()),
            password_confirmation_required: p.require_confirmation().is_err(),
            methods,
            two_factor_enrolment_required: p.is_session() && user.must_enrol(&p.policy),
            recovery_codes_left,
        })))
    }

    /// Change your display name or email.
    #[oai(
        path = "/users/me",
        method = "patch",
        operation_id = "updateCurrentUser"
    )]
    async fn update_current_user(
        &self,
        req: &Request,
        caller: TenantCaller,
        body: Json<UpdateCurrentUserBody>,
    ) -> ApiResult<UserResponse> {
        let p = caller.0;
        let profile = ProfilePatch {
            display_name: body.0.display_name,
            email: body.0.email.map(|e| Some(e).filter(|e| !e.is_empty())),
        };
        let actor = self.0.actor(req, Some(&p));
        let user = self
            .0
            .users
            .update_profile(&actor, p.tenant_id, p.user_id, profile)
            .await?;
        Ok(UserResponse::Ok(Json(UserDto::from(&user))))
    }

    /// Change your password; every other login session of yours ends.
    #[oai(
        path = "/users/me/password",
        method = "post",
        operation_id = "changePassword"
    )]
    async fn change_password(
        &self,
        req: &Request,
        caller: TenantCaller,
        body: Json<ChangePasswordBody>,
    ) -> ApiResult<NoContent> {
        let p = caller.0;
        let body = body.0;
        // The current password is guessable with a stolen session: throttled like a login.
        let attempt = checked_password(
            &self.0,
            req,
            &p,
            body.current_password,
            "the current password is wrong",
        )
        .await?;
        attempt.succeeded();
        // Every other session ends with the change; the one in use stays.
        let keep = p.is_session().then_some(p.token_id);
        let actor = self.0.actor(req, Some(&p));
        self.0
            .users
            .change_own_password(&actor, p.tenant_id, p.user_id, body.new_password, keep)
            .await?;
        Ok(NoContent::Done)
    }
}

impl AuthApi {
    /// Counts a login's outcome: a session is a success; a challenge is not one yet.
    fn count_login(&self, result: &ApiResult<LoginResponse>) {
        let outcome = match result {
            Ok(LoginResponse::Ok(_)) => Some(LoginOutcome::Success),
            Ok(LoginResponse::SecondFactor(_)) => None,
            Err(e) if e.status() == StatusCode::TOO_MANY_REQUESTS => Some(LoginOutcome::Throttled),
            Err(e) if matches!(e.status().as_u16(), 401 | 403) => Some(LoginOutcome::Failure),
            // Malformed requests and outages are neither.
            Err(_) => None,
        };
        if let Some(outcome) = outcome {
            self.0.metrics.login(outcome);
        }
    }

    /// The login itself; [`AuthApi::login`] counts its outcome.
    async fn sign_in(
        &self,
        req: &Request,
        tenant: Option<String>,
        body: OptionalRequest<LoginRequest>,
    ) -> ApiResult<LoginResponse> {
        // No body at all: HTTP Basic credentials and the `tenant` query parameter.
        let body = match body.0 {
            Some(LoginRequest::Json(Json(b))) => b,
            Some(LoginRequest::Form(Form(f))) => f.into(),
            None => LoginBody {
                tenant: None,
                username: None,
                password: None,
            },
        };
        let (username, password, via_basic) =
            match (body.username, body.password, basic_credentials(req)) {
                (Some(u), Some(p), _) => (u, p, false),
                (_, _, Some((u, p))) => (u, p, true),
                _ => {
                    return Err(Error::unauthorized(
                        "credentials_required",
                        "give username and password (or HTTP Basic)",
                    )
                    .into())
                }
            };
        let slug = body
            .tenant
            .or(tenant)
            .ok_or_else(|| {
                Error::unauthorized(
                    "tenant_required",
                    "give the tenant (the `tenant` field or query parameter) with the username and password",
                )
            })?;
        let state = &self.0;
        let login = state
            .logins
            .sign_in(Credentials {
                tenant: slug,
                username,
                password,
                via_basic,
                client_ip: client_ip(req, state.verifier.trusted_proxies()),
            })
            .await?;
        match login {
            Login::SignedIn(signed) => self.session(&signed).await,
            Login::Challenge(c) => Ok(LoginResponse::SecondFactor(Json(LoginChallenge {
                challenge: c.text,
                challenge_expires_at: c.expires_at,
                second_factor: SecondFactorKind::Totp,
                tenant: c.tenant.slug,
            }))),
        }
    }

    /// The second step of a login with a second factor; [`AuthApi::complete_login`]
    /// counts its outcome.
    async fn complete(&self, req: &Request, body: CompleteLoginBody) -> ApiResult<LoginResponse> {
        let state = &self.0;
        let factor = two_factor::factor_from(body.code, body.recovery_code)?;
        let ip = client_ip(req, state.verifier.trusted_proxies());
        let agent = crate::auth::user_agent(req);
        let done = state
            .logins
            .complete(&body.challenge, &factor, ip, agent)
            .await;
        if let Some(note) = done.note {
            two_factor::noted(state, note);
        }
        self.session(&done.result?).await
    }

    /// A new login session: a full one, or one that can only enrol when the policy
    /// requires a second factor the user does not have yet.
    async fn session(&self, signed: &SignedIn) -> ApiResult<LoginResponse> {
        let minted = self.0.tokens.login_session(signed).await?;
        let expires_at = minted.token.expires_at.unwrap_or_else(Utc::now);
        Ok(LoginResponse::Ok(Json(LoginResult {
            token: minted.secret,
            token_type: "Bearer".into(),
            expires_in: (expires_at - Utc::now()).num_seconds().max(0),
            expires_at,
            tenant: signed.tenant.slug.clone(),
            user: UserDto::from(&signed.user),
            two_factor_enrolment_required: signed.enrol_only.then_some(true),
        })))
    }
}

/// Checks the caller's own password (confirmPassword, changePassword, the two-factor
/// changes) under one reserved attempt of the login throttle. A wrong password keeps the
/// slot (403 `invalid_password`, `detail` naming which password); a right one hands the
/// attempt back for the caller to finish.
pub(crate) async fn checked_password<'a>(
    state: &'a AppState,
    req: &Request,
    p: &sigil_token::Principal,
    password: String,
    detail: &'static str,
) -> ApiResult<LoginAttempt<'a>> {
    let account = Account {
        tenant: p.tenant_id,
        user: p.user_id,
        username: &p.username,
        policy: &p.policy,
    };
    let ip = client_ip(req, state.verifier.trusted_proxies());
    Ok(state
        .logins
        .check_password(account, ip, password, detail)
        .await?)
}
