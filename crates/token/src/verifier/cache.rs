//! The verifier's caches: principals and refusals by credential hash, tenants by id, and
//! the invalidation stamps that make a change exact. A change moves the epoch; an entry
//! loaded before the last change to anything it depends on is a miss, and a miss computed
//! across a change is used once but not kept.
//!
//! Principals are held in `quick_cache`, not moka: moka costs about 400 bytes per entry
//! on its own (the benchmark target is 512 for a whole cached verification), this one
//! about 100. It has no time-to-live or predicate invalidation, and needs neither: an
//! entry past its lifetime or older than a stamp is a miss and is dropped on sight.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use ipnet::IpNet;
use moka::sync::Cache;
use sigil_core::changes::Change;
use sigil_core::{TenantId, TokenId, UserId};
use sigil_tenant::TenantPolicy;

use super::refusal::Refusal;
use crate::principal::Principal;

/// The SHA-256 of a credential.
pub(super) type CacheKey = [u8; 32];

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

/// What verification needs of a tenant, loaded once and shared by the principals of the
/// tenant (one policy in memory per tenant, not per cached token).
pub(super) struct TenantEntry {
    pub slug: Arc<str>,
    pub enabled: bool,
    pub policy: Arc<TenantPolicy>,
    pub nets: Arc<[IpNet]>,
}

/// A verified principal and when it stops being used without a new load.
#[derive(Clone)]
struct HeldPrincipal {
    principal: Arc<Principal>,
    until: Instant,
}

/// A refusal that does not depend on the request, with the epoch it was computed at.
#[derive(Clone)]
struct CachedRefusal {
    refusal: Refusal,
    loaded_epoch: u64,
}

/// What a change touched, for the invalidation stamps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Stamp {
    Token(TokenId),
    User(UserId),
    Tenant(TenantId),
    All,
}

impl Stamp {
    fn of(change: &Change) -> Self {
        match *change {
            Change::Token { token, .. } => Stamp::Token(token),
            Change::User { user, .. } => Stamp::User(user),
            Change::Tenant { tenant } | Change::Keys { tenant } => Stamp::Tenant(tenant),
            Change::Registry { .. } | Change::All => Stamp::All,
        }
    }
}

#[derive(Clone)]
pub(super) struct Caches {
    principals: Arc<quick_cache::sync::Cache<CacheKey, HeldPrincipal>>,
    principal_ttl: Duration,
    refusals: Cache<CacheKey, CachedRefusal>,
    /// Tenants by id (dropped by the same changes as the principals of the tenant).
    tenants: Cache<TenantId, Arc<TenantEntry>>,
    /// Moves on every invalidation.
    epoch: Arc<AtomicU64>,
    /// The epoch of the last change to each token, user and tenant (and to everything),
    /// kept as long as a cached entry can be older: a hit loaded before it is a miss.
    stamps: Cache<Stamp, u64>,
}

impl Caches {
    pub fn new(settings: &CacheSettings) -> Self {
        Self {
            principals: Arc::new(quick_cache::sync::Cache::new(
                usize::try_from(settings.max_entries).unwrap_or(usize::MAX),
            )),
            principal_ttl: settings.ttl,
            refusals: Cache::builder()
                .max_capacity(settings.negative_max_entries)
                .time_to_live(settings.negative_ttl)
                .support_invalidation_closures()
                .build(),
            tenants: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(settings.ttl)
                .build(),
            epoch: Arc::new(AtomicU64::new(0)),
            stamps: Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(settings.ttl.max(settings.negative_ttl) + Duration::from_secs(1))
                .build(),
        }
    }

    /// The current epoch: a miss notes it before loading and passes it to the `keep_*`.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The cached outcome of a credential, if it still stands: nothing it depends on
    /// changed since it was loaded, and (a principal) its rights were compiled against
    /// `registry_version` and its grace period, if any, has not ended.
    pub fn lookup(
        &self,
        key: &CacheKey,
        registry_version: u64,
    ) -> Option<Result<Arc<Principal>, Refusal>> {
        if let Some(held) = self.principals.get(key) {
            let p = held.principal;
            let current = held.until > Instant::now()
                && p.registry_version == registry_version
                && p.grace_until.is_none_or(|t| t > Utc::now());
            let fresh = current
                && self.unchanged_since(
                    p.loaded_epoch,
                    Some(p.token_id),
                    Some(p.user_id),
                    Some(p.tenant_id),
                );
            if fresh {
                return Some(Ok(p));
            }
            // Dropped on sight, so the next presentation finds the refusal it earns (if
            // any) instead of loading again.
            self.principals.remove(key);
            return None;
        }
        let cached = self.refusals.get(key)?;
        let about = cached.refusal.concerns();
        self.unchanged_since(cached.loaded_epoch, about.token, about.user, about.tenant)
            .then_some(Err(cached.refusal))
    }

    pub fn keep_principal(&self, key: &CacheKey, p: &Arc<Principal>, epoch: u64) {
        if self.epoch() != epoch {
            return;
        }
        let held = HeldPrincipal {
            principal: Arc::clone(p),
            until: Instant::now() + self.principal_ttl,
        };
        self.principals.insert(*key, held);
        if self.epoch() != epoch {
            self.principals.remove(key);
        }
    }

    pub fn keep_refusal(&self, key: &CacheKey, refusal: &Refusal, epoch: u64) {
        let cached = CachedRefusal {
            refusal: refusal.clone(),
            loaded_epoch: epoch,
        };
        self.keep(&self.refusals, *key, cached, epoch);
    }

    pub fn tenant(&self, id: TenantId) -> Option<Arc<TenantEntry>> {
        self.tenants.get(&id)
    }

    pub fn keep_tenant(&self, id: TenantId, entry: &Arc<TenantEntry>, epoch: u64) {
        self.keep(&self.tenants, id, Arc::clone(entry), epoch);
    }

    /// Inserts, then looks at the epoch again: an invalidation that ran after the load
    /// either sees this entry (and drops it) or moved the epoch (and the entry is dropped
    /// here), so a stale entry never stays cached.
    fn keep<K, V>(&self, cache: &Cache<K, V>, key: K, value: V, epoch: u64)
    where
        K: std::hash::Hash + Eq + Send + Sync + Clone + 'static,
        V: Clone + Send + Sync + 'static,
    {
        if self.epoch() != epoch {
            return;
        }
        cache.insert(key.clone(), value);
        if self.epoch() != epoch {
            cache.invalidate(&key);
        }
    }

    /// Drops the cached outcome of one credential.
    pub fn forget(&self, key: &CacheKey) {
        self.principals.remove(key);
        self.refusals.invalidate(key);
    }

    /// Verified credentials held.
    pub fn principals(&self) -> u64 {
        self.principals.len() as u64
    }

    /// Drops every entry a change can affect.
    pub fn apply(&self, change: &Change) {
        // The stamp is written before any entry is dropped: a cached entry loaded before
        // this change is refused on its next hit even if an invalidation below missed it.
        let stamp = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        self.stamps.insert(Stamp::of(change), stamp);
        match *change {
            // Principals loaded before the change are misses by their stamps and are
            // dropped when next looked up; a scan of a large cache per change would cost
            // more than the memory it frees early.
            Change::Token { token, .. } => {
                let _ = self
                    .refusals
                    .invalidate_entries_if(move |_, r| r.refusal.concerns().token == Some(token));
            }
            Change::User { user, .. } => {
                let _ = self
                    .refusals
                    .invalidate_entries_if(move |_, r| r.refusal.concerns().user == Some(user));
            }
            Change::Tenant { tenant } | Change::Keys { tenant } => {
                self.tenants.invalidate(&tenant);
                let _ = self
                    .refusals
                    .invalidate_entries_if(move |_, r| r.refusal.concerns().tenant == Some(tenant));
            }
            Change::Registry { .. } => {
                self.principals.clear();
                self.refusals.invalidate_all();
            }
            Change::All => {
                self.tenants.invalidate_all();
                self.principals.clear();
                self.refusals.invalidate_all();
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
        // Every stamp is an epoch: while the epoch has not moved since the load, no stamp
        // can be newer, and the hit needs no stamp lookups.
        if self.epoch() <= loaded {
            return true;
        }
        let newer = |key: Stamp| self.stamps.get(&key).is_some_and(|s| s > loaded);
        !(newer(Stamp::All)
            || token.is_some_and(|t| newer(Stamp::Token(t)))
            || user.is_some_and(|u| newer(Stamp::User(u)))
            || tenant.is_some_and(|t| newer(Stamp::Tenant(t))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::fixture;
    use crate::verifier::refusal::RefusalKind;
    use crate::TokenKind;

    fn caches() -> Caches {
        Caches::new(&CacheSettings::default())
    }

    fn cached_principal(c: &Caches, key: u8) -> Arc<Principal> {
        let p = Arc::new(fixture::principal(TokenKind::Personal));
        c.keep_principal(&[key; 32], &p, c.epoch());
        p
    }

    fn hit(c: &Caches, key: u8) -> bool {
        c.lookup(&[key; 32], 0).is_some()
    }

    #[test]
    fn a_change_drops_what_it_touches_only() {
        let c = caches();
        let a = cached_principal(&c, 1);
        let b = cached_principal(&c, 2);
        assert!(hit(&c, 1) && hit(&c, 2));
        c.apply(&Change::Token {
            tenant: a.tenant_id,
            token: a.token_id,
        });
        assert!(!hit(&c, 1), "the changed token is a miss");
        assert!(hit(&c, 2), "another token stays cached");
        c.apply(&Change::User {
            tenant: b.tenant_id,
            user: b.user_id,
        });
        assert!(!hit(&c, 2));
    }

    #[test]
    fn a_tenant_change_drops_its_principals_and_the_tenant() {
        let c = caches();
        let p = cached_principal(&c, 1);
        let entry = Arc::new(TenantEntry {
            slug: "acme".into(),
            enabled: true,
            policy: Arc::default(),
            nets: Arc::new([]),
        });
        c.keep_tenant(p.tenant_id, &entry, c.epoch());
        assert!(c.tenant(p.tenant_id).is_some());
        c.apply(&Change::Keys {
            tenant: p.tenant_id,
        });
        assert!(!hit(&c, 1));
        assert!(c.tenant(p.tenant_id).is_none());
    }

    #[test]
    fn refusals_are_dropped_by_a_change_even_to_a_claimed_tenant() {
        let c = caches();
        let tenant = TenantId::new();
        let refusal = Refusal::new(RefusalKind::TokenInvalidSignature).claimed_by(tenant);
        c.keep_refusal(&[7; 32], &refusal, c.epoch());
        assert!(matches!(c.lookup(&[7; 32], 0), Some(Err(_))));
        c.apply(&Change::Tenant { tenant });
        assert!(c.lookup(&[7; 32], 0).is_none());
    }

    #[test]
    fn a_load_across_a_change_is_not_kept() {
        let c = caches();
        let before = c.epoch();
        c.apply(&Change::All);
        let p = Arc::new(fixture::principal(TokenKind::Personal));
        c.keep_principal(&[1; 32], &p, before);
        assert!(!hit(&c, 1));
    }

    #[test]
    fn an_entry_older_than_a_stamp_is_a_miss() {
        let c = caches();
        let mut p = fixture::principal(TokenKind::Personal);
        p.loaded_epoch = c.epoch();
        let p = Arc::new(p);
        c.apply(&Change::Token {
            tenant: p.tenant_id,
            token: p.token_id,
        });
        // Inserted as if the invalidation had missed it.
        let held = HeldPrincipal {
            principal: p,
            until: Instant::now() + Duration::from_secs(60),
        };
        c.principals.insert([1; 32], held);
        assert!(!hit(&c, 1));
    }

    #[test]
    fn a_principal_of_another_registry_or_past_its_grace_is_a_miss() {
        let c = caches();
        cached_principal(&c, 1);
        assert!(c.lookup(&[1; 32], 1).is_none());
        let mut p = fixture::principal(TokenKind::Personal);
        p.grace_until = Some(Utc::now() - chrono::Duration::seconds(1));
        c.keep_principal(&[2; 32], &Arc::new(p), c.epoch());
        assert!(!hit(&c, 2));
    }

    #[test]
    fn a_principal_past_its_lifetime_is_a_miss_and_is_dropped() {
        let c = Caches::new(&CacheSettings {
            ttl: Duration::ZERO,
            ..CacheSettings::default()
        });
        cached_principal(&c, 1);
        assert_eq!(c.principals(), 1);
        assert!(!hit(&c, 1));
        assert_eq!(c.principals(), 0, "dropped on sight");
    }

    #[test]
    fn a_changed_principal_is_dropped_when_next_looked_up() {
        let c = caches();
        let a = cached_principal(&c, 1);
        cached_principal(&c, 2);
        c.apply(&Change::Token {
            tenant: a.tenant_id,
            token: a.token_id,
        });
        assert!(!hit(&c, 1));
        assert_eq!(c.principals(), 1);
        c.apply(&Change::All);
        assert_eq!(c.principals(), 0);
    }

    #[test]
    fn forget_drops_one_credential() {
        let c = caches();
        cached_principal(&c, 1);
        cached_principal(&c, 2);
        c.forget(&[1; 32]);
        assert!(!hit(&c, 1) && hit(&c, 2));
        assert_eq!(c.principals(), 1);
    }
}
