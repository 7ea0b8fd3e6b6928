use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use sigil_core::page::PageRequest;
use sigil_core::{Error, TokenId, UserId};
use sigil_token::service::TokenSort;
use sigil_token::{Expiry, NewToken, Principal, Scope, Token, TokenFilter, TokenKind, TokenPatch};
use uuid::Uuid;

use super::caller::TenantCaller;
use super::dto::Removed;
use super::limits::{rate_limits_from, rate_limits_to, CreditsInput, CreditsView, RateLimitDto};
use super::optional_body::OptionalJson;
use super::ApiTags;
use crate::problem::ApiResult;
use crate::state::AppState;

pub struct TokensApi(pub Arc<AppState>);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum TokenKindDto {
    Personal,
    Application,
}

impl From<TokenKindDto> for TokenKind {
    fn from(k: TokenKindDto) -> Self {
        match k {
            TokenKindDto::Personal => TokenKind::Personal,
            TokenKindDto::Application => TokenKind::Application,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum TokenSortDto {
    CreatedDesc,
    CreatedAsc,
    Name,
    ExpiresAt,
    LastUsedDesc,
}

/// What a token may call.
#[derive(Clone, Debug, Object)]
pub struct ScopeDto {
    /// A predefined (`read-only`, `read-change`, `platform.extended-access`, ...) or custom
    /// scope set id; null for a custom method list.
    pub set: Option<String>,
    /// A custom pick of method ids or globs; null when a set is used.
    pub methods: Option<Vec<String>>,
    /// Human name of the scope.
    pub name: String,
}

#[derive(Clone, Debug, Object)]
pub struct TokenDto {
    pub id: Uuid,
    pub kind: String,
    pub name: String,
    pub description: String,
    pub owner_id: Uuid,
    pub scope: ScopeDto,
    pub expires_at: Option<DateTime<Utc>>,
    pub expired: bool,
    /// IPs/CIDRs the token may be used from (empty: anywhere).
    pub ip_filter: Vec<String>,
    pub enabled: bool,
    /// Bumped by each regeneration.
    pub generation: i32,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<Uuid>,
    pub updated_at: DateTime<Utc>,
    /// Successful authentications (flushed every few seconds).
    pub use_count: i64,
    pub last_used_at: Option<DateTime<Utc>>,
    pub last_used_ip: Option<String>,
    /// When the token was revoked (it is refused `token_revoked`, `token_leaked` or
    /// `token_reuse_detected`).
    pub revoked_at: Option<DateTime<Utc>>,
    /// When its secret was reported exposed (reportLeakedTokens, secret scanning): it is
    /// revoked and refused `token_leaked`; the audit log says where it was found.
    pub leaked_at: Option<DateTime<Utc>>,
    /// The method ids this token can never exceed, whatever its scope says: set when
    /// someone other than the owner (or a credential narrower than the owner's login) made
    /// or re-scoped it. Null: only the owner's current rights bound it.
    pub ceiling: Option<Vec<String>>,
    /// The last 5 distinct client addresses, most recent first (getToken only; written
    /// with the use counts, so a few seconds behind).
    #[oai(skip_serializing_if_is_none)]
    pub recent_addresses: Option<Vec<RecentAddressDto>>,
    /// The token's own rate limits (empty: the tenant's defaults for tokens apply). Its
    /// owner's limits apply too.
    pub rate_limits: Vec<RateLimitDto>,
    /// Credits left and their refill; null when the token has none (unlimited).
    pub credits: Option<CreditsView>,
}

/// A client address a token was used from.
#[derive(Clone, Debug, Object)]
pub struct RecentAddressDto {
    pub ip: String,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

/// A token and its secret. The secret is shown this once and never again.
#[derive(Object)]
pub struct MintedTokenDto {
    pub token: TokenDto,
    /// The credential (a JWT). Store it now: it cannot be shown again.
    pub secret: String,
    pub warning: String,
}

#[derive(Object)]
pub struct CreateTokenBody {
    /// `personal` (default) or `application` (owned by an api user).
    pub kind: Option<TokenKindDto>,
    /// Owner (default: you). Admins and token managers may name another user.
    pub owner_id: Option<Uuid>,
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: String,
    #[oai(validator(max_length = 2000))]
    pub description: Option<String>,
    /// A scope set id; or give `methods`; or `read`/`change`.
    #[oai(validator(min_length = 1, max_length = 200))]
    pub scope_set: Option<String>,
    /// A custom pick of method ids or globs (`platform.environment.*`).
    #[oai(validator(max_items = 1000))]
    pub methods: Option<Vec<String>>,
    /// Shorthand: `read: true` alone means the `read-only` set.
    pub read: Option<bool>,
    /// Shorthand: `change: true` means the `read-change` set.
    pub change: Option<bool>,
    pub expires_at: Option<DateTime<Utc>>,
    #[oai(validator(max_items = 100))]
    pub ip_filter: Option<Vec<String>>,
    /// Default true.
    pub enabled: Option<bool>,
    /// Named rate limits of this token (default none: the tenant's defaults apply).
    #[oai(validator(max_items = 8))]
    pub rate_limits: Option<Vec<RateLimitDto>>,
    /// Uses the token may make, with an optional refill (default none: unlimited).
    pub credits: Option<CreditsInput>,
}

#[derive(Object)]
pub struct UpdateTokenBody {
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: Option<String>,
    #[oai(validator(max_length = 2000))]
    pub description: Option<String>,
    #[oai(validator(min_length = 1, max_length = 200))]
    pub scope_set: Option<String>,
    #[oai(validator(max_items = 1000))]
    pub methods: Option<Vec<String>>,
    pub read: Option<bool>,
    pub change: Option<bool>,
    /// A new expiry; a past or current time expires the token now; null removes the expiry
    /// (when the policy allows).
    pub expires_at: MaybeUndefined<DateTime<Utc>>,
    #[oai(validator(max_items = 100))]
    pub ip_filter: Option<Vec<String>>,
    pub enabled: Option<bool>,
    /// New rate limits of this token (an empty list removes them).
    #[oai(validator(max_items = 8))]
    pub rate_limits: Option<Vec<RateLimitDto>>,
    /// New credits, replacing the balance left; null removes them (unlimited).
    pub credits: MaybeUndefined<CreditsInput>,
}

/// Options of a regeneration.
#[derive(Object)]
pub struct RegenerateTokenBody {
    /// Seconds the old secret keeps working (default 0, at most 86400).
    #[oai(validator(maximum(value = "86400")))]
    pub grace_period_secs: Option<u32>,
    /// A new expiry for the token (required when it has expired); null: never expires
    /// (when the tenant policy allows). Absent: the expiry stays.
    pub expires_at: MaybeUndefined<DateTime<Utc>>,
}

/// Options of a self-rotation.
#[derive(Object)]
pub struct RotateCurrentTokenBody {
    /// Seconds the old secret keeps working (default 60, at most 86400). Presented after
    /// that, it revokes the token (reuse detection, unless the tenant policy turns it off).
    #[oai(validator(maximum(value = "86400")))]
    pub grace_period_secs: Option<u32>,
}

/// How long a self-rotated secret keeps working by default: requests already under way
/// with it finish instead of being taken for a stolen copy.
const ROTATION_GRACE_SECS: u32 = 60;

super::dto::list_envelope!(
    /// One page of tokens.
    TokenList,
    TokenDto
);

#[derive(Object)]
pub struct DeleteTokensBody {
    #[oai(validator(min_items = 1, max_items = 500))]
    pub ids: Vec<Uuid>,
}

#[derive(Object)]
pub struct DeletedTokens {
    pub removed: Vec<Removed>,
    pub count: u64,
}

#[derive(Object)]
pub struct TokenHygiene {
    /// Tokens that expire within `expiring_within_days`.
    pub expiring: Vec<TokenDto>,
    /// Tokens not used for `unused_for_days` (or never used and older than that).
    pub unused: Vec<TokenDto>,
    /// Active people who sign in without a second factor (all of the tenant's for
    /// admins and token managers, yourself for a member).
    pub without_two_factor: Vec<super::dto::UserDto>,
}

#[derive(ApiResponse)]
pub enum MintedResponse {
    #[oai(status = 201)]
    Created(Json<MintedTokenDto>),
}

#[derive(ApiResponse)]
pub enum RegeneratedResponse {
    #[oai(status = 200)]
    Ok(Json<MintedTokenDto>),
}

#[derive(ApiResponse)]
pub enum TokenResponse {
    #[oai(status = 200)]
    Ok(Json<TokenDto>),
}

#[derive(ApiResponse)]
pub enum TokenListResponse {
    #[oai(status = 200)]
    Ok(Json<TokenList>),
}

#[derive(ApiResponse)]
pub enum DeletedResponse {
    #[oai(status = 204)]
    Deleted,
}

#[derive(ApiResponse)]
pub enum BulkDeletedResponse {
    #[oai(status = 200)]
    Ok(Json<DeletedTokens>),
}

#[derive(ApiResponse)]
pub enum HygieneResponse {
    #[oai(status = 200)]
    Ok(Json<TokenHygiene>),
}

const WARNING: &str = "Copy this token now. It will not be shown again.";

fn scope_from(
    set: Option<String>,
    methods: Option<Vec<String>>,
    read: Option<bool>,
    change: Option<bool>,
) -> Result<Option<Scope>, Error> {
    match (set, methods) {
        (Some(_), Some(_)) => Err(Error::invalid_field(
            "ambiguous_scope",
            "scope_set",
            "give either scope_set or methods, not both",
        )),
        (Some(s), None) => Ok(Some(Scope::Set(s))),
        (None, Some(m)) => Ok(Some(Scope::Methods(m))),
        (None, None) => Ok(match (read, change) {
            (_, Some(true)) => Some(Scope::Set(sigil_scope_registry::READ_CHANGE_SET.to_owned())),
            (Some(true), _) => Some(Scope::Set(sigil_scope_registry::READ_ONLY_SET.to_owned())),
            _ => None,
        }),
    }
}

impl TokensApi {
    /// Names of custom sets of the tenant, to label scopes in answers.
    async fn set_names(&self, p: &Principal) -> HashMap<String, String> {
        let snapshot = self.0.registry.load();
        let mut names: HashMap<String, String> = snapshot
            .predefined_sets(Some(p.tenant_id.0))
            .map(|s| (s.id.clone(), s.name.clone()))
            .collect();
        if let Ok(custom) = self.0.sets.list(p.tenant_id, None).await {
            names.extend(custom.into_iter().map(|c| (c.slug, c.name)));
        }
        names
    }

    /// The token's credits as they are now: the balance this replica holds when it holds
    /// one (unwritten spends and a due refill included), else the stored one.
    fn credits_view(&self, t: &Token) -> Option<CreditsView> {
        let stored = t.credits.as_ref()?;
        let now = Utc::now();
        let live = self.0.limiter.credits().peek(t.id, stored.version, now);
        let (remaining, next) = match live {
            Some(status) => (status.remaining, status.next_refill),
            None => (stored.effective(now).0, stored.next_refill(now)),
        };
        Some(CreditsView::new(remaining, stored.refill.as_ref(), next))
    }

    fn dto(&self, t: &Token, names: &HashMap<String, String>) -> TokenDto {
        let scope = match &t.scope {
            Scope::Set(s) => ScopeDto {
                set: Some(s.clone()),
                methods: None,
                name: names.get(s).cloned().unwrap_or_else(|| s.clone()),
            },
            Scope::Methods(m) => ScopeDto {
                set: None,
                methods: Some(m.clone()),
                name: format!("Custom ({} methods)", m.len()),
            },
            Scope::All => ScopeDto {
                set: None,
                methods: None,
                name: "Everything the user may do".into(),
            },
        };
        TokenDto {
            id: t.id.0,
            kind: t.kind.as_str().to_owned(),
            name: t.name.clone(),
            description: t.description.clone(),
            owner_id: t.owner_id.0,
            scope,
            expires_at: t.expires_at,
            expired: t.is_expired(Utc::now()),
            ip_filter: t.ip_filter.clone(),
            enabled: t.enabled,
            generation: t.generation,
            created_at: t.created_at,
            created_by: t.created_by.map(|u| u.0),
            updated_at: t.updated_at,
            use_count: t.use_count,
            last_used_at: t.last_used_at,
            last_used_ip: t.last_used_ip.clone(),
            revoked_at: t.revoked_at,
            leaked_at: t.leaked_at,
            ceiling: t.ceiling.clone(),
            recent_addresses: None,
            rate_limits: rate_limits_to(&t.rate_limits),
            credits: self.credits_view(t),
        }
    }

    /// The display name of one token's scope set (a predefined set, else one read of
    /// the tenant's custom set), for answers about a single token.
    async fn set_name_of(&self, p: &Principal, t: &Token) -> HashMap<String, String> {
        let Scope::Set(id) = &t.scope else {
            return HashMap::new();
        };
        let name = match self
            .0
            .registry
            .load()
            .predefined_set(Some(p.tenant_id.0), id)
        {
            Some(set) => Some(set.name.clone()),
            None => self
                .0
                .sets
                .find(p.tenant_id, id)
                .await
                .ok()
                .flatten()
                .map(|c| c.name),
        };
        name.map(|n| HashMap::from([(id.clone(), n)]))
            .unwrap_or_default()
    }

    async fn minted(&self, p: &Principal, m: &sigil_token::Minted) -> MintedTokenDto {
        let names = self.set_name_of(p, &m.token).await;
        MintedTokenDto {
            token: self.dto(&m.token, &names),
            secret: m.secret.clone(),
            warning: WARNING.into(),
        }
    }
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Tokens")]
impl TokensApi {
    /// Mint a personal or application token; the secret is in this answer only.
    ///
    /// Give the scope as exactly one of `scope_set`, `methods`, `read: true` or
    /// `change: true` (`scope_required`, `ambiguous_scope`). With a login session, call
    /// `confirmPassword` first when the tenant policy asks for it (default: yes).
    #[oai(path = "/tokens", method = "post", operation_id = "createToken")]
    async fn create_token(
        &self,
        req: &Request,
        caller: TenantCaller,
        body: Json<CreateTokenBody>,
    ) -> ApiResult<MintedResponse> {
        let p = caller.0;
        p.require_confirmation()?;
        let b = body.0;
        let scope = scope_from(b.scope_set, b.methods, b.read, b.change)?.ok_or_else(|| {
            Error::invalid_field(
                "scope_required",
                "scope_set",
                "give scope_set, methods, or read/change",
            )
        })?;
        let by = self.0.actor(req, Some(&p));
        let minted = self
            .0
            .tokens
            .create(
                &p,
                &by,
                NewToken {
                    kind: b.kind.unwrap_or(TokenKindDto::Personal).into(),
                    owner: b.owner_id.map(UserId),
                    name: b.name,
                    description: b.description.unwrap_or_default(),
                    scope,
                    expires_at: b.expires_at,
                    ip_filter: b.ip_filter.unwrap_or_default(),
                    enabled: b.enabled.unwrap_or(true),
                    rate_limits: b.rate_limits.map(rate_limits_from).unwrap_or_default(),
                    credits: b.credits.map(Into::into),
                },
            )
            .await?;
        Ok(MintedResponse::Created(Json(
            self.minted(&p, &minted).await,
        )))
    }

    /// List tokens: your own, or all of the tenant for admins and token managers.
    #[oai(path = "/tokens", method = "get", operation_id = "listTokens")]
    #[allow(clippy::too_many_arguments)]
    async fn list_tokens(
        &self,
        caller: TenantCaller,
        owner_id: Query<Option<Uuid>>,
        kind: Query<Option<TokenKindDto>>,
        enabled: Query<Option<bool>>,
        expired: Query<Option<bool>>,
        scope_set: Query<Option<String>>,
        /// Text search over name and description.
        q: Query<Option<String>>,
        sort: Query<Option<TokenSortDto>>,
        /// Matching items to skip.
        #[oai(validator(minimum(value = "0"), maximum(value = "1000000")))]
        offset: Query<Option<u64>>,
        /// Items per page (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u64>>,
    ) -> ApiResult<TokenListResponse> {
        let p = caller.0;
        let page = PageRequest::new(offset.0, limit.0)?;
        let sort = match sort.0 {
            None | Some(TokenSortDto::CreatedDesc) => TokenSort::CreatedDesc,
            Some(TokenSortDto::CreatedAsc) => TokenSort::CreatedAsc,
            Some(TokenSortDto::Name) => TokenSort::Name,
            Some(TokenSortDto::ExpiresAt) => TokenSort::ExpiresAt,
            Some(TokenSortDto::LastUsedDesc) => TokenSort::LastUsedDesc,
        };
        let filter = TokenFilter {
            owner: owner_id.0.map(UserId),
            kind: kind.0.map(Into::into),
            enabled: enabled.0,
            expired: expired.0,
            scope_set: scope_set.0,
            q: q.0,
            sort,
            ..TokenFilter::default()
        };
        let result = self.0.tokens.list(&p, filter, page).await?;
        let names = self.set_names(&p).await;
        Ok(TokenListResponse::Ok(Json(TokenList {
            items: result.items.iter().map(|t| self.dto(t, &names)).collect(),
            total: result.total,
            offset: page.offset,
            limit: page.limit,
        })))
    }

    /// Tokens needing attention: expiring soon, or unused for long.
    #[oai(
        path = "/tokens/hygiene",
        method = "get",
        operation_id = "getTokenHygiene"
    )]
    async fn hygiene(
        &self,
        caller: TenantCaller,
        #[oai(validator(minimum(value = "1"), maximum(value = "365")))] expiring_within_days: Query<
            Option<u32>,
        >,
        #[oai(validator(minimum(value = "1"), maximum(value = "3650")))] unused_for_days: Query<
            Option<u32>,
        >,
    ) -> ApiResult<HygieneResponse> {
        let p = caller.0;
        let now = Utc::now();
        let page = PageRequest::new(Some(0), Some(200))?;
        let expiring = TokenFilter {
            expiring_before: Some(
                now + Duration::days(i64::from(expiring_within_days.0.unwrap_or(7))),
            ),
            sort: TokenSort::ExpiresAt,
            ..TokenFilter::default()
        };
        let unused = TokenFilter {
            unused_since: Some(now - Duration::days(i64::from(unused_for_days.0.unwrap_or(90)))),
            expired: Some(false),
            ..TokenFilter::default()
        };
        let expiring = self.0.tokens.list(&p, expiring, page).await?;
        let unused = self.0.tokens.list(&p, unused, page).await?;
        let names = self.set_names(&p).await;
        Ok(HygieneResponse::Ok(Json(TokenHygiene {
            expiring: expiring.items.iter().map(|t| self.dto(t, &names)).collect(),
            unused: unused.items.iter().map(|t| self.dto(t, &names)).collect(),
            without_two_factor: super::two_factor::people_without_two_factor(&self.0, &p).await?,
        })))
    }

    /// Get a token's details (never its secret).
    #[oai(path = "/tokens/:token_id", method = "get", operation_id = "getToken")]
    async fn get_token(
        &self,
        caller: TenantCaller,
        token_id: Path<Uuid>,
    ) -> ApiResult<TokenResponse> {
        let p = caller.0;
        let token = self.0.tokens.get(&p, TokenId(token_id.0)).await?;
        let names = self.set_name_of(&p, &token).await;
        let mut dto = self.dto(&token, &names);
        let recent = self.0.tokens.recent_addresses(&p, token.id).await?;
        dto.recent_addresses = Some(
            recent
                .into_iter()
                .map(|a| RecentAddressDto {
                    ip: a.ip,
                    first_seen: a.first_seen,
                    last_seen: a.last_seen,
                })
                .collect(),
        );
        Ok(TokenResponse::Ok(Json(dto)))
    }

    /// Change a token's name, description, scope, expiry, IP filter or enabled flag.
    #[oai(
        path = "/tokens/:token_id",
        method = "patch",
        operation_id = "updateToken"
    )]
    async fn update_token(
        &self,
        req: &Request,
        caller: TenantCaller,
        token_id: Path<Uuid>,
        body: Json<UpdateTokenBody>,
    ) -> ApiResult<TokenResponse> {
        let p = caller.0;
        p.require_confirmation()?;
        let b = body.0;
        let id = TokenId(token_id.0);
        let names = self.set_names(&p).await;
        let patch = TokenPatch {
            name: b.name,
            description: b.description,
            scope: scope_from(b.scope_set, b.methods, b.read, b.change)?,
            expires_at: match b.expires_at {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(t) => Some(Some(t)),
            },
            ip_filter: b.ip_filter,
            enabled: b.enabled,
            rate_limits: b.rate_limits.map(rate_limits_from),
            credits: match b.credits {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(c) => Some(Some(c.into())),
            },
        };
        let by = self.0.actor(req, Some(&p));
        let token = self.0.tokens.update(&p, &by, id, patch).await?;
        Ok(TokenResponse::Ok(Json(self.dto(&token, &names))))
    }

    /// New secret for the token; the old one stops working at once (or after the grace
    /// period). An expired token can be regenerated with a new `expires_at`.
    #[oai(
        path = "/tokens/:token_id/regenerate",
        method = "post",
        operation_id = "regenerateToken"
    )]
    async fn regenerate_token(
        &self,
        req: &Request,
        caller: TenantCaller,
        token_id: Path<Uuid>,
        /// Seconds the old secret keeps working (default 0, at most 86400); the body's
        /// `grace_period_secs` says the same.
        #[oai(validator(maximum(value = "86400")))]
        grace_period_secs: Query<Option<u32>>,
        body: OptionalJson<RegenerateTokenBody>,
    ) -> ApiResult<RegeneratedResponse> {
        let p = caller.0;
        p.require_confirmation()?;
        let id = TokenId(token_id.0);
        let (body_grace, expiry) = match body.0 {
            Some(b) => (
                b.grace_period_secs,
                match b.expires_at {
                    MaybeUndefined::Undefined => Expiry::Keep,
                    MaybeUndefined::Null => Expiry::Set(None),
                    MaybeUndefined::Value(t) => Expiry::Set(Some(t)),
                },
            ),
            None => (None, Expiry::Keep),
        };
        let grace = match (grace_period_secs.0, body_grace) {
            (Some(q), Some(b)) if q != b => {
                return Err(Error::invalid_field(
                    "conflicting_grace_period",
                    "grace_period_secs",
                    "grace_period_secs differs between the query and the body; give it once",
                )
                .into())
            }
            (q, b) => q.or(b).unwrap_or(0),
        };
        let by = self.0.actor(req, Some(&p));
        let minted = self.0.tokens.regenerate(&p, &by, id, grace, expiry).await?;
        Ok(RegeneratedResponse::Ok(Json(
            self.minted(&p, &minted).await,
        )))
    }

    /// The calling token rotates itself: a new secret for the same token (generation + 1),
    /// the old one valid for the grace period (default 60 s), so automation renews its own
    /// credential without a password or a person. Personal and application tokens only
    /// (a login session answers 403 `session_not_rotatable`). The replaced secret,
    /// presented after the grace period, revokes the token (`token_reuse_detected`).
    #[oai(
        path = "/tokens/current/rotate",
        method = "post",
        operation_id = "rotateCurrentToken"
    )]
    async fn rotate_current_token(
        &self,
        req: &Request,
        caller: TenantCaller,
        body: OptionalJson<RotateCurrentTokenBody>,
    ) -> ApiResult<RegeneratedResponse> {
        let p = caller.0;
        let grace = body
            .0
            .and_then(|b| b.grace_period_secs)
            .unwrap_or(ROTATION_GRACE_SECS);
        let by = self.0.actor(req, Some(&p));
        let minted = self.0.tokens.rotate_current(&p, &by, grace).await?;
        Ok(RegeneratedResponse::Ok(Json(
            self.minted(&p, &minted).await,
        )))
    }

    /// A new token with the same parameters and a new secret.
    #[oai(
        path = "/tokens/:token_id/copy",
        method = "post",
        operation_id = "copyToken"
    )]
    async fn copy_token(
        &self,
        req: &Request,
        caller: TenantCaller,
        token_id: Path<Uuid>,
        /// Name of the copy (default: "<name> (copy)").
        #[oai(validator(min_length = 1, max_length = 200))]
        name: Query<Option<String>>,
    ) -> ApiResult<MintedResponse> {
        let p = caller.0;
        p.require_confirmation()?;
        let by = self.0.actor(req, Some(&p));
        let minted = self
            .0
            .tokens
            .copy(&p, &by, TokenId(token_id.0), name.0)
            .await?;
        Ok(MintedResponse::Created(Json(
            self.minted(&p, &minted).await,
        )))
    }

    /// Delete a token; it stops working at once.
    #[oai(
        path = "/tokens/:token_id",
        method = "delete",
        operation_id = "deleteToken"
    )]
    async fn delete_token(
        &self,
        req: &Request,
        caller: TenantCaller,
        token_id: Path<Uuid>,
    ) -> ApiResult<DeletedResponse> {
        let p = caller.0;
        p.require_confirmation()?;
        let id = TokenId(token_id.0);
        let by = self.0.actor(req, Some(&p));
        self.0.tokens.delete(&p, &by, id).await?;
        Ok(DeletedResponse::Deleted)
    }

    /// Delete several tokens at once: all of them or, if one is unknown, none.
    #[oai(
        path = "/tokens/bulk-delete",
        method = "post",
        operation_id = "deleteTokens"
    )]
    async fn delete_tokens(
        &self,
        req: &Request,
        caller: TenantCaller,
        body: Json<DeleteTokensBody>,
    ) -> ApiResult<BulkDeletedResponse> {
        let p = caller.0;
        p.require_confirmation()?;
        let ids: Vec<TokenId> = body.0.ids.into_iter().map(TokenId).collect();
        let by = self.0.actor(req, Some(&p));
        let removed = self.0.tokens.delete_many(&p, &by, &ids).await?;
        Ok(BulkDeletedResponse::Ok(Json(DeletedTokens {
            count: removed.len() as u64,
            removed: removed
                .iter()
                .map(|t| Removed {
                    id: t.id.0,
                    name: t.name.clone(),
                })
                .collect(),
        })))
    }
}
