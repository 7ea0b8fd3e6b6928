//! Two-factor sign-in (TOTP) for people: enrolment from the profile, turning it off, an
//! admin's reset, and what the rest of the API asks about second factors (the tenant
//! policy `require_two_factor`, the hygiene report, sessions that may only enrol).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem::Request;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use sigil_core::page::PageRequest;
use sigil_core::{Error, TenantId, UserId};
use sigil_token::Principal;
use sigil_user::{
    totp, CodeRefused, FactorNote, SecondFactor, TwoFactorService, User, UserFilter, UserKind,
    Verified,
};
use uuid::Uuid;

use super::caller::TenantCaller;
use super::dto::UserDto;
use super::ApiTags;
use crate::metrics::SecondFactorOutcome;
use crate::problem::{ApiError, ApiResult};
use crate::state::AppState;

pub struct TwoFactorApi(pub Arc<AppState>);

/// A started TOTP enrolment: scan the QR code (or type the secret) into an authenticator
/// app, then confirm with a code it shows.
#[derive(Object)]
pub struct TotpEnrolment {
    /// The secret in base32, for typing it into the app by hand.
    pub secret: String,
    /// The `otpauth://totp/...` URI the QR code carries.
    pub otpauth_uri: String,
    /// The QR code of `otpauth_uri`, as an SVG document.
    pub qr_code_svg: String,
    /// Always `SHA1`.
    pub algorithm: String,
    /// Digits per code (6).
    pub digits: u32,
    /// Seconds per code (30).
    pub period_secs: u32,
}

#[derive(Object)]
pub struct ConfirmTotpBody {
    /// A current code from the authenticator app.
    #[oai(validator(max_length = 16))]
    pub code: String,
    /// Your password.
    #[oai(validator(max_length = 1024))]
    pub password: String,
}

/// Two-factor sign-in is on; keep the recovery codes somewhere safe.
#[derive(Object)]
pub struct TotpEnabled {
    pub two_factor_enabled_at: DateTime<Utc>,
    /// Ten single-use codes for signing in without the app. Shown once.
    pub recovery_codes: Vec<String>,
    pub warning: String,
}

#[derive(Object)]
pub struct DisableTotpBody {
    /// Your password.
    #[oai(validator(max_length = 1024))]
    pub password: String,
    /// A current code from the authenticator app (or give `recovery_code`).
    #[oai(validator(max_length = 16))]
    pub code: Option<String>,
    /// One of your recovery codes, instead of `code`.
    #[oai(validator(max_length = 32))]
    pub recovery_code: Option<String>,
}

#[derive(ApiResponse)]
pub enum EnrolmentResponse {
    /// The enrolment waits for a first code (`confirmTotpEnrolment`).
    #[oai(status = 200)]
    Ok(Json<TotpEnrolment>),
}

#[derive(ApiResponse)]
pub enum EnabledResponse {
    /// Two-factor sign-in is on.
    #[oai(status = 200)]
    Ok(Json<TotpEnabled>),
}

#[derive(ApiResponse)]
pub enum UserResponse {
    #[oai(status = 200)]
    Ok(Json<UserDto>),
}

const RECOVERY_WARNING: &str =
    "Save these recovery codes now. Each signs you in once without the app; they will not be shown again.";

/// The second factor of a request: exactly one of a TOTP code and a recovery code.
pub fn factor_from(
    code: Option<String>,
    recovery_code: Option<String>,
) -> Result<SecondFactor, Error> {
    match (
        code.filter(|c| !c.trim().is_empty()),
        recovery_code.filter(|c| !c.trim().is_empty()),
    ) {
        (Some(code), None) => Ok(SecondFactor::Totp(code)),
        (None, Some(code)) => Ok(SecondFactor::RecoveryCode(code)),
        (Some(_), Some(_)) => Err(Error::invalid(
            "code_required",
            "give either code or recovery_code, not both",
        )),
        (None, None) => Err(Error::invalid(
            "code_required",
            "give the code from your authenticator app (code) or a recovery code (recovery_code)",
        )),
    }
}

/// Counts what became of the second factor of a login completed with `completeLogin` (a
/// spent recovery code is audited by the check itself).
pub fn noted(state: &AppState, note: FactorNote) {
    match note {
        FactorNote::ChallengeInvalid => state
            .metrics
            .second_factor(SecondFactorOutcome::ChallengeInvalid),
        FactorNote::Throttled => state.metrics.second_factor(SecondFactorOutcome::Throttled),
        FactorNote::Accepted { verified, .. } => accepted(state, verified),
        FactorNote::Refused(why) => count_refused(state, why),
    }
}

/// Counts a refused code.
fn count_refused(state: &AppState, why: CodeRefused) {
    state.metrics.second_factor(match why {
        CodeRefused::Invalid => SecondFactorOutcome::Failure,
        CodeRefused::Reused => SecondFactorOutcome::Reused,
    });
}

/// Counts a refused code and answers it (403: the caller is signed in).
pub fn refused(state: &AppState, why: CodeRefused) -> Error {
    count_refused(state, why);
    why.error(false)
}

/// Counts an accepted code (a spent recovery code was audited by the check itself).
pub fn accepted(state: &AppState, v: Verified) {
    state.metrics.second_factor(match v {
        Verified::Totp => SecondFactorOutcome::Success,
        Verified::RecoveryCode { .. } => SecondFactorOutcome::RecoveryCode,
    });
}

fn require_session(p: &Principal) -> Result<(), Error> {
    if p.is_session() {
        Ok(())
    } else {
        Err(Error::forbidden(
            "not_a_session",
            "two-factor sign-in is managed from a login session, not with a token",
        ))
    }
}

/// A refused method of a session that may only enrol answers what to do instead.
pub async fn enrolment_refusal(
    state: &AppState,
    credential: &str,
    refusal: &sigil_token::Refusal,
) -> Option<ApiError> {
    if refusal.kind() != sigil_token::RefusalKind::MethodNotInScope {
        return None;
    }
    // Only tenants that require a second factor have such sessions; the others are
    // answered without touching the verification caches (or their statistics).
    let tenant = state.tenants.get(refusal.tenant_id()?).await.ok()?;
    if !tenant.policy.require_two_factor {
        return None;
    }
    // A login session's scope is everything: only an enrolment session's ceiling makes a
    // method fall outside it.
    let p = state.verifier.principal_for(credential).await.ok()??;
    (p.is_session() && p.policy.require_two_factor).then(|| {
        Error::forbidden(
            "two_factor_enrolment_required",
            "your tenant requires two-factor sign-in: enrol an authenticator app first (beginTotpEnrolment, then confirmTotpEnrolment)",
        )
        .into()
    })
}

/// Every person of the tenant without a second factor (active or not), page by page.
async fn people_without(
    state: &AppState,
    tenant: TenantId,
    active: Option<bool>,
) -> Result<Vec<User>, Error> {
    let mut all = Vec::new();
    let mut offset = 0;
    loop {
        let page = PageRequest::new(Some(offset), Some(200))?;
        let filter = UserFilter {
            kind: Some(UserKind::Person),
            two_factor: Some(false),
            active,
            ..UserFilter::default()
        };
        let found = state.users.list(tenant, filter, page).await?;
        let n = found.items.len() as u64;
        all.extend(found.items);
        offset += n;
        if n == 0 || offset >= found.total {
            return Ok(all);
        }
    }
}

/// People who sign in without a second factor, for the hygiene report.
pub async fn people_without_two_factor(
    state: &AppState,
    p: &Principal,
) -> Result<Vec<UserDto>, ApiError> {
    if p.role.manages_all_tokens() {
        let people = people_without(state, p.tenant_id, Some(true)).await?;
        return Ok(people.iter().map(UserDto::from).collect());
    }
    let me = state.users.get(p.tenant_id, p.user_id).await?;
    Ok(
        (me.kind == UserKind::Person && me.two_factor_enabled_at.is_none())
            .then(|| UserDto::from(&me))
            .into_iter()
            .collect(),
    )
}

fn qr_svg(uri: &str) -> Result<String, Error> {
    let code = qrcode::QrCode::new(uri.as_bytes()).map_err(Error::internal)?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .dark_color(qrcode::render::svg::Color("#000000"))
        .light_color(qrcode::render::svg::Color("#ffffff"))
        .build())
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Auth")]
impl TwoFactorApi {
    /// Start enrolling an authenticator app (TOTP) for two-factor sign-in, from a login
    /// session. Answers the secret, its `otpauth://` URI and a QR code; nothing changes
    /// until `confirmTotpEnrolment` gets a code. Starting again replaces the secret.
    #[oai(
        path = "/users/me/two-factor/totp",
        method = "post",
        operation_id = "beginTotpEnrolment"
    )]
    async fn begin(&self, caller: TenantCaller) -> ApiResult<EnrolmentResponse> {
        let p = caller.0;
        let user = self.0.users.get(p.tenant_id, p.user_id).await?;
        TwoFactorService::require_person(&user)?;
        require_session(&p)?;
        let account = format!("{} ({})", user.username, p.tenant_slug);
        let enrolment = self.0.two_factor.begin(&user, &account).await?;
        let qr_code_svg = qr_svg(&enrolment.otpauth_uri)?;
        Ok(EnrolmentResponse::Ok(Json(TotpEnrolment {
            secret: enrolment.secret,
            otpauth_uri: enrolment.otpauth_uri,
            qr_code_svg,
            algorithm: "SHA1".to_owned(),
            digits: totp::DIGITS as u32,
            period_secs: totp::STEP_SECS as u32,
        })))
    }

    /// Turn two-factor sign-in on with a first code from the app and your password.
    /// Answers ten single-use recovery codes, shown once. From then on `login` answers a
    /// challenge that `completeLogin` completes with a code, and `confirmPassword` needs
    /// a code too.
    #[oai(
        path = "/users/me/two-factor/totp/confirm",
        method = "post",
        operation_id = "confirmTotpEnrolment"
    )]
    async fn confirm(
        &self,
        req: &Request,
        caller: TenantCaller,
        body: Json<ConfirmTotpBody>,
    ) -> ApiResult<EnabledResponse> {
        let p = caller.0;
        let body = body.0;
        let user = self.0.users.get(p.tenant_id, p.user_id).await?;
        TwoFactorService::require_person(&user)?;
        require_session(&p)?;
        let attempt =
            super::auth::checked_password(&self.0, req, &p, body.password, "the password is wrong")
                .await?;
        let actor = self.0.actor(req, Some(&p));
        let codes = match self.0.two_factor.confirm(&actor, &user, &body.code).await? {
            Ok(codes) => codes,
            Err(why) => {
                drop(attempt);
                return Err(refused(&self.0, why).into());
            }
        };
        attempt.succeeded();
        // A session that could only enrol becomes a full one.
        self.0.tokens.lift_session_ceiling(&p).await?;
        let user = self.0.users.get(p.tenant_id, p.user_id).await?;
        let enabled_at = user.two_factor_enabled_at.unwrap_or_else(Utc::now);
        Ok(EnabledResponse::Ok(Json(TotpEnabled {
            two_factor_enabled_at: enabled_at,
            recovery_codes: codes,
            warning: RECOVERY_WARNING.to_owned(),
        })))
    }

    /// Turn two-factor sign-in off, with your password and a code (or a recovery code).
    /// Refused while the tenant policy requires it.
    #[oai(
        path = "/users/me/two-factor/totp/disable",
        method = "post",
        operation_id = "disableTotp"
    )]
    async fn disable(
        &self,
        req: &Request,
        caller: TenantCaller,
        body: Json<DisableTotpBody>,
    ) -> ApiResult<UserResponse> {
        let p = caller.0;
        let body = body.0;
        let user = self.0.users.get(p.tenant_id, p.user_id).await?;
        TwoFactorService::require_person(&user)?;
        require_session(&p)?;
        if user.two_factor_enabled_at.is_none() {
            return Err(
                Error::conflict("two_factor_not_enabled", "two-factor sign-in is off").into(),
            );
        }
        if p.policy.require_two_factor {
            return Err(Error::conflict(
                "two_factor_required_by_policy",
                "your tenant requires two-factor sign-in; an admin can reset it (resetUserTwoFactor) if the app is lost",
            )
            .into());
        }
        let factor = factor_from(body.code, body.recovery_code)?;
        let attempt =
            super::auth::checked_password(&self.0, req, &p, body.password, "the password is wrong")
                .await?;
        let actor = self.0.actor(req, Some(&p));
        match self.0.two_factor.verify(&actor, &user, &factor).await? {
            Ok(v) => {
                attempt.succeeded();
                accepted(&self.0, v);
            }
            Err(why) => {
                drop(attempt);
                return Err(refused(&self.0, why).into());
            }
        }
        let user = self
            .0
            .two_factor
            .disable(&actor, p.tenant_id, p.user_id)
            .await?;
        Ok(UserResponse::Ok(Json(UserDto::from(&user))))
    }
}

/// The administrators' side of two-factor sign-in, under Users in the spec (and the
/// generated clients' users module).
pub struct TwoFactorAdminApi(pub Arc<AppState>);

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Users")]
impl TwoFactorAdminApi {
    /// Turn off a user's two-factor sign-in (admin), e.g. when their app is lost; they
    /// sign in with the password again (and enrol anew where the policy requires it).
    /// Needs your password confirmation, like token changes. Audited.
    #[oai(
        path = "/users/:user_id/two-factor/reset",
        method = "post",
        operation_id = "resetUserTwoFactor"
    )]
    async fn reset(
        &self,
        req: &Request,
        caller: TenantCaller,
        user_id: Path<Uuid>,
    ) -> ApiResult<UserResponse> {
        let p = caller.0;
        let user = self.0.users.get(p.tenant_id, UserId(user_id.0)).await?;
        // An unknown user (or one of another tenant) is not found before confirmation is asked.
        p.require_confirmation()?;
        let actor = self.0.actor(req, Some(&p));
        let user = self.0.two_factor.reset(&actor, &user).await?;
        Ok(UserResponse::Ok(Json(UserDto::from(&user))))
    }
}
