//! In-process counters: one sliding window (and, with shared counting, one lease) per
//! limit key, in mutex-guarded shards chosen by holder so that one check locks at most
//! two shards (the token's and its owner's), always in shard order. Checking several
//! limits is all or nothing: every window is looked at under the locks before any is
//! charged. Counters whose window has fully passed are dropped by a sweep that each shard
//! runs now and then, which changes no answer.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use sigil_core::{TokenId, UserId};

use crate::key::{Holder, KeyHash, LimitKey};
use crate::spec::{RateLimit, MAX_LIMITS_PER_HOLDER};
use crate::state::{secs_ceil, LimitState, LimitStatus, MAX_LIMITS_PER_CHECK};
use crate::window::{SlidingWindow, WindowView};

/// How often a shard drops idle counters.
const SWEEP_EVERY_MS: u64 = 10_000;

/// One limit of one check.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Target {
    pub key: LimitKey,
    pub limit: u32,
    pub window_secs: u32,
    pub window_ms: u64,
}

impl Target {
    const EMPTY: Self = Self {
        key: LimitKey {
            holder: Holder::Token(TokenId(uuid::Uuid::nil())),
            name: crate::key::LimitName::EMPTY,
        },
        limit: 0,
        window_secs: 0,
        window_ms: 1,
    };

    fn new(holder: Holder, l: &RateLimit) -> Self {
        Self {
            key: LimitKey {
                holder,
                name: crate::key::LimitName::new(&l.name),
            },
            limit: l.limit,
            window_secs: l.window_secs,
            window_ms: l.window_ms(),
        }
    }

    /// The status for the headers from a view of the counter.
    pub fn status(&self, remaining: u64, reset_ms: u64) -> LimitStatus {
        LimitStatus {
            scope: self.key.holder.scope(),
            name: self.key.name,
            limit: self.limit,
            window_secs: self.window_secs,
            remaining: u32::try_from(remaining.min(u64::from(self.limit))).unwrap_or(u32::MAX),
            reset_secs: secs_ceil(reset_ms),
        }
    }
}

/// The limits of one check, inline. Only the first [`MAX_LIMITS_PER_HOLDER`] of each
/// holder count (validation never lets more be stored).
pub(crate) struct Targets {
    items: [Target; MAX_LIMITS_PER_CHECK],
    len: usize,
}

impl Targets {
    pub fn new(
        token: TokenId,
        owner: UserId,
        token_limits: &[RateLimit],
        owner_limits: &[RateLimit],
    ) -> Self {
        let mut t = Self {
            items: [Target::EMPTY; MAX_LIMITS_PER_CHECK],
            len: 0,
        };
        let token_limits = token_limits.iter().take(MAX_LIMITS_PER_HOLDER);
        let owner_limits = owner_limits.iter().take(MAX_LIMITS_PER_HOLDER);
        for l in token_limits {
            t.items[t.len] = Target::new(Holder::Token(token), l);
            t.len += 1;
        }
        for l in owner_limits {
            t.items[t.len] = Target::new(Holder::Owner(owner), l);
            t.len += 1;
        }
        t
    }

    pub fn as_slice(&self) -> &[Target] {
        &self.items[..self.len]
    }
}

/// Units a replica may spend without asking the shared counter, until `expires_ms`
/// (the end of the shared counter's bucket, on this replica's clock).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Lease {
    pub units: u64,
    pub expires_ms: u64,
    /// Units the shared counter still admitted beyond this lease when it was granted.
    pub others_remaining: u64,
    /// When the whole limit is back if nothing more is taken (this replica's clock).
    pub reset_at_ms: u64,
    /// The shared counter refused: it cannot admit before this even if nobody takes
    /// anything more, so until then refusals are answered here.
    pub refused_until_ms: u64,
}

impl Lease {
    fn usable(&self, now_ms: u64) -> bool {
        self.units > 0 && now_ms < self.expires_ms
    }

    fn refused(&self, now_ms: u64) -> bool {
        now_ms < self.refused_until_ms
    }

    fn status(&self, target: &Target, now_ms: u64) -> LimitStatus {
        target.status(
            self.others_remaining.saturating_add(self.units),
            self.reset_at_ms.saturating_sub(now_ms),
        )
    }
}

struct Counter {
    /// Without shared counting, the limit's counter. With it, what this replica admitted:
    /// the counter it falls back to while the shared one is unreachable.
    window: SlidingWindow,
    lease: Lease,
}

impl Counter {
    fn new(window_ms: u64) -> Self {
        Self {
            window: SlidingWindow::new(window_ms),
            lease: Lease::default(),
        }
    }

    fn is_idle(&self, now_ms: u64) -> bool {
        self.window.is_idle(now_ms) && !self.lease.usable(now_ms) && !self.lease.refused(now_ms)
    }
}

#[derive(Default)]
struct ShardMap {
    counters: HashMap<LimitKey, Counter, KeyHash>,
    next_sweep_ms: u64,
}

impl ShardMap {
    fn sweep(&mut self, now_ms: u64) {
        if now_ms >= self.next_sweep_ms {
            self.counters.retain(|_, c| !c.is_idle(now_ms));
            self.next_sweep_ms = now_ms.saturating_add(SWEEP_EVERY_MS);
        }
    }

    /// The counter of `target`, created (or restarted when its window changed) on demand.
    fn counter(&mut self, target: &Target) -> &mut Counter {
        let c = self
            .counters
            .entry(target.key)
            .or_insert_with(|| Counter::new(target.window_ms));
        if c.window.window_ms() != target.window_ms {
            *c = Counter::new(target.window_ms);
        }
        c
    }

    /// The view of `target`'s counter (empty when there is none yet or its window changed).
    fn view(&self, target: &Target, now_ms: u64) -> WindowView {
        match self.counters.get(&target.key) {
            Some(c) if c.window.window_ms() == target.window_ms => c.window.view(now_ms),
            _ => SlidingWindow::new(target.window_ms).view(now_ms),
        }
    }

    fn lease(&self, target: &Target) -> Option<&Lease> {
        self.counters
            .get(&target.key)
            .filter(|c| c.window.window_ms() == target.window_ms)
            .map(|c| &c.lease)
    }
}

/// Why an all-or-nothing take refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused<X> {
    /// A rate limit; the milliseconds until every refusing limit admits again.
    Rate { retry_after_ms: u64 },
    /// The extra step (credits) refused.
    Other(X),
}

/// What the leases answered.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Leased<X> {
    Taken,
    /// A shared counter refused recently and cannot admit yet.
    Refused {
        retry_after_ms: u64,
    },
    /// `also` refused.
    Other(X),
    /// The shared counters must be asked.
    Missing,
}

pub(crate) struct LocalCounters {
    shards: Box<[Mutex<ShardMap>]>,
}

/// The locked shards of one check, in shard order.
struct Locked<'a> {
    ids: [usize; MAX_LIMITS_PER_CHECK],
    guards: [Option<MutexGuard<'a, ShardMap>>; MAX_LIMITS_PER_CHECK],
    len: usize,
}

impl Locked<'_> {
    fn map(&mut self, shard: usize) -> Option<&mut ShardMap> {
        let i = self.ids[..self.len].iter().position(|s| *s == shard)?;
        self.guards[i].as_deref_mut()
    }
}

impl LocalCounters {
    pub fn new(shards: usize) -> Self {
        let shards = shards.max(1).next_power_of_two();
        Self {
            shards: (0..shards).map(|_| Mutex::default()).collect(),
        }
    }

    fn shard_of(&self, target: &Target) -> usize {
        target.key.holder.shard(self.shards.len())
    }

    fn lock_shard(&self, shard: usize) -> MutexGuard<'_, ShardMap> {
        // A panic elsewhere cannot leave a window half-updated in a way that matters.
        self.shards[shard]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Locks every shard the targets live in, in shard order (so two checks never wait on
    /// each other crosswise), and sweeps them.
    fn lock(&self, targets: &[Target], now_ms: u64) -> Locked<'_> {
        let mut ids = [0usize; MAX_LIMITS_PER_CHECK];
        let mut len = 0;
        for t in targets {
            let s = self.shard_of(t);
            if !ids[..len].contains(&s) {
                ids[len] = s;
                len += 1;
            }
        }
        ids[..len].sort_unstable();
        let mut guards: [Option<MutexGuard<'_, ShardMap>>; MAX_LIMITS_PER_CHECK] =
            Default::default();
        for (slot, id) in guards.iter_mut().zip(&ids[..len]) {
            let mut g = self.lock_shard(*id);
            g.sweep(now_ms);
            *slot = Some(g);
        }
        Locked { ids, guards, len }
    }

    /// Admits one request against the local windows, each limit divided by `divisor`
    /// (rounded up; 1 without shared counting), then runs `also` (the credits) under the
    /// same locks; charges the windows only if every limit admits and `also` succeeds.
    /// Fills `state` either way.
    pub fn take<X>(
        &self,
        targets: &Targets,
        now_ms: u64,
        divisor: u32,
        state: &mut LimitState,
        also: impl FnOnce() -> Result<(), X>,
    ) -> Result<(), Refused<X>> {
        let targets = targets.as_slice();
        let mut locked = self.lock(targets, now_ms);
        let divisor = u64::from(divisor.max(1));
        let mut retry_after_ms = 0;
        let mut refused = false;
        for t in targets {
            let Some(map) = locked.map(self.shard_of(t)) else {
                continue;
            };
            let limit = share(t, divisor);
            let view = map.view(t, now_ms);
            if !view.admits(1, limit) {
                refused = true;
                retry_after_ms = retry_after_ms.max(view.retry_after_ms(1, limit));
            }
        }
        if !refused {
            if let Err(x) = also() {
                for t in targets {
                    if let Some(map) = locked.map(self.shard_of(t)) {
                        let view = map.view(t, now_ms);
                        state.push(
                            t.status(view.remaining(share(t, divisor)), view.reset_after_ms()),
                        );
                    }
                }
                return Err(Refused::Other(x));
            }
        }
        for t in targets {
            let Some(map) = locked.map(self.shard_of(t)) else {
                continue;
            };
            let limit = share(t, divisor);
            let view = if refused {
                map.view(t, now_ms)
            } else {
                let c = map.counter(t);
                c.window.record(now_ms, 1);
                c.window.view(now_ms)
            };
            state.push(t.status(view.remaining(limit), view.reset_after_ms()));
        }
        if refused {
            Err(Refused::Rate { retry_after_ms })
        } else {
            Ok(())
        }
    }

    /// With shared counting: spends one unit of every target's lease and runs `also` (the
    /// credits' lease), all or nothing. Refuses here while the shared counter is known to
    /// refuse; [`Leased::Missing`] (nothing charged) when a lease is missing, expired or
    /// spent, or `also` says so: the shared counter must be asked then.
    pub fn take_leased<X>(
        &self,
        targets: &Targets,
        now_ms: u64,
        state: &mut LimitState,
        also: impl FnOnce() -> Result<bool, X>,
    ) -> Leased<X> {
        let targets = targets.as_slice();
        let mut locked = self.lock(targets, now_ms);
        let mut missing = false;
        let mut retry_after_ms = 0;
        for t in targets {
            match locked.map(self.shard_of(t)).and_then(|m| m.lease(t)) {
                Some(l) if l.refused(now_ms) => {
                    retry_after_ms = retry_after_ms.max(l.refused_until_ms - now_ms);
                }
                Some(l) if l.usable(now_ms) => {}
                _ => missing = true,
            }
        }
        if retry_after_ms > 0 {
            // Report what is known: the refusing limits and the leased ones.
            for t in targets {
                if let Some(l) = locked.map(self.shard_of(t)).and_then(|m| m.lease(t)) {
                    if l.refused(now_ms) {
                        state.push(t.status(0, l.reset_at_ms.saturating_sub(now_ms)));
                    } else if l.usable(now_ms) {
                        state.push(l.status(t, now_ms));
                    }
                }
            }
            return Leased::Refused { retry_after_ms };
        }
        if missing {
            return Leased::Missing;
        }
        match also() {
            Ok(true) => {}
            Ok(false) => return Leased::Missing,
            Err(x) => {
                for t in targets {
                    if let Some(l) = locked.map(self.shard_of(t)).and_then(|m| m.lease(t)) {
                        state.push(l.status(t, now_ms));
                    }
                }
                return Leased::Other(x);
            }
        }
        for t in targets {
            if let Some(map) = locked.map(self.shard_of(t)) {
                let c = map.counter(t);
                c.lease.units -= 1;
                c.window.record(now_ms, 1);
                state.push(c.lease.status(t, now_ms));
            }
        }
        Leased::Taken
    }

    /// Notes that the shared counter of `target` refused: refusals are answered here for
    /// `retry_after_ms`.
    pub fn refuse(&self, target: &Target, now_ms: u64, retry_after_ms: u64, reset_ms: u64) {
        let mut map = self.lock_shard(self.shard_of(target));
        let c = map.counter(target);
        c.lease = Lease {
            units: 0,
            expires_ms: 0,
            others_remaining: 0,
            reset_at_ms: now_ms.saturating_add(reset_ms),
            refused_until_ms: now_ms.saturating_add(retry_after_ms),
        };
    }

    /// Takes one unit of `target`'s lease for a check that is still asking for others;
    /// the status it would report, or None without a usable lease.
    pub fn reserve(&self, target: &Target, now_ms: u64) -> Option<LimitStatus> {
        let mut map = self.lock_shard(self.shard_of(target));
        let c = map.counter(target);
        if !c.lease.usable(now_ms) {
            return None;
        }
        c.lease.units -= 1;
        Some(c.lease.status(target, now_ms))
    }

    /// Gives back a unit taken by [`Self::reserve`] (unless its lease has expired since).
    pub fn unreserve(&self, target: &Target, now_ms: u64) {
        let mut map = self.lock_shard(self.shard_of(target));
        let c = map.counter(target);
        if now_ms < c.lease.expires_ms {
            c.lease.units += 1;
        }
    }

    /// Adds units granted by the shared counter. A lease of the same bucket grows; one
    /// that has expired is replaced.
    pub fn add_lease(&self, target: &Target, now_ms: u64, grant: Lease) -> LimitStatus {
        let mut map = self.lock_shard(self.shard_of(target));
        let c = map.counter(target);
        if c.lease.usable(now_ms) && c.lease.expires_ms.abs_diff(grant.expires_ms) < 1000 {
            c.lease.units += grant.units;
            c.lease.others_remaining = grant.others_remaining;
            c.lease.reset_at_ms = c.lease.reset_at_ms.max(grant.reset_at_ms);
        } else {
            c.lease = grant;
        }
        c.lease.status(target, now_ms)
    }

    /// Counts one admitted request in this replica's own window of each target.
    pub fn record(&self, targets: &Targets, now_ms: u64) {
        let targets = targets.as_slice();
        let mut locked = self.lock(targets, now_ms);
        for t in targets {
            if let Some(map) = locked.map(self.shard_of(t)) {
                map.counter(t).window.record(now_ms, 1);
            }
        }
    }

    /// Counters held (for metrics and tests).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|m| m.counters.len()).unwrap_or(0))
            .sum()
    }
}

fn share(t: &Target, divisor: u64) -> u64 {
    u64::from(t.limit).div_ceil(divisor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(token: TokenId, owner: UserId, t: &[RateLimit], o: &[RateLimit]) -> Targets {
        Targets::new(token, owner, t, o)
    }

    #[test]
    fn all_or_nothing_across_token_and_owner() {
        let c = LocalCounters::new(64);
        let (token, other, owner) = (TokenId::new(), TokenId::new(), UserId::new());
        let token_limits = [RateLimit::new("a", 60, 5)];
        let owner_limits = [RateLimit::new("a", 60, 3)];
        let ts = targets(token, owner, &token_limits, &owner_limits);
        for _ in 0..3 {
            let mut s = LimitState::EMPTY;
            assert!(c.take::<()>(&ts, 1_000, 1, &mut s, || Ok(())).is_ok());
        }
        let mut s = LimitState::EMPTY;
        let refused = c.take::<()>(&ts, 1_000, 1, &mut s, || Ok(()));
        assert!(matches!(refused, Err(Refused::Rate { .. })));
        assert_eq!(
            s.limits()[0].remaining,
            2,
            "the token limit was not charged"
        );
        assert_eq!(s.limits()[1].remaining, 0);
        // The owner's limit is shared by its other tokens.
        let other_ts = targets(other, owner, &[], &owner_limits);
        let mut s = LimitState::EMPTY;
        assert!(c
            .take::<()>(&other_ts, 1_000, 1, &mut s, || Ok(()))
            .is_err());
    }

    #[test]
    fn a_refused_extra_step_charges_nothing() {
        let c = LocalCounters::new(4);
        let ts = targets(
            TokenId::new(),
            UserId::new(),
            &[RateLimit::new("a", 60, 1)],
            &[],
        );
        let mut s = LimitState::EMPTY;
        assert_eq!(
            c.take(&ts, 0, 1, &mut s, || Err("no credits")),
            Err(Refused::Other("no credits"))
        );
        assert_eq!(s.limits()[0].remaining, 1);
        let mut s = LimitState::EMPTY;
        assert!(c.take::<()>(&ts, 0, 1, &mut s, || Ok(())).is_ok());
        assert_eq!(s.limits()[0].remaining, 0);
    }

    #[test]
    fn the_divisor_gives_each_replica_its_share() {
        let c = LocalCounters::new(4);
        let ts = targets(
            TokenId::new(),
            UserId::new(),
            &[RateLimit::new("a", 60, 10)],
            &[],
        );
        let mut admitted = 0;
        for _ in 0..20 {
            let mut s = LimitState::EMPTY;
            if c.take::<()>(&ts, 0, 3, &mut s, || Ok(())).is_ok() {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 4, "ceil(10 / 3)");
    }

    #[test]
    fn retry_after_covers_every_refusing_limit() {
        let c = LocalCounters::new(4);
        let limits = [
            RateLimit::new("short", 10, 1),
            RateLimit::new("long", 100, 1),
        ];
        let ts = targets(TokenId::new(), UserId::new(), &limits, &[]);
        let mut s = LimitState::EMPTY;
        assert!(c.take::<()>(&ts, 0, 1, &mut s, || Ok(())).is_ok());
        let mut s = LimitState::EMPTY;
        let Err(Refused::Rate { retry_after_ms }) = c.take::<()>(&ts, 5_000, 1, &mut s, || Ok(()))
        else {
            panic!("not refused")
        };
        // The long window's unit stays in its previous bucket until 200 s.
        assert_eq!(retry_after_ms, 200_000 - 5_000);
    }

    #[test]
    fn idle_counters_are_swept() {
        let c = LocalCounters::new(1);
        for _ in 0..10 {
            let ts = targets(
                TokenId::new(),
                UserId::new(),
                &[RateLimit::new("a", 1, 5)],
                &[],
            );
            let mut s = LimitState::EMPTY;
            c.take::<()>(&ts, 0, 1, &mut s, || Ok(())).unwrap();
        }
        assert_eq!(c.len(), 10);
        let ts = targets(
            TokenId::new(),
            UserId::new(),
            &[RateLimit::new("a", 1, 5)],
            &[],
        );
        let mut s = LimitState::EMPTY;
        c.take::<()>(&ts, 60_000, 1, &mut s, || Ok(())).unwrap();
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn a_changed_window_restarts_the_counter() {
        let c = LocalCounters::new(1);
        let (token, owner) = (TokenId::new(), UserId::new());
        let ts = targets(token, owner, &[RateLimit::new("a", 60, 1)], &[]);
        let mut s = LimitState::EMPTY;
        c.take::<()>(&ts, 0, 1, &mut s, || Ok(())).unwrap();
        let ts = targets(token, owner, &[RateLimit::new("a", 30, 1)], &[]);
        let mut s = LimitState::EMPTY;
        assert!(c.take::<()>(&ts, 1, 1, &mut s, || Ok(())).is_ok());
    }

    #[test]
    fn leases_are_spent_all_or_nothing() {
        let c = LocalCounters::new(4);
        let limits = [RateLimit::new("a", 60, 100), RateLimit::new("b", 60, 100)];
        let ts = targets(TokenId::new(), UserId::new(), &limits, &[]);
        let [a, b] = [ts.as_slice()[0], ts.as_slice()[1]];
        let lease = Lease {
            units: 2,
            expires_ms: 10_000,
            others_remaining: 50,
            reset_at_ms: 70_000,
            refused_until_ms: 0,
        };
        let ok = || Ok::<_, ()>(true);
        c.add_lease(&a, 0, lease);
        let mut s = LimitState::EMPTY;
        assert_eq!(
            c.take_leased(&ts, 1, &mut s, ok),
            Leased::Missing,
            "b has no lease"
        );
        c.add_lease(&b, 0, Lease { units: 1, ..lease });
        let mut s = LimitState::EMPTY;
        assert_eq!(
            c.take_leased(&ts, 1, &mut s, || Ok::<_, ()>(false)),
            Leased::Missing,
            "credits missing"
        );
        let mut s = LimitState::EMPTY;
        assert_eq!(
            c.take_leased(&ts, 1, &mut s, || Err("spent")),
            Leased::Other("spent")
        );
        let mut s = LimitState::EMPTY;
        assert_eq!(c.take_leased(&ts, 1, &mut s, ok), Leased::Taken);
        assert_eq!(s.limits()[0].remaining, 51);
        assert_eq!(s.limits()[0].reset_secs, 70);
        let mut s = LimitState::EMPTY;
        assert_eq!(
            c.take_leased(&ts, 2, &mut s, ok),
            Leased::Missing,
            "b is spent"
        );
        assert!(c.reserve(&a, 2).is_some());
        c.unreserve(&a, 2);
        assert!(
            c.reserve(&a, 10_000).is_none(),
            "expired at the bucket's end"
        );
    }

    #[test]
    fn refusals_are_answered_locally_until_the_window_can_admit() {
        let c = LocalCounters::new(4);
        let limits = [RateLimit::new("a", 60, 100), RateLimit::new("b", 60, 100)];
        let ts = targets(TokenId::new(), UserId::new(), &limits, &[]);
        let [a, b] = [ts.as_slice()[0], ts.as_slice()[1]];
        let lease = Lease {
            units: 5,
            expires_ms: 60_000,
            others_remaining: 0,
            reset_at_ms: 90_000,
            refused_until_ms: 0,
        };
        c.add_lease(&a, 0, lease);
        c.refuse(&b, 1_000, 4_000, 70_000);
        let mut s = LimitState::EMPTY;
        assert_eq!(
            c.take_leased(&ts, 2_000, &mut s, || Ok::<_, ()>(true)),
            Leased::Refused {
                retry_after_ms: 3_000
            }
        );
        assert_eq!(s.limits().len(), 2);
        assert_eq!(s.limits()[1].remaining, 0);
        assert_eq!(s.limits()[0].remaining, 5, "a was not charged");
        let mut s = LimitState::EMPTY;
        assert_eq!(
            c.take_leased(&ts, 5_000, &mut s, || Ok::<_, ()>(true)),
            Leased::Missing,
            "then the shared counter is asked again"
        );
    }
}
