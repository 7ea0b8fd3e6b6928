//! The verification pipeline (hot path). A credential is hashed and looked up in a moka
//! cache; on a miss the JWT is checked against the key of the tenant it names, then the
//! token record and its owner are loaded, and the effective rights (scope ∩ role) are
//! compiled once. Per-request checks (transport, client IP, method) run on every call.
//! Refusals that do not depend on the request are cached too, so a flood of garbage never
//! reaches the database.
//!
//! [`Verifier::verify`] is the one entry point: API calls, introspection and forward auth
//! differ only in the [`Target`] of their [`Attempt`].

mod cache;
mod interner;
mod pipeline;
mod refusal;
mod stats;

use std::sync::{Arc, Weak};

use ipnet::IpNet;
use sigil_core::changes::{Change, ChangeFeed};
use sigil_core::crypto::sha256;
use sigil_core::db::Db;
use sigil_scope_registry::store::ScopeSetStore;
use sigil_scope_registry::Registry;
use sigil_tenant::platform::PlatformKey;
use sigil_tenant::{KeyRing, TenantService};
use tracing::field::Empty;
use tracing::Instrument;

pub use self::cache::CacheSettings;
pub use self::pipeline::{Attempt, Client, Denied, Target, Transport, Unforwardable, Verified};
pub use self::refusal::{LimitRefusal, Refusal, RefusalKind, RefusalStatus};
pub use self::stats::{Outcome, VerifyStats};
pub use crate::principal::{Caller, Principal};

use self::cache::Caches;
use self::interner::SetInterner;
use crate::loader::MissLoader;
use crate::usage::UsageRecorder;

#[derive(Clone)]
pub struct VerifierDeps {
    pub db: Db,
    pub tenants: TenantService,
    pub keys: KeyRing,
    pub platform: Arc<PlatformKey>,
    pub registry: Arc<Registry>,
    pub sets: ScopeSetStore,
    pub usage: UsageRecorder,
    /// Rate-limit counters and credit balances (in the process, or shared through Redis).
    pub limiter: sigil_limits::Limiter,
}

#[derive(Clone)]
pub struct Verifier {
    deps: VerifierDeps,
    loader: MissLoader,
    caches: Caches,
    /// The scopes and rights of cached principals, shared.
    sets: Arc<SetInterner>,
    trusted_proxies: Arc<[IpNet]>,
    stats: Arc<VerifyStats>,
    /// Where a revocation by reuse detection is published (every replica's caches). Weak:
    /// the feed's handlers hold this verifier, and a cycle would keep both (and the
    /// database pool) alive forever.
    changes: Option<Weak<ChangeFeed>>,
}

impl Verifier {
    pub fn new(deps: VerifierDeps, cache: CacheSettings, trusted_proxies: Vec<IpNet>) -> Self {
        Self {
            loader: MissLoader::new(deps.db.clone()),
            deps,
            caches: Caches::new(&cache),
            sets: Arc::default(),
            trusted_proxies: trusted_proxies.into(),
            stats: Arc::default(),
            changes: None,
        }
    }

    /// Publishes the revocations of reuse detection on `changes` (to every replica);
    /// without it they reach this verifier's caches only.
    pub fn with_change_feed(mut self, changes: &Arc<ChangeFeed>) -> Self {
        self.changes = Some(Arc::downgrade(changes));
        self
    }

    /// Verifies a credential for one request: every stage of the pipeline, then the
    /// outcome is counted and recorded on the `verify` span. Records the use when allowed.
    pub async fn verify(&self, attempt: Attempt<'_>) -> Result<Verified, Denied> {
        // Only static strings are recorded, so a cache hit allocates nothing for tracing.
        let span = tracing::debug_span!("verify", outcome = Empty, cache = Empty);
        let result = self.run(attempt).instrument(span.clone()).await;
        let outcome = match &result {
            Ok(_) => Some(Outcome::Allowed),
            Err(Denied::Refused(r)) => Some(Outcome::Refused(r.kind())),
            Err(Denied::Unforwardable(_)) => None,
        };
        if let Some(outcome) = outcome {
            self.stats.count(outcome);
            span.record("outcome", outcome.label());
        }
        result
    }

    pub fn trusted_proxies(&self) -> &[IpNet] {
        &self.trusted_proxies
    }

    /// Outcome and cache counters.
    pub fn stats(&self) -> &VerifyStats {
        &self.stats
    }

    /// Drops the cached outcome of one credential: its next use is verified in full.
    pub fn forget(&self, credential: &str) {
        self.caches.forget(&sha256(credential.as_bytes()));
    }

    /// Verified credentials held in the cache.
    pub fn cached_entries(&self) -> u64 {
        self.caches.principals()
    }

    /// Drops every cache entry a change can affect.
    pub fn apply(&self, change: &Change) {
        // Keys first: a miss that starts after the entries are dropped reads fresh keys.
        match *change {
            Change::Keys { tenant } => self.deps.keys.invalidate_tenant(tenant),
            Change::All => self.deps.keys.invalidate_all(),
            _ => {}
        }
        self.caches.apply(change);
    }
}
