use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use sigil_core::page::PageRequest;
use sigil_core::TenantId;
use sigil_tenant::{NewTenant, Tenant, TenantPatch, TenantPolicy};
use uuid::Uuid;

use super::caller::{OperatorCaller, TenantCaller};
use super::limits::{rate_limits_from, rate_limits_to, RateLimitDto};
use super::ApiTags;
use crate::problem::ApiResult;
use crate::state::AppState;

pub struct TenantsApi(pub Arc<AppState>);

/// A tenant's rules for tokens and logins.
#[derive(Clone, Debug, Object)]
pub struct PolicyDto {
    /// Longest lifetime of a personal or application token, in days (null: no cap).
    #[oai(validator(minimum(value = "1"), maximum(value = "3650")))]
    pub max_token_lifetime_days: Option<u32>,
    /// Whether tokens without expiry may be minted.
    pub allow_non_expiring_tokens: bool,
    /// Login session lifetime in seconds (60-3600).
    #[oai(validator(minimum(value = "60"), maximum(value = "3600")))]
    pub session_lifetime_secs: u32,
    /// Whether credentials may travel in the query string or form body.
    pub allow_query_credentials: bool,
    /// IPs/CIDRs every token must come from (empty: anywhere).
    #[oai(validator(max_items = 100))]
    pub ip_allowlist: Vec<String>,
    /// Whether token changes from a login session need a recent password confirmation.
    pub require_password_confirmation: bool,
    #[oai(validator(minimum(value = "30"), maximum(value = "3600")))]
    pub password_confirmation_secs: u32,
    #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
    pub login_max_failures: u32,
    #[oai(validator(minimum(value = "1"), maximum(value = "86400")))]
    pub login_lockout_secs: u32,
    #[oai(validator(minimum(value = "1"), maximum(value = "10000")))]
    pub max_tokens_per_user: u32,
    /// How long a rotated-out signing key keeps verifying, in seconds.
    #[oai(validator(maximum(value = "7776000")))]
    pub key_overlap_secs: u32,
    /// Reuse detection: a secret replaced by the token's own rotation
    /// (`rotateCurrentToken`), presented after its grace period, revokes the token
    /// (`token_reuse_detected`). Default true.
    #[oai(default = "default_true")]
    pub detect_reuse_after_rotation: bool,
    /// Reuse detection for secrets replaced by `regenerateToken` too. Default false.
    #[oai(default)]
    pub detect_reuse_after_regeneration: bool,
    /// Every person must sign in with a second factor (TOTP); one without it can only
    /// enrol until they do. Tokens and `api` users are not affected. Turning it on needs
    /// the acting admin to have a second factor. Default false.
    #[oai(default)]
    pub require_two_factor: bool,
    /// Rate limits of every token that has none of its own. Default none.
    #[oai(default, validator(max_items = 8))]
    pub default_token_rate_limits: Vec<RateLimitDto>,
    /// Rate limits of every user who has none of their own, shared by all of the
    /// user's tokens. Default none.
    #[oai(default, validator(max_items = 8))]
    pub default_owner_rate_limits: Vec<RateLimitDto>,
}

fn default_true() -> bool {
    true
}

impl From<&TenantPolicy> for PolicyDto {
    fn from(p: &TenantPolicy) -> Self {
        Self {
            max_token_lifetime_days: p.max_token_lifetime_days,
            allow_non_expiring_tokens: p.allow_non_expiring_tokens,
            session_lifetime_secs: p.session_lifetime_secs,
            allow_query_credentials: p.allow_query_credentials,
            ip_allowlist: p.ip_allowlist.clone(),
            require_password_confirmation: p.require_password_confirmation,
            password_confirmation_secs: p.password_confirmation_secs,
            login_max_failures: p.login_max_failures,
            login_lockout_secs: p.login_lockout_secs,
            max_tokens_per_user: p.max_tokens_per_user,
            key_overlap_secs: p.key_overlap_secs,
            detect_reuse_after_rotation: p.detect_reuse_after_rotation,
            detect_reuse_after_regeneration: p.detect_reuse_after_regeneration,
            require_two_factor: p.require_two_factor,
            default_token_rate_limits: rate_limits_to(&p.default_token_rate_limits),
            default_owner_rate_limits: rate_limits_to(&p.default_owner_rate_limits),
        }
    }
}

impl From<PolicyDto> for TenantPolicy {
    fn from(p: PolicyDto) -> Self {
        Self {
            max_token_lifetime_days: p.max_token_lifetime_days,
            allow_non_expiring_tokens: p.allow_non_expiring_tokens,
            session_lifetime_secs: p.session_lifetime_secs,
            allow_query_credentials: p.allow_query_credentials,
            ip_allowlist: p.ip_allowlist,
            require_password_confirmation: p.require_password_confirmation,
            password_confirmation_secs: p.password_confirmation_secs,
            login_max_failures: p.login_max_failures,
            login_lockout_secs: p.login_lockout_secs,
            max_tokens_per_user: p.max_tokens_per_user,
            key_overlap_secs: p.key_overlap_secs,
            detect_reuse_after_rotation: p.detect_reuse_after_rotation,
            detect_reuse_after_regeneration: p.detect_reuse_after_regeneration,
            require_two_factor: p.require_two_factor,
            default_token_rate_limits: rate_limits_from(p.default_token_rate_limits),
            default_owner_rate_limits: rate_limits_from(p.default_owner_rate_limits),
        }
    }
}

#[derive(Clone, Debug, Object)]
pub struct TenantDto {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub enabled: bool,
    pub policy: PolicyDto,
    /// Where this tenant's public signing keys are published.
    pub jwks_path: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Tenant> for TenantDto {
    fn from(t: &Tenant) -> Self {
        Self {
            id: t.id.0,
            slug: t.slug.clone(),
            name: t.name.clone(),
            enabled: t.enabled,
            policy: PolicyDto::from(&t.policy),
            jwks_path: format!("/api/v1/tenants/{}/jwks.json", t.slug),
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

#[derive(Object)]
pub struct CreateTenantBody {
    /// Lowercase identifier used at login (2-63 of a-z, 0-9, '-').
    #[oai(validator(min_length = 2, max_length = 63))]
    pub slug: String,
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: Option<String>,
    /// Username of the first admin (default `admin`).
    #[oai(validator(min_length = 1, max_length = 64))]
    pub admin_username: Option<String>,
    /// The first admin's password; generated (and shown once) when omitted.
    #[oai(validator(min_length = 1, max_length = 256))]
    pub admin_password: Option<String>,
}

/// A new tenant with its first admin's one-time credentials.
#[derive(Object)]
pub struct CreatedTenant {
    pub tenant: TenantDto,
    pub admin_username: String,
    /// Shown once; store it safely.
    pub admin_password: String,
}

#[derive(ApiResponse)]
pub enum CreateTenantResponse {
    #[oai(status = 201)]
    Created(Json<CreatedTenant>),
}

super::dto::list_envelope!(
    /// One page of tenants.
    TenantList,
    TenantDto
);

#[derive(ApiResponse)]
pub enum TenantListResponse {
    #[oai(status = 200)]
    Ok(Json<TenantList>),
}

#[derive(ApiResponse)]
pub enum TenantResponse {
    #[oai(status = 200)]
    Ok(Json<TenantDto>),
}

#[derive(Object)]
pub struct UpdateTenantBody {
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: Option<String>,
    pub enabled: Option<bool>,
}

#[derive(Object)]
pub struct SigningKeyDto {
    pub kid: String,
    /// `active` (signs), `retiring` (verifies only) or `retired`.
    pub state: String,
    pub algorithm: String,
    /// Base64url Ed25519 public key (JWK `x`).
    pub public_key: String,
    pub created_at: DateTime<Utc>,
    /// When a retiring key stops verifying.
    pub retire_after: Option<DateTime<Utc>>,
}

impl From<sigil_tenant::SigningKeyInfo> for SigningKeyDto {
    fn from(k: sigil_tenant::SigningKeyInfo) -> Self {
        Self {
            kid: k.kid,
            state: k.state.as_str().to_owned(),
            algorithm: k.algorithm.to_owned(),
            public_key: k.public_key,
            created_at: k.created_at,
            retire_after: k.retire_after,
        }
    }
}

super::dto::list_envelope!(
    /// One page of signing keys.
    SigningKeyList,
    SigningKeyDto
);

#[derive(ApiResponse)]
pub enum SigningKeysResponse {
    #[oai(status = 200)]
    Ok(Json<SigningKeyList>),
}

#[derive(Object)]
pub struct RotateKeyBody {
    /// How long the previous key keeps verifying (default: the tenant policy's overlap).
    #[oai(validator(maximum(value = "7776000")))]
    pub overlap_secs: Option<u32>,
}

#[derive(ApiResponse)]
pub enum RotateKeyResponse {
    /// The new active key.
    #[oai(status = 201)]
    Created(Json<SigningKeyDto>),
}

/// RFC 7517 JSON Web Key (OKP / Ed25519).
#[derive(Object)]
pub struct JwkDto {
    pub kty: String,
    pub crv: String,
    pub x: String,
    pub kid: String,
    #[oai(rename = "use")]
    pub use_: String,
    pub alg: String,
}

#[derive(Object)]
pub struct JwksDto {
    pub keys: Vec<JwkDto>,
}

#[derive(ApiResponse)]
pub enum JwksResponse {
    #[oai(status = 200)]
    Ok(Json<JwksDto>, #[oai(header = "Cache-Control")] String),
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Tenants")]
impl TenantsApi {
    /// Onboard a tenant with its first admin (operator).
    #[oai(path = "/tenants", method = "post", operation_id = "createTenant")]
    async fn create_tenant(
        &self,
        req: &Request,
        _caller: OperatorCaller,
        body: Json<CreateTenantBody>,
    ) -> ApiResult<CreateTenantResponse> {
        let body = body.0;
        let s = &self.0;
        let actor = s.actor(req, None);
        let onboarded = sigil_user::onboard::onboard_tenant_by(
            &actor,
            &s.db,
            &s.tenants,
            &s.keys,
            &s.users,
            NewTenant {
                slug: body.slug,
                name: body.name,
                policy: None,
            },
            body.admin_username,
            body.admin_password,
        )
        .await?;
        Ok(CreateTenantResponse::Created(Json(CreatedTenant {
            tenant: TenantDto::from(&onboarded.tenant),
            admin_username: onboarded.admin.username,
            admin_password: onboarded.admin_password,
        })))
    }

    /// List tenants (operator).
    #[oai(path = "/tenants", method = "get", operation_id = "listTenants")]
    async fn list_tenants(
        &self,
        _caller: OperatorCaller,
        /// Text search over slug and name.
        q: Query<Option<String>>,
        /// Matching items to skip.
        #[oai(validator(minimum(value = "0"), maximum(value = "1000000")))]
        offset: Query<Option<u64>>,
        /// Items per page (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u64>>,
    ) -> ApiResult<TenantListResponse> {
        let page = PageRequest::new(offset.0, limit.0)?;
        let result = self.0.tenants.list(q.0.as_deref(), page).await?;
        Ok(TenantListResponse::Ok(Json(TenantList {
            items: result.items.iter().map(TenantDto::from).collect(),
            total: result.total,
            offset: page.offset,
            limit: page.limit,
        })))
    }

    /// Get a tenant (operator).
    #[oai(
        path = "/tenants/:tenant_id",
        method = "get",
        operation_id = "getTenant"
    )]
    async fn get_tenant(
        &self,
        _caller: OperatorCaller,
        tenant_id: Path<Uuid>,
    ) -> ApiResult<TenantResponse> {
        let tenant = self.0.tenants.get(TenantId(tenant_id.0)).await?;
        Ok(TenantResponse::Ok(Json(TenantDto::from(&tenant))))
    }

    /// Rename, enable or disable a tenant (operator).
    #[oai(
        path = "/tenants/:tenant_id",
        method = "patch",
        operation_id = "updateTenant"
    )]
    async fn update_tenant(
        &self,
        req: &Request,
        _caller: OperatorCaller,
        tenant_id: Path<Uuid>,
        body: Json<UpdateTenantBody>,
    ) -> ApiResult<TenantResponse> {
        let patch = TenantPatch {
            name: body.0.name,
            enabled: body.0.enabled,
        };
        let actor = self.0.actor(req, None);
        let id = TenantId(tenant_id.0);
        let changed = self.0.tenants.update(&actor, id, patch).await?;
        Ok(TenantResponse::Ok(Json(TenantDto::from(&changed.after))))
    }

    /// Disable a tenant: its logins and tokens stop working at once (operator).
    #[oai(
        path = "/tenants/:tenant_id/disable",
        method = "post",
        operation_id = "disableTenant"
    )]
    async fn disable_tenant(
        &self,
        req: &Request,
        _caller: OperatorCaller,
        tenant_id: Path<Uuid>,
    ) -> ApiResult<TenantResponse> {
        let actor = self.0.actor(req, None);
        let id = TenantId(tenant_id.0);
        let changed = self.0.tenants.disable(&actor, id).await?;
        Ok(TenantResponse::Ok(Json(TenantDto::from(&changed.after))))
    }

    /// Your tenant and its policy.
    #[oai(
        path = "/tenant",
        method = "get",
        operation_id = "getMyTenant",
        tag = "ApiTags::Tenant"
    )]
    async fn my_tenant(&self, caller: TenantCaller) -> ApiResult<TenantResponse> {
        let p = caller.0;

        let tenant = self.0.tenants.get(p.tenant_id).await?;
        Ok(TenantResponse::Ok(Json(TenantDto::from(&tenant))))
    }

    /// Replace your tenant's policy (admin).
    #[oai(
        path = "/tenant/policy",
        method = "put",
        operation_id = "updateTenantPolicy",
        tag = "ApiTags::Tenant"
    )]
    async fn update_policy(
        &self,
        req: &Request,
        caller: TenantCaller,
        body: Json<PolicyDto>,
    ) -> ApiResult<TenantResponse> {
        let p = caller.0;
        let actor = self.0.actor(req, Some(&p));
        let tenant = self
            .0
            .tenants
            .update_policy_with(&actor, p.tenant_id, body.0.into(), &self.0.policy_effects)
            .await?;
        Ok(TenantResponse::Ok(Json(TenantDto::from(&tenant))))
    }

    /// Your tenant's signing keys (admin, token manager).
    #[oai(
        path = "/tenant/signing-keys",
        method = "get",
        operation_id = "listSigningKeys",
        tag = "ApiTags::Tenant"
    )]
    async fn list_keys(
        &self,
        caller: TenantCaller,
        /// Matching items to skip.
        #[oai(validator(minimum(value = "0"), maximum(value = "1000000")))]
        offset: Query<Option<u64>>,
        /// Items per page (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u64>>,
    ) -> ApiResult<SigningKeysResponse> {
        let p = caller.0;
        let page = PageRequest::new(offset.0, limit.0)?;
        let keys = self.0.signing_keys.list(p.tenant_id).await?;
        Ok(SigningKeysResponse::Ok(Json(SigningKeyList::slice(
            keys.into_iter().map(SigningKeyDto::from).collect(),
            page,
        ))))
    }

    /// Rotate the signing key: a new key signs; the old one verifies until the overlap ends.
    #[oai(
        path = "/tenant/signing-keys/rotate",
        method = "post",
        operation_id = "rotateSigningKey",
        tag = "ApiTags::Tenant"
    )]
    async fn rotate_key(
        &self,
        req: &Request,
        caller: TenantCaller,
        body: Json<RotateKeyBody>,
    ) -> ApiResult<RotateKeyResponse> {
        let p = caller.0;
        let overlap = body.0.overlap_secs.unwrap_or(p.policy.key_overlap_secs);
        let overlap = std::time::Duration::from_secs(u64::from(overlap));
        let actor = self.0.actor(req, Some(&p));
        let key = self
            .0
            .signing_keys
            .rotate(&actor, p.tenant_id, overlap)
            .await?;
        Ok(RotateKeyResponse::Created(Json(SigningKeyDto::from(key))))
    }

    /// A tenant's public signing keys as a JWKS (public; for offline verification).
    #[oai(
        path = "/tenants/:tenant/jwks.json",
        method = "get",
        operation_id = "getJwks",
        tag = "ApiTags::Tenant"
    )]
    async fn jwks(
        &self,
        /** Tenant slug. */
        tenant: Path<String>,
    ) -> ApiResult<JwksResponse> {
        let jwks = self.0.signing_keys.jwks_of(&tenant.0).await?;
        let keys = jwks
            .keys
            .into_iter()
            .map(|k| JwkDto {
                kty: k.kty.into(),
                crv: k.crv.into(),
                x: k.x,
                kid: k.kid,
                use_: k.use_.into(),
                alg: k.alg.into(),
            })
            .collect();
        Ok(JwksResponse::Ok(
            Json(JwksDto { keys }),
            "public, max-age=300".into(),
        ))
    }
}
