//! The stages of one verification, in order:
//!
//! 1. resolve: the credential's principal, from the cache or (a miss) by checking the JWT
//!    against a key of the tenant it names and loading the token and its owner;
//! 2. the request: transport, client address;
//! 3. the method: the one called (or the route's, for forward auth) against the rights;
//! 4. usage limits: the rate limits of the token and its owner, and its credits;
//! 5. the use is recorded.
//!
//! API calls, introspection and forward auth all run these stages through
//! [`Verifier::verify`]; they differ only in their [`Target`].

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use sigil_audit::Actor;
use sigil_core::changes::Change;
use sigil_core::crypto::{ct_eq, sha256};
use sigil_core::{Error, TenantId};
use sigil_limits::{Decision, LimitState, Request as LimitRequest};
use sigil_scope_registry::Snapshot;
use sigil_tenant::platform::OperatorRefusal;
use sigil_tenant::TenantPolicy;
use sigil_user::{Role, UserKind};
use tracing::Instrument;

use super::cache::{CacheKey, TenantEntry};
use super::refusal::{LimitRefusal, Refusal, RefusalKind};
use super::Verifier;
use crate::loader::MissRow;
use crate::methods::SigilMethod;
use crate::principal::{Caller, Principal, UsageLimits};
use crate::rights::role_rights;
use crate::types::{scope_from, TokenKind};
use crate::{ceiling, jwt, leaks, scope};

/// Where the credential travelled; the tenant policy may refuse the query/form ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Header,
    QueryOrForm,
}

/// The client address the token's and the tenant's IP filters are checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    /// The request's client; `None` when unknown, which a filter refuses.
    At(Option<IpAddr>),
    /// Introspection without a client address: the filters are not checked.
    Unstated,
}

impl Client {
    fn address(self) -> Option<IpAddr> {
        match self {
            Client::At(ip) => ip,
            Client::Unstated => None,
        }
    }
}

/// What a credential is presented for.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// A call of Sigil's API, by the registry method of its route. The operator may call
    /// the methods Sigil opens to it.
    Call(&'a str),
    /// Introspection by a plugin of `tenant`, optionally for one method. A token of
    /// another tenant, or the operator's, is unknown to it.
    Introspection {
        tenant: TenantId,
        method: Option<&'a str>,
    },
    /// Forward auth of a proxied request: the registry method its route maps to, among
    /// the routes the token's tenant sees.
    Forward { verb: &'a str, path: &'a str },
}

/// One verification: the credential, how and from where it came, and what it is for.
#[derive(Clone, Copy, Debug)]
pub struct Attempt<'a> {
    /// The credential and how it travelled; `None` when the request carries none.
    pub credential: Option<(&'a str, Transport)>,
    pub client: Client,
    /// The client's user agent, for the audit event of a reuse detection.
    pub user_agent: Option<&'a str>,
    pub target: Target<'a>,
}

/// Who presented a credential, as the audit log names the client when the presentation
/// revokes a token (reuse detection).
#[derive(Clone, Copy, Debug, Default)]
struct Presenter<'a> {
    ip: Option<IpAddr>,
    user_agent: Option<&'a str>,
}

/// An allowed request.
#[derive(Debug)]
pub struct Verified {
    pub caller: Caller,
    /// The registry method the forwarded request maps to (forward auth).
    pub routed_method: Option<String>,
    /// The usage limits as this use left them (for the `RateLimit` headers and
    /// introspection); `None` for a token without limits.
    pub limits: Option<Box<LimitState>>,
}

/// Why forward auth cannot authorize a request whatever its credential: not a verdict on
/// the credential, so neither counted as an outcome nor audited as a refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unforwardable {
    /// The operator's token: forward auth serves the tenants' services.
    OperatorToken,
    /// No registered route matches the original request.
    NoRoute,
}

impl Unforwardable {
    pub const fn code(self) -> &'static str {
        match self {
            Self::OperatorToken => "tenant_only",
            Self::NoRoute => "route_not_registered",
        }
    }

    pub const fn message(self) -> &'static str {
        match self {
            Self::OperatorToken => "forward auth needs a tenant token",
            Self::NoRoute => "no registered method matches this request",
        }
    }
}

impl From<Unforwardable> for Error {
    fn from(u: Unforwardable) -> Self {
        Error::forbidden(u.code(), u.message())
    }
}

/// Why a request was not allowed.
#[derive(Clone, Debug)]
pub enum Denied {
    /// The credential may not make this request.
    Refused(Refusal),
    /// Forward auth only.
    Unforwardable(Unforwardable),
}

impl From<Refusal> for Denied {
    fn from(r: Refusal) -> Self {
        Denied::Refused(r)
    }
}

impl From<RefusalKind> for Denied {
    fn from(kind: RefusalKind) -> Self {
        Denied::Refused(Refusal::new(kind))
    }
}

impl From<Unforwardable> for Denied {
    fn from(u: Unforwardable) -> Self {
        Denied::Unforwardable(u)
    }
}

/// Why a cache miss did not produce a principal.
enum LoadError {
    Refused(Refusal),
    Unavailable,
}

impl From<Refusal> for LoadError {
    fn from(r: Refusal) -> Self {
        LoadError::Refused(r)
    }
}

impl From<Error> for LoadError {
    fn from(e: Error) -> Self {
        tracing::warn!(error = %e, "verification could not reach storage");
        LoadError::Unavailable
    }
}

/// How long a client waits before retrying when verification could not run.
const UNAVAILABLE_RETRY_SECS: u64 = 2;

impl Verifier {
    /// The stages, in order (the entry point, [`Verifier::verify`], counts the outcome).
    pub(super) async fn run(&self, attempt: Attempt<'_>) -> Result<Verified, Denied> {
        let (credential, transport) = attempt.credential.ok_or(RefusalKind::CredentialMissing)?;
        let presenter = Presenter {
            ip: attempt.client.address(),
            user_agent: attempt.user_agent,
        };
        let Some(principal) = self
            .principal_in_reach(credential, attempt.target, presenter)
            .await?
        else {
            return self.operator(credential, attempt.target);
        };
        let (routed_method, cost) = self
            .check_request(&principal, transport, &attempt)
            .map_err(|denied| match denied {
                Denied::Refused(r) => Denied::Refused(r.with_principal(&principal)),
                other => other,
            })?;
        let limits = match principal.limits.as_deref() {
            None => None,
            Some(limits) => self.check_limits(&principal, limits, cost).await?,
        };
        self.deps
            .usage
            .record(principal.token_id, attempt.client.address());
        Ok(Verified {
            caller: Caller::Tenant(principal),
            routed_method,
            limits,
        })
    }

    /// Stages 2 and 3 for a tenant's principal: the route's method for forward auth, and
    /// the credits the use costs (the method's cost, 1 without a method).
    fn check_request(
        &self,
        p: &Principal,
        transport: Transport,
        attempt: &Attempt<'_>,
    ) -> Result<(Option<String>, u32), Denied> {
        if let Target::Introspection { tenant, .. } = attempt.target {
            if p.tenant_id != tenant {
                return Err(RefusalKind::TokenUnknown.into());
            }
        }
        check_expiry(p, Utc::now())?;
        check_transport(p, transport)?;
        check_client(p, attempt.client)?;
        let snapshot = self.deps.registry.load();
        match attempt.target {
            Target::Call(method) => Ok((None, check_method(&snapshot, p, method)?)),
            Target::Introspection { method, .. } => match method {
                Some(method) => Ok((None, check_method(&snapshot, p, method)?)),
                None => Ok((None, 1)),
            },
            Target::Forward { verb, path } => {
                let method = route_method(&snapshot, p, verb, path)?;
                let cost = check_method(&snapshot, p, &method)?;
                Ok((Some(method), cost))
            }
        }
    }

    /// Stage 4: the token's and its owner's rate limits and the token's credits, all
    /// charged or none. Answered from memory unless a shared counter must be asked.
    async fn check_limits(
        &self,
        p: &Arc<Principal>,
        limits: &UsageLimits,
        cost: u32,
    ) -> Result<Option<Box<LimitState>>, Refusal> {
        let request = LimitRequest {
            token: p.token_id,
            owner: p.user_id,
            token_limits: &limits.token,
            owner_limits: &limits.owner,
            credits: limits.credits.as_ref(),
            cost,
        };
        let now = Utc::now();
        let decision = match self.deps.limiter.try_check(&request, now) {
            Some(decision) => decision,
            // Boxed, like the database read of a miss: rare, and a large future.
            None => Box::pin(self.deps.limiter.check(&request, now)).await,
        };
        let refused = |kind: RefusalKind, state: LimitState, next_refill| {
            let refused_by = state
                .limits()
                .iter()
                .find(|l| l.remaining == 0)
                .filter(|_| kind == RefusalKind::RateLimited)
                .map(|l| format!("{} ({} per {} s)", l.policy_name(), l.limit, l.window_secs));
            Refusal::new(kind)
                .on(p)
                .with_principal(p)
                .with_limits(LimitRefusal {
                    state,
                    refused_by,
                    next_refill,
                })
        };
        match decision {
            Decision::Allowed { state } => Ok((!state.is_empty()).then(|| Box::new(state))),
            Decision::RateLimited {
                retry_after_secs,
                state,
            } => Err(refused(RefusalKind::RateLimited, state, None)
                .retry_after(u64::from(retry_after_secs.max(1)))),
            Decision::UsageExceeded { next_refill, state } => {
                let refusal = refused(RefusalKind::UsageExceeded, state, next_refill);
                Err(match next_refill {
                    Some(at) => {
                        let ms = u64::try_from((at - now).num_milliseconds()).unwrap_or(0);
                        refusal.retry_after(ms.div_ceil(1000).max(1))
                    }
                    None => refusal,
                })
            }
        }
    }

    /// A credential that is not a tenant token: the operator's, for the calls it may make.
    fn operator(&self, credential: &str, target: Target<'_>) -> Result<Verified, Denied> {
        let method = match target {
            Target::Call(method) => method,
            Target::Introspection { .. } => return Err(RefusalKind::TokenUnknown.into()),
            Target::Forward { .. } => return Err(Unforwardable::OperatorToken.into()),
        };
        match self.deps.platform.check(credential) {
            Ok(_) => {}
            Err(OperatorRefusal::Revoked) => return Err(RefusalKind::TokenRevoked.into()),
            Err(_) => return Err(RefusalKind::TokenInvalidSignature.into()),
        }
        if !SigilMethod::from_id(method).is_some_and(SigilMethod::operator_may_call) {
            return Err(Refusal::new(RefusalKind::TenantOnly)
                .for_method(method)
                .into());
        }
        Ok(Verified {
            caller: Caller::Operator,
            routed_method: None,
            limits: None,
        })
    }

    /// Stage 1 within the target's reach. Introspection reaches the caller's tenant only:
    /// a token of another tenant is answered like an unknown one without being verified,
    /// so the plugin learns nothing about it (not even why it would be refused), and no
    /// use or refusal is recorded for it. A cached principal names its tenant; otherwise
    /// the token's claim does, before anything is verified.
    async fn principal_in_reach(
        &self,
        credential: &str,
        target: Target<'_>,
        presenter: Presenter<'_>,
    ) -> Result<Option<Arc<Principal>>, Denied> {
        let Target::Introspection { tenant, .. } = target else {
            return Ok(self.principal_from(credential, presenter).await?);
        };
        let key = sha256(credential.as_bytes());
        if let Some(Ok(p)) = self.caches.lookup(&key, self.deps.registry.version()) {
            if p.tenant_id != tenant {
                return Err(RefusalKind::TokenUnknown.into());
            }
            self.stats.hit();
            tracing::Span::current().record("cache", "hit");
            return Ok(Some(p));
        }
        let claimed = jwt::inspect(credential).ok().and_then(|u| u.tenant);
        if claimed.is_some_and(|t| t != tenant) {
            return Err(RefusalKind::TokenUnknown.into());
        }
        Ok(self.principal_from(credential, presenter).await?)
    }

    /// Stage 1: the principal behind a credential (cached), `None` when it is not a tenant
    /// token (maybe the operator's).
    pub async fn principal_for(&self, credential: &str) -> Result<Option<Arc<Principal>>, Refusal> {
        self.principal_from(credential, Presenter::default()).await
    }

    async fn principal_from(
        &self,
        credential: &str,
        presenter: Presenter<'_>,
    ) -> Result<Option<Arc<Principal>>, Refusal> {
        let key = sha256(credential.as_bytes());
        if let Some(cached) = self.caches.lookup(&key, self.deps.registry.version()) {
            self.stats.hit();
            tracing::Span::current().record("cache", "hit");
            return cached.map(Some);
        }
        self.stats.miss();
        tracing::Span::current().record("cache", "miss");
        self.resolve(credential, &key, presenter).await
    }

    /// A cache miss: full checks; the outcome is cached unless a change ran meanwhile.
    async fn resolve(
        &self,
        credential: &str,
        key: &CacheKey,
        presenter: Presenter<'_>,
    ) -> Result<Option<Arc<Principal>>, Refusal> {
        let epoch = self.caches.epoch();
        // Boxed: the database futures are several kilobytes, and every request's future
        // (hits included) would otherwise carry them and be copied with them.
        let loaded = Box::pin(
            self.load(credential, key, epoch, presenter)
                .instrument(tracing::debug_span!("db", op = "verification.load")),
        )
        .await;
        match loaded {
            Ok(Some(p)) => {
                let p = Arc::new(p);
                self.caches.keep_principal(key, &p, epoch);
                Ok(Some(p))
            }
            Ok(None) => Ok(None),
            Err(LoadError::Refused(r)) => {
                self.caches.keep_refusal(key, &r, epoch);
                Err(r)
            }
            Err(LoadError::Unavailable) => {
                Err(Refusal::new(RefusalKind::ServiceUnavailable)
                    .retry_after(UNAVAILABLE_RETRY_SECS))
            }
        }
    }

    /// The tenant (cached); `epoch` is the invalidation epoch the miss started from, so a
    /// tenant read across an invalidation is used once but not kept.
    async fn tenant(&self, id: TenantId, epoch: u64) -> Result<Option<Arc<TenantEntry>>, Error> {
        if let Some(t) = self.caches.tenant(id) {
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
        self.caches.keep_tenant(id, &entry, epoch);
        Ok(Some(entry))
    }

    /// Checks the JWT and loads the token and its owner. `Ok(None)`: not a tenant token.
    async fn load(
        &self,
        credential: &str,
        hash: &CacheKey,
        epoch: u64,
        presenter: Presenter<'_>,
    ) -> Result<Option<Principal>, LoadError> {
        let malformed = || Refusal::new(RefusalKind::TokenMalformed);
        let unverified = jwt::inspect(credential).map_err(|_| malformed())?;
        if unverified.kid.starts_with("op-") {
            return Ok(None);
        }
        let tenant_id = unverified.tenant.ok_or_else(malformed)?;
        // Before the signature verifies, the tenant claim is only a claim: a refusal keeps
        // it for cache invalidation but is not filed under that tenant.
        let claimed = |kind: RefusalKind| Refusal::new(kind).claimed_by(tenant_id);
        let tenant = self
            .tenant(tenant_id, epoch)
            .await?
            .ok_or_else(|| claimed(RefusalKind::TokenInvalidSignature))?;
        let key = self
            .deps
            .keys
            .verification_key(tenant_id, &unverified.kid)
            .await?
            .ok_or_else(|| claimed(RefusalKind::TokenInvalidSignature))?;
        let claims = jwt::verify(credential, &key, tenant_id).map_err(|e| {
            claimed(match e {
                jwt::VerifyError::Signature => RefusalKind::TokenInvalidSignature,
                jwt::VerifyError::Expired => RefusalKind::TokenExpired,
                jwt::VerifyError::NotYetValid => RefusalKind::TokenNotYetValid,
                jwt::VerifyError::Malformed => RefusalKind::TokenMalformed,
            })
        })?;
        if !tenant.enabled {
            return Err(Refusal::new(RefusalKind::TenantDisabled)
                .about(Some(tenant_id), None, None)
                .verified()
                .into());
        }
        let (token_id, generation) =
            jwt::parse_jti(&claims.jti).ok_or_else(|| claimed(RefusalKind::TokenMalformed))?;
        let on_token = |kind: RefusalKind| {
            Refusal::new(kind)
                .about(Some(tenant_id), None, Some(token_id))
                .verified()
        };
        let record = self
            .loader
            .load(tenant_id, token_id)
            .await?
            .ok_or_else(|| on_token(RefusalKind::TokenUnknown))?;
        let now = Utc::now();
        let current = generation == record.generation && hash_matches(&record.secret_hash, hash);
        let in_grace = generation + 1 == record.generation
            && record.prev_valid_until.is_some_and(|t| t > now)
            && record
                .prev_secret_hash
                .as_deref()
                .is_some_and(|h| hash_matches(h, hash));
        if !current && !in_grace {
            return Err(self
                .replaced(&tenant.policy, &record, generation, now, presenter)
                .await?
                .into());
        }
        if let Some(kind) = revocation(&record) {
            return Err(on_token(kind).into());
        }
        if !record.enabled {
            return Err(on_token(RefusalKind::TokenDisabled).into());
        }
        if record.expires_at.is_some_and(|t| t <= now) {
            return Err(on_token(RefusalKind::TokenExpired).into());
        }
        let on_owner = |kind: RefusalKind| {
            Refusal::new(kind)
                .about(Some(tenant_id), Some(record.owner_id), Some(token_id))
                .verified()
        };
        if !record.active || record.is_system {
            return Err(on_owner(RefusalKind::UserDeactivated).into());
        }
        if !record.api_access {
            return Err(on_owner(RefusalKind::ApiAccessDenied).into());
        }
        let role = Role::parse(&record.role)?;
        let user_kind = UserKind::parse(&record.user_kind)?;
        let snapshot = self.deps.registry.current();
        let mut token_scope = scope::resolve_lenient(
            &snapshot,
            &self.deps.sets,
            tenant_id,
            &scope_from(&record.kind, &record.scope_set, &record.scope_methods),
        )
        .await?;
        if let Some(ceiling) = ceiling::from_stored(&snapshot, tenant_id, record.ceiling.as_deref())
        {
            token_scope.intersect_with(&ceiling);
        }
        let rights = token_scope.intersect(&role_rights(&snapshot, tenant_id.0, role));
        // The stored expiry is the truth online; the JWT's `exp` is for offline checks.
        let mut expires_at = record.expires_at;
        if in_grace {
            expires_at = record
                .prev_valid_until
                .map(|g| expires_at.map_or(g, |t| t.min(g)));
        }
        let token_kind = TokenKind::parse(&record.kind).map_err(|_| malformed())?;
        let limits = usage_limits(&record, &tenant.policy);
        Ok(Some(Principal {
            tenant_id,
            tenant_slug: Arc::clone(&tenant.slug),
            user_id: record.owner_id,
            ip_filter: parse_ip_filter(&record.ip_filter),
            username: record.username.into_boxed_str(),
            user_kind,
            role,
            token_id,
            token_kind,
            expires_at,
            elevated_until: record.elevated_until,
            scope: self.sets.intern(token_scope),
            rights: self.sets.intern(rights),
            tenant_nets: Arc::clone(&tenant.nets),
            policy: Arc::clone(&tenant.policy),
            grace_until: record.prev_valid_until.filter(|_| in_grace),
            registry_version: snapshot.version(),
            loaded_epoch: epoch,
            limits,
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
        record: &MissRow,
        generation: i32,
        now: DateTime<Utc>,
        presenter: Presenter<'_>,
    ) -> Result<Refusal, Error> {
        let about = |kind: RefusalKind| {
            Refusal::new(kind)
                .about(
                    Some(record.tenant_id),
                    Some(record.owner_id),
                    Some(record.id),
                )
                .verified()
        };
        if record.revoked_at.is_some() {
            let reused = record.revoked_reason.as_deref() == Some(leaks::REUSE_DETECTED);
            return Ok(about(if reused {
                RefusalKind::TokenReuseDetected
            } else {
                RefusalKind::TokenReplaced
            }));
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
            return Ok(about(RefusalKind::TokenReplaced));
        }
        let by = Actor {
            credential: Some(record.id),
            ..Actor::system("reuse detection", record.tenant_id)
        }
        .from_client(
            presenter.ip.map(|ip| ip.to_string()),
            presenter
                .user_agent
                .map(|ua| ua.chars().take(400).collect()),
        );
        let first =
            leaks::revoke_for_reuse(&self.deps.db, record.tenant_id, record.id, &by).await?;
        let refusal = about(RefusalKind::TokenReuseDetected);
        if !first {
            return Ok(refusal);
        }
        let change = Change::Token {
            tenant: record.tenant_id,
            token: record.id,
        };
        match self.changes.as_ref().and_then(std::sync::Weak::upgrade) {
            Some(feed) => feed.publish(change).await,
            None => self.apply(&change),
        }
        Ok(refusal)
    }
}

/// The refusal of a revoked token: reuse detection and a reported leak have codes of
/// their own (a token revoked by reuse detection refuses its newest secret the same way).
fn revocation(record: &MissRow) -> Option<RefusalKind> {
    record.revoked_at?;
    Some(match record.revoked_reason.as_deref() {
        Some(leaks::REUSE_DETECTED) => RefusalKind::TokenReuseDetected,
        Some(leaks::LEAKED) => RefusalKind::TokenLeaked,
        _ => RefusalKind::TokenRevoked,
    })
}

/// A cached principal may outlive its expiry by the cache's lifetime: checked per request.
fn check_expiry(p: &Principal, now: DateTime<Utc>) -> Result<(), Refusal> {
    if p.expires_at.is_some_and(|t| t <= now) {
        return Err(Refusal::new(RefusalKind::TokenExpired).on(p));
    }
    Ok(())
}

fn check_transport(p: &Principal, transport: Transport) -> Result<(), Refusal> {
    if transport == Transport::QueryOrForm && !p.policy.allow_query_credentials {
        return Err(Refusal::new(RefusalKind::TransportNotAllowed));
    }
    Ok(())
}

/// The client address against the token's filter, then the tenant's allowlist (an empty
/// one allows every address). An unreadable token filter refuses even an unstated client.
fn check_client(p: &Principal, client: Client) -> Result<(), Refusal> {
    let refused = || Refusal::new(RefusalKind::IpNotAllowed).on(p);
    let Some(token_nets) = p.ip_filter.as_deref() else {
        return Err(refused());
    };
    let Client::At(ip) = client else {
        return Ok(());
    };
    for nets in [token_nets, &*p.tenant_nets] {
        if !nets.is_empty() && !ip.is_some_and(|ip| nets.iter().any(|n| n.contains(&ip))) {
            return Err(refused());
        }
    }
    Ok(())
}

/// The registry method a forwarded request maps to, among the routes the principal's
/// tenant sees.
fn route_method(
    snapshot: &Snapshot,
    p: &Principal,
    verb: &str,
    path: &str,
) -> Result<String, Unforwardable> {
    let idx = snapshot
        .route(Some(p.tenant_id.0), verb, path)
        .ok_or(Unforwardable::NoRoute)?;
    Ok(snapshot.method(idx).id.clone())
}

/// Whether the principal may call `method`: Sigil's operator-only methods are refused to
/// every tenant token; otherwise the method must be in the token's rights.
fn check_method(snapshot: &Snapshot, p: &Principal, method: &str) -> Result<u32, Refusal> {
    if SigilMethod::from_id(method).is_some_and(SigilMethod::operator_only) {
        return Err(Refusal::new(RefusalKind::OperatorOnly).for_method(method));
    }
    let Some(idx) = snapshot.lookup(Some(p.tenant_id.0), method) else {
        return Err(Refusal::new(RefusalKind::MethodNotInScope).for_method(method));
    };
    if p.rights.contains(idx) {
        return Ok(snapshot.method(idx).cost);
    }
    let kind = if p.scope.contains(idx) {
        RefusalKind::UserLacksPermission
    } else {
        RefusalKind::MethodNotInScope
    };
    Err(Refusal::new(kind).on(p).for_method(method))
}

/// The token's usage limits as verification enforces them: its own rate limits or the
/// tenant's defaults for tokens, its owner's or the tenant's defaults for owners, and
/// its credits. Login sessions have none.
fn usage_limits(record: &MissRow, policy: &TenantPolicy) -> Option<Arc<UsageLimits>> {
    // A login session is the person at the console, not a token they handed out: the
    // limits are for the tokens.
    if record.kind == TokenKind::Session.as_str() {
        return None;
    }
    let own = crate::credits::stored_limits(record.rate_limits.as_deref());
    let token = if own.is_empty() {
        policy.default_token_rate_limits.clone()
    } else {
        own
    };
    let owners = crate::credits::stored_limits(record.owner_rate_limits.as_deref());
    let owner = if owners.is_empty() {
        policy.default_owner_rate_limits.clone()
    } else {
        owners
    };
    let credits = crate::credits::stored_state(
        record.credits_remaining,
        record.credits_refill.as_deref(),
        record.credits_refilled_at,
        record.credits_version,
        record.created_at,
    );
    UsageLimits::of(token, owner, credits)
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

/// Compares a stored hex SHA-256 with a credential's hash in constant time.
fn hash_matches(stored_hex: &str, hash: &[u8; 32]) -> bool {
    let mut stored = [0u8; 32];
    hex::decode_to_slice(stored_hex, &mut stored).is_ok() && ct_eq(&stored, hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::fixture;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn net(text: &str) -> IpNet {
        sigil_tenant::policy::parse_ip_net(text).unwrap()
    }

    fn principal() -> Principal {
        fixture::principal(TokenKind::Personal)
    }

    fn miss_row() -> MissRow {
        MissRow {
            id: sigil_core::TokenId::new(),
            tenant_id: TenantId::new(),
            owner_id: sigil_core::UserId::new(),
            kind: "personal".into(),
            scope_set: None,
            scope_methods: None,
            expires_at: None,
            ip_filter: "[]".into(),
            enabled: true,
            generation: 1,
            secret_hash: String::new(),
            prev_secret_hash: None,
            prev_valid_until: None,
            elevated_until: None,
            revoked_at: None,
            revoked_reason: None,
            ceiling: None,
            self_rotated_from: None,
            username: "admin".into(),
            user_kind: "person".into(),
            role: "admin".into(),
            api_access: true,
            active: true,
            is_system: false,
            rate_limits: None,
            credits_remaining: None,
            credits_refill: None,
            credits_refilled_at: None,
            credits_version: 0,
            created_at: chrono::Utc::now(),
            owner_rate_limits: None,
        }
    }

    #[test]
    fn ip_filters_parse_cidrs_and_addresses() {
        let parsed = parse_ip_filter(r#"["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]"#);
        assert_eq!(
            parsed.as_deref(),
            Some(&[net("10.0.0.0/8"), net("192.0.2.7/32"), net("2001:db8::/32")][..])
        );
        assert_eq!(parse_ip_filter("[]").as_deref(), Some(&[][..]));
    }

    #[test]
    fn an_unreadable_ip_filter_is_none() {
        assert_eq!(parse_ip_filter("not json"), None);
        assert_eq!(parse_ip_filter(r#"["10.0.0.0/8", "nonsense"]"#), None);
        assert_eq!(parse_ip_filter(r#"{"a": 1}"#), None);
    }

    #[test]
    fn hashes_compare_by_value() {
        let hash = sha256(b"secret");
        assert!(hash_matches(&hex::encode(hash), &hash));
        assert!(hash_matches(&hex::encode(hash).to_uppercase(), &hash));
        assert!(!hash_matches(&hex::encode(sha256(b"other")), &hash));
        assert!(!hash_matches("not hex", &hash));
        assert!(!hash_matches(&hex::encode(&hash[..31]), &hash));
    }

    #[test]
    fn the_token_filter_and_the_tenant_allowlist_both_apply() {
        let mut p = principal();
        assert!(
            check_client(&p, Client::At(None)).is_ok(),
            "no filter at all"
        );
        p.ip_filter = Some(Box::new([net("10.0.0.0/8")]));
        assert!(check_client(&p, Client::At(Some(ip("10.1.2.3")))).is_ok());
        let refused = check_client(&p, Client::At(Some(ip("192.0.2.1"))));
        assert_eq!(
            refused.map_err(|r| r.kind()),
            Err(RefusalKind::IpNotAllowed)
        );
        assert!(
            check_client(&p, Client::At(None)).is_err(),
            "an unknown address is refused by a filter"
        );
        assert!(check_client(&p, Client::Unstated).is_ok());
        p.tenant_nets = Arc::new([net("10.9.0.0/16")]);
        assert!(check_client(&p, Client::At(Some(ip("10.1.2.3")))).is_err());
        assert!(check_client(&p, Client::At(Some(ip("10.9.0.1")))).is_ok());
    }

    #[test]
    fn an_unreadable_filter_refuses_every_client() {
        let mut p = principal();
        p.ip_filter = None;
        for client in [Client::Unstated, Client::At(Some(ip("10.0.0.1")))] {
            let refused = check_client(&p, client).map_err(|r| (r.kind(), r.token_id()));
            assert_eq!(
                refused,
                Err((RefusalKind::IpNotAllowed, Some(p.token_id))),
                "{client:?}"
            );
        }
    }

    #[test]
    fn query_credentials_follow_the_tenant_policy() {
        let mut p = principal();
        assert!(check_transport(&p, Transport::QueryOrForm).is_ok());
        p.policy = Arc::new(TenantPolicy {
            allow_query_credentials: false,
            ..TenantPolicy::default()
        });
        assert!(check_transport(&p, Transport::Header).is_ok());
        let refused = check_transport(&p, Transport::QueryOrForm);
        assert_eq!(
            refused.map_err(|r| r.kind()),
            Err(RefusalKind::TransportNotAllowed)
        );
    }

    #[test]
    fn an_expired_principal_is_refused_about_its_token() {
        let mut p = principal();
        let now = Utc::now();
        assert!(check_expiry(&p, now).is_ok());
        p.expires_at = Some(now);
        let refused = check_expiry(&p, now).map_err(|r| (r.kind(), r.token_id()));
        assert_eq!(refused, Err((RefusalKind::TokenExpired, Some(p.token_id))));
        p.expires_at = Some(now + chrono::Duration::seconds(1));
        assert!(check_expiry(&p, now).is_ok());
    }

    #[test]
    fn revocations_name_their_reason() {
        let row = |revoked: bool, reason: Option<&str>| MissRow {
            revoked_at: revoked.then(Utc::now),
            revoked_reason: reason.map(str::to_owned),
            ..miss_row()
        };
        assert_eq!(revocation(&row(false, None)), None);
        assert_eq!(
            revocation(&row(true, None)),
            Some(RefusalKind::TokenRevoked)
        );
        assert_eq!(
            revocation(&row(true, Some(leaks::LEAKED))),
            Some(RefusalKind::TokenLeaked)
        );
        assert_eq!(
            revocation(&row(true, Some(leaks::REUSE_DETECTED))),
            Some(RefusalKind::TokenReuseDetected)
        );
    }

    /// A registry of three of Sigil's methods.
    fn snapshot() -> Snapshot {
        use sigil_scope_registry::{
            Access, HttpRoute, ManifestMethod, PluginManifest, RegisteredPlugin,
        };
        let method = |id: &str, verb: &str, path: &str| ManifestMethod {
            id: id.into(),
            http: HttpRoute::new(verb, path),
            access: Access::for_http_method(verb),
            description: String::new(),
            docs_url: None,
            cost: 1,
        };
        let manifest = PluginManifest {
            id: "sigil".into(),
            name: "Sigil".into(),
            version: "1".into(),
            description: None,
            docs_url: None,
            methods: vec![
                method("me.get", "GET", "/api/v1/users/me"),
                method("tokens.list", "GET", "/api/v1/tokens"),
                method("tokens.create", "POST", "/api/v1/tokens"),
            ],
            scope_sets: vec![],
        };
        Snapshot::build(vec![RegisteredPlugin::global(manifest)]).unwrap()
    }

    /// A principal whose token's scope is me.get and tokens.list, and whose role allows
    /// only me.get of them.
    fn scoped(snapshot: &Snapshot) -> Principal {
        let mut p = principal();
        for (id, allowed) in [("me.get", true), ("tokens.list", false)] {
            let idx = snapshot.lookup(None, id).unwrap();
            Arc::make_mut(&mut p.scope).insert(idx);
            if allowed {
                Arc::make_mut(&mut p.rights).insert(idx);
            }
        }
        p
    }

    fn method_refusal(
        snapshot: &Snapshot,
        p: &Principal,
        method: &str,
    ) -> Option<(RefusalKind, bool, String)> {
        check_method(snapshot, p, method)
            .err()
            .map(|r| (r.kind(), r.token_id().is_some(), r.explanation()))
    }

    #[test]
    fn methods_are_checked_against_scope_and_rights() {
        let snapshot = snapshot();
        let p = scoped(&snapshot);
        assert_eq!(method_refusal(&snapshot, &p, "me.get"), None);
        let lacks = method_refusal(&snapshot, &p, "tokens.list");
        assert_eq!(
            lacks,
            Some((
                RefusalKind::UserLacksPermission,
                true,
                "the token's user is not allowed to call this method: tokens.list".into()
            ))
        );
        let outside = method_refusal(&snapshot, &p, "tokens.create");
        assert_eq!(
            outside.map(|(k, about_token, _)| (k, about_token)),
            Some((RefusalKind::MethodNotInScope, true))
        );
    }

    #[test]
    fn unknown_and_operator_methods_are_refused_without_naming_the_token() {
        let snapshot = snapshot();
        let p = scoped(&snapshot);
        let unknown = method_refusal(&snapshot, &p, "nowhere.at_all");
        assert_eq!(
            unknown.map(|(k, about_token, _)| (k, about_token)),
            Some((RefusalKind::MethodNotInScope, false))
        );
        let operator = method_refusal(&snapshot, &p, SigilMethod::CreateTenant.id());
        assert_eq!(
            operator.map(|(k, about_token, _)| (k, about_token)),
            Some((RefusalKind::OperatorOnly, false))
        );
    }

    #[test]
    fn forwarded_requests_map_to_their_route_method() {
        let snapshot = snapshot();
        let p = scoped(&snapshot);
        assert_eq!(
            route_method(&snapshot, &p, "GET", "/api/v1/users/me").as_deref(),
            Ok("me.get")
        );
        assert_eq!(
            route_method(&snapshot, &p, "DELETE", "/api/v1/users/me"),
            Err(Unforwardable::NoRoute)
        );
        assert_eq!(
            route_method(&snapshot, &p, "GET", "/nowhere"),
            Err(Unforwardable::NoRoute)
        );
    }

    #[test]
    fn forward_auth_answers_keep_their_codes() {
        assert_eq!(Unforwardable::OperatorToken.code(), "tenant_only");
        assert_eq!(Unforwardable::NoRoute.code(), "route_not_registered");
        assert!(matches!(
            Error::from(Unforwardable::NoRoute),
            Error::Forbidden {
                code: "route_not_registered",
                ..
            }
        ));
    }
}
