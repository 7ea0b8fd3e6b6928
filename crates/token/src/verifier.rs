//! The verification pipeline (hot path). A credential is hashed and looked up in a moka
//! cache; on a miss the JWT is checked against the key of the tenant it names, then the
//! token record and its owner are loaded, and the effective rights (scope ∩ role) are
//! compiled once. Per-request checks (transport, client IP, method) run on every call.
//! Refusals that do not depend on the request are cached too, so a flood of garbage never
//! reaches the database.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use sigil_core::crypto::{ct_eq, sha256};
use sigil_core::db::Db;
use sigil_core::{Error, TenantId, TokenId, UserId};
use sigil_scope_registry::store::ScopeSetStore;
use sigil_scope_registry::{MethodIdx, MethodSet, Registry};
use sigil_tenant::platform::PlatformKey;
use sigil_tenant::{KeyRing, TenantPolicy, TenantService};
use sigil_user::{Role, UserKind};
use tracing::field::Empty;
use tracing::Instrument;

use crate::ceiling;
use crate::changes::Change;
use crate::jwt;
use crate::loader::MissLoader;
use crate::methods::SigilMethod;
use crate::rights::role_rights;
use crate::scope;
use crate::types::{scope_from, TokenKind};
use crate::usage::UsageRecorder;

/// A refusal with its stable code; 401 for credential problems, 403 for rights.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub detail: &'static str,
    pub forbidden: bool,
    token: Option<TokenId>,
    user: Option<UserId>,
    tenant: Option<TenantId>,
    /// Whether `tenant` is known (signature verified) rather than merely claimed.
    tenant_verified: bool,
    /// The method refused, for a refusal about one method: the answer names it.
    method: Option<Box<str>>,
    /// Whether this very verification revoked the token (reuse detection).
    revoked_now: bool,
    /// The invalidation epoch the refusal was computed at (for cached refusals).
    loaded_epoch: u64,
}

impl Refusal {
    const fn unauthorized(code: &'static str, detail: &'static str) -> Self {
        Self {
            code,
            detail,
            forbidden: false,
            token: None,
            user: None,
            tenant: None,
            tenant_verified: false,
            method: None,
            revoked_now: false,
            loaded_epoch: 0,
        }
    }
    const fn forbidden(code: &'static str, detail: &'static str) -> Self {
        Self {
            code,
            detail,
            forbidden: true,
            token: None,
            user: None,
            tenant: None,
            tenant_verified: false,
            method: None,
            revoked_now: false,
            loaded_epoch: 0,
        }
    }
    fn about(
        mut self,
        tenant: Option<TenantId>,
        user: Option<UserId>,
        token: Option<TokenId>,
    ) -> Self {
        self.tenant = tenant.or(self.tenant);
        self.user = user.or(self.user);
        self.token = token.or(self.token);
        self
    }
    /// Names the tenant a credential claims, before its signature is checked.
    fn claimed_by(mut self, tenant: TenantId) -> Self {
        self.tenant = Some(tenant);
        self.tenant_verified = false;
        self
    }
    /// A refusal about a verified principal.
    fn on(self, p: &Principal) -> Self {
        self.about(Some(p.tenant_id), Some(p.user_id), Some(p.token_id))
            .verified()
    }
    fn verified(mut self) -> Self {
        self.tenant_verified = true;
        self
    }
    /// The token concerned, once its credential verified.
    pub fn token_id(&self) -> Option<TokenId> {
        self.token.filter(|_| self.tenant_verified)
    }
    /// The token's owner, once the credential verified.
    pub fn user_id(&self) -> Option<UserId> {
        self.user.filter(|_| self.tenant_verified)
    }
    /// Whether this verification revoked the token: a secret replaced by rotation was
    /// presented after its grace period (`token_reuse_detected`). Later presentations
    /// answer the same code without it, so the event is recorded once.
    pub fn revoked_now(&self) -> bool {
        self.revoked_now
    }
    /// The tenant concerned, once the credential's signature verified: a forged token's
    /// claim never files a refusal under a tenant.
    pub fn tenant_id(&self) -> Option<TenantId> {
        self.tenant.filter(|_| self.tenant_verified)
    }
}

impl Refusal {
    /// The refusal's explanation, naming the method when it is about one.
    pub fn explanation(&self) -> String {
        match &self.method {
            Some(m) => format!("{}: {m}", self.detail),
            None => self.detail.to_owned(),
        }
    }

    /// Whether verification could not run (storage unreachable): not the credential's
    /// fault, answered 503.
    pub fn is_unavailable(&self) -> bool {
        self.code == UNAVAILABLE_CODE
    }

    /// The method refused, when the refusal is about one.
    pub fn method(&self) -> Option<&str> {
        self.method.as_deref()
    }

    fn for_method(mut self, method: &str) -> Self {
        self.method = Some(method.into());
        self
    }
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Self {
        let detail = r.explanation();
        if r.forbidden {
            Error::forbidden(r.code, detail)
        } else {
            Error::unauthorized(r.code, detail)
        }
    }
}

const UNAVAILABLE_CODE: &str = "service_unavailable";

pub const MISSING: Refusal = Refusal::unauthorized("credential_missing", "no credential was given");
const MALFORMED: Refusal = Refusal::unauthorized(
    "token_malformed",
    "the credential is not a well-formed Sigil token",
);
const BAD_SIGNATURE: Refusal = Refusal::unauthorized(
    "token_invalid_signature",
    "the token's signature does not verify with a key of its tenant",
);
const UNKNOWN: Refusal =
    Refusal::unauthorized("token_unknown", "the token does not exist (deleted)");
const REPLACED: Refusal = Refusal::unauthorized(
    "token_replaced",
    "the token was regenerated; use the newest secret",
);
const EXPIRED: Refusal = Refusal::unauthorized("token_expired", "the token has expired");
const NOT_YET_VALID: Refusal =
    Refusal::unauthorized("token_not_yet_valid", "the token is not valid yet");
const DISABLED: Refusal = Refusal::unauthorized("token_disabled", "the token is disabled");
const REVOKED: Refusal = Refusal::unauthorized("token_revoked", "the token was revoked");
const REUSE_DETECTED: Refusal = Refusal::unauthorized(
    "token_reuse_detected",
    "the token was revoked: a secret its rotation replaced was presented again after its grace period (a stolen copy); make a new token",
);
const LEAKED: Refusal = Refusal::unauthorized(
    "token_leaked",
    "the token was revoked because its secret was reported exposed; make a new one",
);
const TENANT_DISABLED: Refusal =
    Refusal::unauthorized("tenant_disabled", "the token's tenant is disabled");
const USER_DEACTIVATED: Refusal =
    Refusal::unauthorized("user_deactivated", "the token's user is deactivated");
const API_ACCESS_DENIED: Refusal = Refusal::forbidden(
    "api_access_denied",
    "the user lacks the api_access permission",
);
const IP_NOT_ALLOWED: Refusal = Refusal::unauthorized(
    "ip_not_allowed",
    "the client address is not in the token's IP filter",
);
const TRANSPORT_NOT_ALLOWED: Refusal = Refusal::unauthorized(
    "transport_not_allowed",
    "the tenant does not accept credentials in the query string or form body",
);
const NOT_IN_SCOPE: Refusal = Refusal::forbidden(
    "method_not_in_scope",
    "the token's scope does not include this method",
);
const LACKS_PERMISSION: Refusal = Refusal::forbidden(
    "user_lacks_permission",
    "the token's user is not allowed to call this method",
);
const OPERATOR_ONLY: Refusal = Refusal::forbidden(
    "operator_only",
    "only the platform operator may call this method",
);
const NOT_FOR_OPERATOR: Refusal =
    Refusal::forbidden("tenant_only", "this method needs a tenant user's token");

/// Every verification outcome: `ok` and each refusal code, in a fixed order (the index
/// of a counter in [`VerifyStats`]).
pub const OUTCOMES: &[&str] = &[
    "ok",
    "credential_missing",
    "token_malformed",
    "token_invalid_signature",
    "token_unknown",
    "token_replaced",
    "token_expired",
    "token_not_yet_valid",
    "token_disabled",
    "token_revoked",
    "token_leaked",
    "token_reuse_detected",
    "tenant_disabled",
    "user_deactivated",
    "api_access_denied",
    "ip_not_allowed",
    "transport_not_allowed",
    "method_not_in_scope",
    "user_lacks_permission",
    "operator_only",
    "tenant_only",
    "service_unavailable",
    "other",
];

/// Counters of the verifier, read by the metrics endpoint: outcomes by code and cache use.
#[derive(Debug)]
pub struct VerifyStats {
    outcomes: [AtomicU64; OUTCOMES.len()],
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Default for VerifyStats {
    fn default() -> Self {
        Self {
            outcomes: std::array::from_fn(|_| AtomicU64::new(0)),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }
}

impl VerifyStats {
    /// Counts one outcome (`ok` or a refusal code).
    pub fn count(&self, outcome: &str) {
        let idx = OUTCOMES
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(OUTCOMES.len() - 1);
        self.outcomes[idx].fetch_add(1, Ordering::Relaxed);
    }

    /// (outcome, count) for every outcome, zeros included.
    pub fn outcomes(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        OUTCOMES
            .iter()
            .zip(self.outcomes.iter())
            .map(|(o, c)| (*o, c.load(Ordering::Relaxed)))
    }

    pub fn cache_hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    pub fn cache_misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }
}

/// Where the credential travelled; the tenant policy may refuse the query/form ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Header,
    QueryOrForm,
}

/// The checked identity behind a tenant token: the same value for every request that
/// presents the same credential until something about it changes.
#[derive(Debug)]
pub struct Principal {
    pub tenant_id: TenantId,
    /// Shared by every principal of the tenant.
    pub tenant_slug: Arc<str>,
    pub user_id: UserId,
    pub username: String,
    pub user_kind: UserKind,
    pub role: Role,
    pub token_id: TokenId,
    pub token_kind: TokenKind,
    pub expires_at: Option<DateTime<Utc>>,
    pub elevated_until: Option<DateTime<Utc>>,
    /// The token's own scope, compiled.
    pub scope: MethodSet,
    /// scope ∩ what the owner's role allows now.
    pub rights: MethodSet,
    /// The token's IP filter; `None` when the stored filter is unreadable (refuses all).
    pub ip_filter: Option<Box<[IpNet]>>,
    /// The tenant's allowlist, parsed once and shared by the tenant's principals.
    pub tenant_nets: Arc<[IpNet]>,
    pub policy: Arc<TenantPolicy>,
    /// When the credential is a replaced secret in its grace period: the period's end.
    /// Past it the cached principal is dropped, so the next use is verified in full (and
    /// reuse detection sees it).
    pub grace_until: Option<DateTime<Utc>>,
    registry_version: u64,
    /// The invalidation epoch the principal was loaded at.
    loaded_epoch: u64,
}

impl Principal {
    pub fn is_session(&self) -> bool {
        self.token_kind == TokenKind::Session
    }

    /// Token changes made with a login session need a recent password confirmation when
    /// the tenant asks for it; automation tokens are not asked.
    pub fn require_confirmation(&self) -> Result<(), Error> {
        if self.is_session()
            && self.policy.require_password_confirmation
            && self.elevated_until.is_none_or(|t| t <= Utc::now())
        {
            return Err(Error::forbidden(
                "password_confirmation_required",
                "changing tokens with a login session needs a recent password confirmation: POST /api/v1/auth/confirm-password with {\"password\": ...} (confirmPassword), then retry",
            ));
        }
        Ok(())
    }

    fn check_method(&self, method: MethodIdx) -> Result<(), Refusal> {
        if self.rights.contains(method) {
            Ok(())
        } else if !self.scope.contains(method) {
            Err(NOT_IN_SCOPE)
        } else {
            Err(LACKS_PERMISSION)
        }
    }
}

#[derive(Clone, Debug)]
pub enum Caller {
    Operator,
    Tenant(Arc<Principal>),
}

#[derive(Clone)]
enum Cached {
    Ok(Arc<Principal>),
    Refused(Refusal),
}

type CacheKey = [u8; 32];

/// What a change touched, for the invalidation stamps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Stamp {
    Token(TokenId),
    User(UserId),
    Tenant(TenantId),
    All,
}

/// What verification needs of a tenant, loaded once and shared by the principals of the
/// tenant (one policy in memory per tenant, not per cached token).
struct TenantEntry {
    slug: Arc<str>,
    enabled: bool,
    policy: Arc<TenantPolicy>,
    nets: Arc<[IpNet]>,
}

#[derive(Clone)]
pub struct VerifierDeps {
    pub db: Db,
    pub tenants: TenantService,
    pub keys: KeyRing,
    pub platform: Arc<PlatformKey>,
    pub registry: Arc<Registry>,
    pub sets: ScopeSetStore,
    pub usage: UsageRecorder,
}

#[derive(Clone)]
pub struct Verifier {
    deps: VerifierDeps,
    loader: MissLoader,
    positive: moka::sync::Cache<CacheKey, Arc<Principal>>,
    negative: moka::sync::Cache<CacheKey, Refusal>,
    /// Tenants by id (dropped by the same changes as the principals of the tenant).
    tenants: moka::sync::Cache<TenantId, Arc<TenantEntry>>,
    /// Moves on every invalidation; a miss computed across one is not cached.
    epoch: Arc<AtomicU64>,
    /// The epoch of the last change to each token, user and tenant (and to everything),
    /// kept as long as a cached entry can be older: a hit loaded before it is a miss.
    stamps: moka::sync::Cache<Stamp, u64>,
    trusted_proxies: Arc<Vec<IpNet>>,
    stats: Arc<VerifyStats>,
    /// Where a revocation by reuse detection is published (every replica's caches). Weak:
    /// the feed's handlers hold this verifier, and a cycle would keep both (and the
    /// database pool) alive forever.
    changes: Option<std::sync::Weak<crate::changes::ChangeFeed>>,
}

pub struct CacheSettings {
    pub max_entries: u64,
    pub ttl: Duration,
    pub negative_max_entries: u64,
    pub negative_ttl: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            max_entries: 1_000_000,
            ttl: Duration::from_secs(60),
            negative_max_entries: 100_000,
            negative_ttl: Duration::from_secs(10),
        }
    }
}

impl Verifier {
    pub fn new(deps: VerifierDeps, cache: CacheSettings, trusted_proxies: Vec<IpNet>) -> Self {
        Self {
            loader: MissLoader::new(deps.db.clone()),
            deps,
            positive: moka::sync::Cache::builder()
                .max_capacity(cache.max_entries)
                .time_to_live(cache.ttl)
                .support_invalidation_closures()
                .build(),
            negative: moka::sync::Cache::builder()
                .max_capacity(cache.negative_max_entries)
                .time_to_live(cache.negative_ttl)
                .support_invalidation_closures()
                .build(),
            tenants: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(cache.ttl)
                .build(),
            epoch: Arc::new(AtomicU64::new(0)),
            stamps: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(cache.ttl.max(cache.negative_ttl) + Duration::from_secs(1))
                .build(),
            trusted_proxies: Arc::new(trusted_proxies),
            stats: Arc::default(),
            changes: None,
        }
    }

    /// Publishes the revocations of reuse detection on `changes` (to every replica);
    /// without it they reach this verifier's caches only.
    pub fn with_change_feed(mut self, changes: &Arc<crate::changes::ChangeFeed>) -> Self {
        self.changes = Some(Arc::downgrade(changes));
        self
    }

    pub fn trusted_proxies(&self) -> &[IpNet] {
        &self.trusted_proxies
    }

    /// Outcome and cache counters.
    pub fn stats(&self) -> &VerifyStats {
        &self.stats
    }

    /// Counts an outcome decided outside [`Verifier::verify`] (a missing credential, or a
    /// refusal of [`Verifier::check`] / [`Verifier::check_request`]).
    pub fn note_outcome(&self, outcome: &str) {
        self.stats.count(outcome);
    }

    /// Drops the cached outcome of one credential: its next use is verified in full.
    pub fn forget(&self, credential: &str) {
        let key = sha256(credential.as_bytes());
        self.positive.invalidate(&key);
        self.negative.invalidate(&key);
    }

    pub fn cached_entries(&self) -> u64 {
        self.positive.run_pending_tasks();
        self.positive.entry_count()
    }

    /// Verifies a credential for one request. `method` is the registry method being called
    /// (None when only identity is needed); `client_ip` is the resolved client address.
    /// Records usage on success.
    pub async fn verify(
        &self,
        credential: &str,
        transport: Transport,
        client_ip: Option<IpAddr>,
        method: Option<&str>,
    ) -> Result<Caller, Refusal> {
        // Only static strings are recorded, so a cache hit allocates nothing for tracing.
        let span = tracing::info_span!("verify", outcome = Empty, cache = Empty);
        let result = async {
            let Some(principal) = self.principal_for(credential).await? else {
                return self.operator(credential, method);
            };
            self.per_request(&principal, transport, IpCheck::Required(client_ip), method)?;
            self.deps.usage.record(principal.token_id, client_ip);
            Ok(Caller::Tenant(principal))
        }
        .instrument(span.clone())
        .await;
        self.finish(&span, result.as_ref().err());
        result
    }

    /// Counts the outcome and records it on the `verify` span.
    fn finish(&self, span: &tracing::Span, refusal: Option<&Refusal>) {
        let outcome = refusal.map_or("ok", |r| r.code);
        self.stats.count(outcome);
        span.record("outcome", outcome);
    }

    /// Introspection for a plugin: like [`Verifier::verify`], but the IP filter is checked
    /// only when the plugin says which client it serves.
    pub async fn introspect(
        &self,
        credential: &str,
        client_ip: Option<IpAddr>,
        method: Option<&str>,
    ) -> Result<Arc<Principal>, Refusal> {
        let span = tracing::info_span!("verify", outcome = Empty, cache = Empty);
        let result = async {
            let principal = self.principal_for(credential).await?.ok_or(UNKNOWN)?;
            let ip = match client_ip {
                Some(ip) => IpCheck::Required(Some(ip)),
                None => IpCheck::Skip,
            };
            self.per_request(&principal, Transport::Header, ip, method)?;
            self.deps.usage.record(principal.token_id, client_ip);
            Ok(principal)
        }
        .instrument(span.clone())
        .await;
        self.finish(&span, result.as_ref().err());
        result
    }

    /// The principal behind a credential (cached), `None` when it is not a tenant token.
    pub async fn principal_for(&self, credential: &str) -> Result<Option<Arc<Principal>>, Refusal> {
        let key = sha256(credential.as_bytes());
        match self.lookup(&key) {
            Some(Cached::Ok(p))
                if self.is_current(&p)
                    && self.unchanged_since(
                        p.loaded_epoch,
                        Some(p.token_id),
                        Some(p.user_id),
                        Some(p.tenant_id),
                    ) =>
            {
                self.cache_hit();
                Ok(Some(p))
            }
            Some(Cached::Refused(r))
                if self.unchanged_since(r.loaded_epoch, r.token, r.user, r.tenant) =>
            {
                self.cache_hit();
                Err(r)
            }
            _ => {
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
                tracing::Span::current().record("cache", "miss");
                self.resolve(credential, &key).await
            }
        }
    }

    fn cache_hit(&self) {
        self.stats.hits.fetch_add(1, Ordering::Relaxed);
        tracing::Span::current().record("cache", "hit");
    }

    fn operator(&self, credential: &str, method: Option<&str>) -> Result<Caller, Refusal> {
        match self.deps.platform.check(credential) {
            Ok(_) => {}
            Err(sigil_tenant::platform::OperatorRefusal::Revoked) => return Err(REVOKED),
            Err(_) => return Err(BAD_SIGNATURE),
        }
        match method {
            Some(m) if !SigilMethod::from_id(m).is_some_and(SigilMethod::operator_may_call) => {
                Err(NOT_FOR_OPERATOR.for_method(m))
            }
            _ => Ok(Caller::Operator),
        }
    }

    fn lookup(&self, key: &CacheKey) -> Option<Cached> {
        if let Some(p) = self.positive.get(key) {
            return Some(Cached::Ok(p));
        }
        self.negative.get(key).map(Cached::Refused)
    }

    fn per_request(
        &self,
        p: &Principal,
        transport: Transport,
        ip_check: IpCheck,
        method: Option<&str>,
    ) -> Result<(), Refusal> {
        let now = Utc::now();
        if p.expires_at.is_some_and(|t| t <= now) {
            return Err(EXPIRED.on(p));
        }
        if transport == Transport::QueryOrForm && !p.policy.allow_query_credentials {
            return Err(TRANSPORT_NOT_ALLOWED);
        }
        let client_ip = match ip_check {
            IpCheck::Required(ip) => Some(ip),
            IpCheck::Skip => None,
        };
        let Some(token_nets) = p.ip_filter.as_deref() else {
            return Err(IP_NOT_ALLOWED.on(p));
        };
        for nets in [token_nets, &*p.tenant_nets] {
            if let Some(client_ip) = client_ip.filter(|_| !nets.is_empty()) {
                let allowed = client_ip.is_some_and(|ip| nets.iter().any(|n| n.contains(&ip)));
                if !allowed {
                    return Err(IP_NOT_ALLOWED.on(p));
                }
            }
        }
        if let Some(method) = method {
            if SigilMethod::from_id(method).is_some_and(SigilMethod::operator_only) {
                return Err(OPERATOR_ONLY.for_method(method));
            }
            let snapshot = self.deps.registry.load();
            let idx = snapshot
                .lookup(Some(p.tenant_id.0), method)
                .ok_or_else(|| NOT_IN_SCOPE.for_method(method))?;
            p.check_method(idx)
                .map_err(|r| r.on(p).for_method(method))?;
        }
        Ok(())
    }

    /// Checks a method against an already verified principal (e.g. the route resolved
    /// after identity for forward auth).
    pub fn check(&self, p: &Principal, method: &str) -> Result<(), Refusal> {
        self.per_request(p, Transport::Header, IpCheck::Skip, Some(method))
    }

    /// Records a successful use (when the use was checked with [`Verifier::check`]).
    pub fn record_use(&self, p: &Principal, client_ip: Option<IpAddr>) {
        self.stats.count("ok");
        self.deps.usage.record(p.token_id, client_ip);
    }

    /// Per-request checks without a method: transport and client address.
    pub fn check_request(
        &self,
        p: &Principal,
        transport: Transport,
        client_ip: Option<IpAddr>,
    ) -> Result<(), Refusal> {
        self.per_request(p, transport, IpCheck::Required(client_ip), None)
    }

    /// A cache miss: full checks. `Ok(None)` means "not a tenant token" (maybe operator).
    async fn resolve(
        &self,
        credential: &str,
        key: &CacheKey,
    ) -> Result<Option<Arc<Principal>>, Refusal> {
        let epoch = self.epoch.load(Ordering::Acquire);
        let loaded = self
            .resolve_uncached(credential, key, epoch)
            .instrument(tracing::info_span!("db", op = "verification.load"))
            .await;
        match loaded {
            Ok(Some(p)) => {
                let p = Arc::new(p);
                // Insert, then look at the epoch again: an invalidation that ran after the
                // load either sees this entry (and drops it) or moved the epoch (and the
                // entry is dropped here), so a stale principal never stays cached.
                if self.epoch.load(Ordering::Acquire) == epoch {
                    self.positive.insert(*key, p.clone());
                    if self.epoch.load(Ordering::Acquire) != epoch {
                        self.positive.invalidate(key);
                    }
                }
                Ok(Some(p))
            }
            Ok(None) => Ok(None),
            Err(Outcome::Refused(mut r)) => {
                r.loaded_epoch = epoch;
                if self.epoch.load(Ordering::Acquire) == epoch {
                    self.negative.insert(*key, r.clone());
                    if self.epoch.load(Ordering::Acquire) != epoch {
                        self.negative.invalidate(key);
                    }
                }
                Err(r)
            }
            Err(Outcome::Unavailable) => Err(Refusal {
                code: UNAVAILABLE_CODE,
                detail: "verification is unavailable; retry shortly",
                forbidden: false,
                token: None,
                user: None,
                tenant: None,
                tenant_verified: false,
                method: None,
                revoked_now: false,
                loaded_epoch: 0,
            }),
        }
    }

    /// The tenant (cached); `epoch` is the invalidation epoch the caller started from, so
    /// a tenant read across an invalidation is used once but not kept.
    async fn tenant(&self, id: TenantId, epoch: u64) -> Result<Option<Arc<TenantEntry>>, Error> {
        if let Some(t) = self.tenants.get(&id) {
            return Ok(Some(t));
        }
        let Some(tenant) = self.deps.tenants.find(id).await? else {
            return Ok(None);
        };
        let entry = Arc::new(TenantEntry {
            nets: tenant.policy.ip_nets().into(),
            slug: tenant.slug.into(),
            enabled: tenant.enabled,
            policy: Arc::new(tenant.policy),
        });
        if self.epoch.load(Ordering::Acquire) == epoch {
            self.tenants.insert(id, entry.clone());
            if self.epoch.load(Ordering::Acquire) != epoch {
                self.tenants.invalidate(&id);
            }
        }
        Ok(Some(entry))
    }

    async fn resolve_uncached(
        &self,
        credential: &str,
        hash: &CacheKey,
        epoch: u64,
    ) -> Result<Option<Principal>, Outcome> {
        let unverified = jwt::inspect(credential).map_err(|_| Outcome::Refused(MALFORMED))?;
        if unverified.kid.starts_with("op-") {
            return Ok(None);
        }
        let tenant_id = unverified.tenant.ok_or(Outcome::Refused(MALFORMED))?;
        // Before the signature verifies, the tenant claim is only a claim: a refusal keeps
        // it for cache invalidation but is not filed under that tenant.
        let about = |r: Refusal| Outcome::Refused(r.claimed_by(tenant_id));
        let tenant = self
            .tenant(tenant_id, epoch)
            .await?
            .ok_or(about(BAD_SIGNATURE))?;
        let key = self
            .deps
            .keys
            .verification_key(tenant_id, &unverified.kid)
            .await?
            .ok_or(about(BAD_SIGNATURE))?;
        let claims = jwt::verify(credential, &key, tenant_id).map_err(|e| {
            about(match e {
                jwt::VerifyError::Signature => BAD_SIGNATURE,
                jwt::VerifyError::Expired => EXPIRED,
                jwt::VerifyError::NotYetValid => NOT_YET_VALID,
                jwt::VerifyError::Malformed => MALFORMED,
            })
        })?;
        if !tenant.enabled {
            return Err(Outcome::Refused(
                TENANT_DISABLED
                    .about(Some(tenant_id), None, None)
                    .verified(),
            ));
        }
        let (token_id, generation) = jwt::parse_jti(&claims.jti).ok_or(about(MALFORMED))?;
        let on_token = |r: Refusal| {
            Outcome::Refused(r.about(Some(tenant_id), None, Some(token_id)).verified())
        };
        let record = self
            .loader
            .load(tenant_id, token_id)
            .await?
            .ok_or(on_token(UNKNOWN))?;
        let now = Utc::now();
        let current = generation == record.generation && hash_matches(&record.secret_hash, hash);
        let in_grace = generation + 1 == record.generation
            && record.prev_valid_until.is_some_and(|t| t > now)
            && record
                .prev_secret_hash
                .as_deref()
                .is_some_and(|h| hash_matches(h, hash));
        if !current && !in_grace {
            return Err(Outcome::Refused(
                self.replaced(&tenant.policy, &record, generation, now)
                    .await?,
            ));
        }
        // A token revoked by reuse detection refuses its newest secret with the same code.
        if record.revoked_at.is_some()
            && record.revoked_reason.as_deref() == Some(crate::leaks::REUSE_DETECTED)
        {
            return Err(on_token(REUSE_DETECTED));
        }
        // A secret reported exposed (crate::leaks) is refused with its own code.
        if record.revoked_at.is_some() && record.revoked_reason.as_deref() == Some("leaked") {
            return Err(on_token(LEAKED));
        }
        if record.revoked_at.is_some() {
            return Err(on_token(REVOKED));
        }
        if !record.enabled {
            return Err(on_token(DISABLED));
        }
        if record.expires_at.is_some_and(|t| t <= now) {
            return Err(on_token(EXPIRED));
        }
        let owner_ref = |r: Refusal| {
            Outcome::Refused(
                r.about(Some(tenant_id), Some(record.owner_id), Some(token_id))
                    .verified(),
            )
        };
        if !record.active || record.is_system {
            return Err(owner_ref(USER_DEACTIVATED));
        }
        if !record.api_access {
            return Err(owner_ref(API_ACCESS_DENIED));
        }
        let role = Role::parse(&record.role)?;
        let user_kind = UserKind::parse(&record.user_kind)?;
        let snapshot = self.deps.registry.current();
        let token_scope = scope::resolve_lenient(
            &snapshot,
            &self.deps.sets,
            tenant_id,
            &scope_from(&record.kind, &record.scope_set, &record.scope_methods),
        )
        .await?;
        let role_rights = role_rights(&snapshot, tenant_id.0, role);
        let mut token_scope = token_scope;
        if let Some(ceiling) = ceiling::from_stored(&snapshot, tenant_id, record.ceiling.as_deref())
        {
            token_scope.intersect_with(&ceiling);
        }
        let rights = token_scope.intersect(&role_rights);
        // The stored expiry is the truth online; the JWT's `exp` is for offline checks.
        let mut expires_at = record.expires_at;
        if in_grace {
            expires_at = record
                .prev_valid_until
                .map(|g| expires_at.map_or(g, |t| t.min(g)));
        }
        let ip_filter = parse_ip_filter(&record.ip_filter);
        Ok(Some(Principal {
            tenant_id,
            tenant_slug: Arc::clone(&tenant.slug),
            user_id: record.owner_id,
            username: record.username,
            user_kind,
            role,
            token_id,
            token_kind: TokenKind::parse(&record.kind).map_err(|_| Outcome::Refused(MALFORMED))?,
            expires_at,
            elevated_until: record.elevated_until,
            scope: token_scope,
            rights,
            ip_filter,
            tenant_nets: tenant.nets.clone(),
            policy: tenant.policy.clone(),
            grace_until: record.prev_valid_until.filter(|_| in_grace),
            registry_version: snapshot.version(),
            loaded_epoch: epoch,
        }))
    }

    /// A signed secret of the token that is neither its current one nor its previous one in
    /// its grace period. Reuse detection: a secret replaced by the token's own rotation (or
    /// by any regeneration, when the tenant asks) is a stolen copy, since the rotating
    /// client holds the newer one; the token is revoked (the only write of verification,
    /// and a rare one) and refused `token_reuse_detected`. Anything else: `token_replaced`.
    async fn replaced(
        &self,
        policy: &TenantPolicy,
        record: &crate::loader::MissRow,
        generation: i32,
        now: DateTime<Utc>,
    ) -> Result<Refusal, Error> {
        let about = |r: Refusal| {
            r.about(
                Some(record.tenant_id),
                Some(record.owner_id),
                Some(record.id),
            )
            .verified()
        };
        if record.revoked_at.is_some() {
            let reused = record.revoked_reason.as_deref() == Some(crate::leaks::REUSE_DETECTED);
            return Ok(about(if reused { REUSE_DETECTED } else { REPLACED }));
        }
        // The previous secret within its grace period was accepted by the caller; a
        // generation from the future does not exist (signed but never stored).
        let older = generation < record.generation
            && !(generation + 1 == record.generation
                && record.prev_valid_until.is_some_and(|t| t > now));
        let by_self = record
            .self_rotated_from
            .is_some_and(|from| generation >= from);
        let detect = older
            && ((by_self && policy.detect_reuse_after_rotation)
                || policy.detect_reuse_after_regeneration);
        if !detect {
            return Ok(about(REPLACED));
        }
        let first =
            crate::leaks::revoke_for_reuse(&self.deps.db, record.tenant_id, record.id).await?;
        if first {
            let change = Change::Token {
                tenant: record.tenant_id,
                token: record.id,
            };
            match self.changes.as_ref().and_then(std::sync::Weak::upgrade) {
                Some(feed) => feed.publish(change).await,
                None => self.apply(&change),
            }
        }
        let mut refusal = about(REUSE_DETECTED);
        refusal.revoked_now = first;
        Ok(refusal)
    }

    /// Drops every cache entry a change can affect.
    pub fn apply(&self, change: &Change) {
        // The stamp is written before any entry is dropped: a cached entry loaded before
        // this change is refused on its next hit even if an invalidation below missed it.
        let stamp = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        let key = match *change {
            Change::Token { token, .. } => Stamp::Token(token),
            Change::User { user, .. } => Stamp::User(user),
            Change::Tenant { tenant } | Change::Keys { tenant } => Stamp::Tenant(tenant),
            Change::Registry { .. } | Change::All => Stamp::All,
        };
        self.stamps.insert(key, stamp);
        match *change {
            Change::Token { token, .. } => {
                let _ = self
                    .positive
                    .invalidate_entries_if(move |_, p| p.token_id == token);
                let _ = self
                    .negative
                    .invalidate_entries_if(move |_, r| r.token == Some(token));
            }
            Change::User { user, .. } => {
                let _ = self
                    .positive
                    .invalidate_entries_if(move |_, p| p.user_id == user);
                let _ = self
                    .negative
                    .invalidate_entries_if(move |_, r| r.user == Some(user));
            }
            Change::Tenant { tenant } | Change::Keys { tenant } => {
                if matches!(change, Change::Keys { .. }) {
                    self.deps.keys.invalidate_tenant(tenant);
                }
                self.tenants.invalidate(&tenant);
                let _ = self
                    .positive
                    .invalidate_entries_if(move |_, p| p.tenant_id == tenant);
                let _ = self
                    .negative
                    .invalidate_entries_if(move |_, r| r.tenant == Some(tenant));
            }
            Change::Registry { .. } => {
                let _ = self.positive.invalidate_entries_if(|_, _| true);
                self.negative.invalidate_all();
            }
            Change::All => {
                self.deps.keys.invalidate_all();
                self.tenants.invalidate_all();
                self.positive.invalidate_all();
                self.negative.invalidate_all();
            }
        }
    }

    /// Whether nothing a cached entry depends on changed after it was loaded (the entries
    /// themselves are dropped on every change too; the stamps make that exact).
    fn unchanged_since(
        &self,
        loaded: u64,
        token: Option<TokenId>,
        user: Option<UserId>,
        tenant: Option<TenantId>,
    ) -> bool {
        let newer = |key: Stamp| self.stamps.get(&key).is_some_and(|s| s > loaded);
        !(newer(Stamp::All)
            || token.is_some_and(|t| newer(Stamp::Token(t)))
            || user.is_some_and(|u| newer(Stamp::User(u)))
            || tenant.is_some_and(|t| newer(Stamp::Tenant(t))))
    }

    /// Whether a cached principal still stands: its rights were compiled against the
    /// current registry, and (for a replaced secret) its grace period has not ended.
    pub fn is_current(&self, p: &Principal) -> bool {
        p.registry_version == self.deps.registry.version()
            && p.grace_until.is_none_or(|t| t > Utc::now())
    }
}

/// A stored IP filter; `None` when it does not parse, which refuses every address (a
/// filter that cannot be read must never mean "no filter").
fn parse_ip_filter(stored: &str) -> Option<Box<[IpNet]>> {
    let entries: Vec<String> = serde_json::from_str(stored).ok()?;
    entries
        .iter()
        .map(|e| sigil_tenant::policy::parse_ip_net(e))
        .collect()
}

fn hash_matches(stored_hex: &str, hash: &[u8; 32]) -> bool {
    let mut stored = [0u8; 32];
    hex::decode_to_slice(stored_hex, &mut stored).is_ok() && ct_eq(&stored, hash)
}

#[derive(Clone, Copy)]
enum IpCheck {
    Required(Option<IpAddr>),
    Skip,
}

enum Outcome {
    Refused(Refusal),
    Unavailable,
}

impl From<Error> for Outcome {
    fn from(e: Error) -> Self {
        tracing::warn!(error = %e, "verification could not reach storage");
        Outcome::Unavailable
    }
}
