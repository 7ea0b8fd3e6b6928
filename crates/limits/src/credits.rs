//! Credit balances in memory, and what the database must be told about them.
//!
//! The caller owns the stored balance (a token row's `remaining`, `version`,
//! `refilled_at`) and hands it over as a [`CreditState`] whenever it resolves the token.
//! The ledger keeps the live balance, spends from it atomically (never below 0), and
//! gives back, through [`CreditLedger::drain`], the spends to write: relative decrements
//! that replicas can apply in any order. No request writes to the database.
//!
//! Without shared counting the ledger holds the whole balance. With it, the balance lives
//! in Redis and the ledger holds only the uses leased from it (see `shared`).
//!
//! # Bounds
//! - Spends not yet drained are lost by a crash: the database then still shows them as
//!   remaining, so the token gets back at most one flush interval's spends. Nothing is
//!   ever spent twice because of a flush: a drained batch that fails to write is merged
//!   back with [`CreditLedger::restore`] and retried.
//! - A new `version` (an admin setting a balance outright) replaces the balance: spends
//!   made from the old one that are not yet written are void, as is a refill's spend of
//!   an earlier period.
//! - Without shared counting, an idle balance is forgotten after `idle` (an hour by
//!   default) once all its spends are written; the caller's token cache must keep a
//!   resolved state for less time than that, or a stale state could be taken up again.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use sigil_core::TokenId;

use crate::key::KeyHash;
use crate::spec::{next_refill, period_end, period_start, Refill};
use crate::state::CreditStatus;

/// The stored credits of a token, as the caller read them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreditState {
    /// The stored balance.
    pub remaining: u64,
    /// Raised by every write that sets `remaining` outright (never by the flush's
    /// decrements or by refills), so that a new value replaces every live copy.
    pub version: u64,
    pub refill: Option<Refill>,
    /// Start of the period of the last refill, or when the balance was set if never
    /// refilled (the token's creation).
    pub refilled_at: DateTime<Utc>,
}

impl CreditState {
    /// The balance and its period as of `now`: refilled when a period has begun since
    /// `refilled_at`. Refills are applied when the balance is used; readers of a stored
    /// row use this to show it as it is.
    pub fn effective(&self, now: DateTime<Utc>) -> (u64, DateTime<Utc>) {
        match &self.refill {
            Some(r) if crate::spec::refill_due(r, self.refilled_at, now) => {
                (r.amount, period_start(r, now))
            }
            _ => (self.remaining, self.refilled_at),
        }
    }

    /// When the balance is refilled next, as seen at `now`.
    pub fn next_refill(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.refill
            .as_ref()
            .map(|r| next_refill(r, self.refilled_at, now))
    }
}

/// Spends of one token to write to the database.
///
/// The store applies it in one statement, as follows:
/// - if its `version` differs from `version`, or its `refilled_at` is later than
///   `refilled_at`, nothing (the spends were made from a balance since replaced);
/// - if its `refilled_at` is earlier than `refilled_at` and `refill_amount` is set, the
///   refill first: `remaining = refill_amount, refilled_at = refilled_at` (so a refill is
///   written once whichever replica writes first);
/// - then `remaining = max(remaining - spent, 0)`.
///
/// For example: `UPDATE tokens SET remaining = max(CASE WHEN refilled_at < :at THEN
/// :amount ELSE remaining END - :spent, 0), refilled_at = max(refilled_at, :at) WHERE id =
/// :token AND version = :version AND refilled_at <= :at` (with `:amount` falling back to
/// `remaining` when there is no refill).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreditFlush {
    pub token: TokenId,
    pub version: u64,
    /// The period the spends were made in.
    pub refilled_at: DateTime<Utc>,
    pub refill_amount: Option<u64>,
    /// May be 0 when only a refill is to be written.
    pub spent: u64,
}

/// One use to pay for: the token, its stored credits, the cost, and the time.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Use<'a> {
    pub token: TokenId,
    pub state: &'a CreditState,
    pub cost: u64,
    pub now: DateTime<Utc>,
    pub now_ms: u64,
}

/// A refusal: the balance cannot pay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Exhausted {
    pub status: CreditStatus,
}

/// What a shared balance answered (see `shared`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SharedBalance {
    /// Uses granted to this replica (0: refused).
    pub granted: u64,
    /// The balance left in Redis after the grant.
    pub remaining: u64,
    pub version: u64,
    pub refilled_at: DateTime<Utc>,
}

/// Uses that go back to (or are taken from) a shared balance, tied to the balance they
/// belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Parcel {
    pub token: TokenId,
    pub version: u64,
    pub refilled_at: DateTime<Utc>,
    /// The balance last seen, to start the shared one from if it was lost.
    pub seen: u64,
    pub units: u64,
}

/// `Entry::outage` before any: the first outage seen computes an allowance.
const NO_OUTAGE: u64 = u64::MAX;

#[derive(Clone, Copy, Debug)]
struct Entry {
    version: u64,
    refilled_at: DateTime<Utc>,
    /// First boundary after `refilled_at` (None without a refill).
    next_refill: Option<DateTime<Utc>>,
    refill: Option<Refill>,
    /// Uses this replica may spend without asking: the whole balance without shared
    /// counting, the leased uses with it.
    held: u64,
    /// With shared counting: the shared balance last seen (beyond `held`).
    seen: u64,
    /// Spent since the last drain.
    pending: u64,
    /// A refill to write even if nothing is spent.
    refill_pending: bool,
    /// With shared counting, while Redis is unreachable: uses spent beyond `held`, to take
    /// from the shared balance when it is back.
    debt: u64,
    /// The outage `allowance` belongs to, and what is left of it.
    outage: u64,
    allowance: u64,
    last_used_ms: u64,
    /// When `held` was last spent from or granted (with shared counting).
    held_used_ms: u64,
    /// The shared balance could not pay: refusals are answered here until then.
    exhausted_until_ms: u64,
}

impl Entry {
    fn new(state: &CreditState, shared: bool, now: DateTime<Utc>) -> Self {
        let (remaining, refilled_at) = state.effective(now);
        let mut e = Self {
            version: state.version,
            refilled_at,
            next_refill: None,
            refill: state.refill,
            held: if shared { 0 } else { remaining },
            seen: if shared { remaining } else { 0 },
            pending: 0,
            refill_pending: state
                .refill
                .is_some_and(|r| crate::spec::refill_due(&r, state.refilled_at, now)),
            debt: 0,
            outage: NO_OUTAGE,
            allowance: 0,
            last_used_ms: 0,
            held_used_ms: 0,
            exhausted_until_ms: 0,
        };
        e.set_period(refilled_at);
        e
    }

    fn set_period(&mut self, refilled_at: DateTime<Utc>) {
        // Milliseconds, as the shared balance and the database keep it: compared later.
        let refilled_at =
            DateTime::from_timestamp_millis(refilled_at.timestamp_millis()).unwrap_or(refilled_at);
        self.refilled_at = refilled_at;
        self.next_refill = self.refill.as_ref().map(|r| period_end(r, refilled_at));
    }

    fn refill_due(&self, now: DateTime<Utc>) -> bool {
        self.next_refill.is_some_and(|at| at <= now)
    }

    /// Starts the period containing `now` with a full balance; what was held or spent in
    /// the old one is void.
    fn refill(&mut self, shared: bool, now: DateTime<Utc>) {
        let Some(r) = self.refill else { return };
        self.set_period(period_start(&r, now));
        if shared {
            self.held = 0;
            self.seen = r.amount;
        } else {
            self.held = r.amount;
        }
        self.pending = 0;
        self.debt = 0;
        self.outage = NO_OUTAGE;
        self.refill_pending = true;
    }

    fn status(&self, shared: bool) -> CreditStatus {
        CreditStatus {
            remaining: if shared {
                self.seen.saturating_add(self.held)
            } else {
                self.held
            },
            next_refill: self.next_refill,
        }
    }

    fn spend_held(&mut self, cost: u64, now_ms: u64) -> bool {
        if self.held < cost {
            return false;
        }
        self.held -= cost;
        self.pending += cost;
        self.last_used_ms = now_ms;
        self.held_used_ms = now_ms;
        true
    }
}

/// Per-token live balances. Cheap to share: every method takes `&self`.
pub struct CreditLedger {
    shards: Box<[Mutex<HashMap<TokenId, Entry, KeyHash>>]>,
    shared: bool,
}

const SHARDS: usize = 16;

impl CreditLedger {
    /// A ledger that holds whole balances (`shared == false`) or leases of Redis-held ones.
    pub(crate) fn new(shared: bool) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            shared,
        }
    }

    fn shard(&self, token: TokenId) -> MutexGuard<'_, HashMap<TokenId, Entry, KeyHash>> {
        let i = crate::key::Holder::Token(token).shard(SHARDS);
        self.shards[i]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The entry of `token`, created from `state`, or replaced when `state` carries a
    /// newer version.
    fn entry<'a>(
        &self,
        map: &'a mut HashMap<TokenId, Entry, KeyHash>,
        token: TokenId,
        state: &CreditState,
        now: DateTime<Utc>,
    ) -> &'a mut Entry {
        let e = map
            .entry(token)
            .or_insert_with(|| Entry::new(state, self.shared, now));
        if state.version > e.version {
            *e = Entry::new(state, self.shared, now);
        }
        e
    }

    /// The live balance of `token` as this replica sees it (its unwritten spends and a
    /// refill that fell due included), when it holds the balance of `version`; `None`
    /// when it holds none (the stored value is then current, up to other replicas).
    pub fn peek(&self, token: TokenId, version: u64, now: DateTime<Utc>) -> Option<CreditStatus> {
        let map = self.shard(token);
        let e = map.get(&token).filter(|e| e.version == version)?;
        let mut status = e.status(self.shared);
        if e.refill_due(now) {
            if let Some(r) = e.refill {
                status.remaining = r.amount;
                status.next_refill = Some(period_end(&r, period_start(&r, now)));
            }
        }
        Some(status)
    }

    /// Without shared counting: spends `cost` if the balance (refilled when due) covers it.
    pub(crate) fn spend_local(&self, u: Use<'_>) -> Result<CreditStatus, Exhausted> {
        let Use {
            token,
            state,
            cost,
            now,
            now_ms,
        } = u;
        let mut map = self.shard(token);
        let e = self.entry(&mut map, token, state, now);
        if e.refill_due(now) {
            e.refill(false, now);
        }
        if e.spend_held(cost, now_ms) {
            Ok(e.status(false))
        } else {
            Err(Exhausted {
                status: e.status(false),
            })
        }
    }

    /// With shared counting: spends `cost` from the uses leased here. None when they do
    /// not cover it (or a new period voided them) and the shared balance must be asked;
    /// refused while the shared balance recently could not pay.
    pub(crate) fn spend_leased(&self, u: Use<'_>) -> Result<Option<CreditStatus>, Exhausted> {
        let Use {
            token,
            state,
            cost,
            now,
            now_ms,
        } = u;
        let mut map = self.shard(token);
        let e = self.entry(&mut map, token, state, now);
        if e.refill_due(now) {
            // The lease belongs to the old period; Redis refills once for everyone.
            e.held = 0;
            e.exhausted_until_ms = 0;
            return Ok(None);
        }
        if e.spend_held(cost, now_ms) {
            return Ok(Some(e.status(true)));
        }
        if now_ms < e.exhausted_until_ms {
            return Err(Exhausted {
                status: e.status(true),
            });
        }
        Ok(None)
    }

    /// With shared counting while Redis is unreachable: spends from the lease, then from
    /// this replica's share of the balance last seen (`seen / replicas`, fixed for the
    /// outage `outage`). Spends from the share are owed to the shared balance.
    pub(crate) fn spend_fallback(
        &self,
        u: Use<'_>,
        replicas: u32,
        outage: u64,
    ) -> Result<CreditStatus, Exhausted> {
        let Use {
            token,
            state,
            cost,
            now,
            now_ms,
        } = u;
        let mut map = self.shard(token);
        let e = self.entry(&mut map, token, state, now);
        if e.refill_due(now) {
            e.refill(true, now);
        }
        if e.outage != outage {
            e.outage = outage;
            e.allowance = e.seen / u64::from(replicas.max(1));
        }
        if e.spend_held(cost, now_ms) {
            return Ok(e.status(true));
        }
        if e.allowance >= cost {
            e.allowance -= cost;
            e.seen = e.seen.saturating_sub(cost);
            e.debt += cost;
            e.pending += cost;
            e.last_used_ms = now_ms;
            return Ok(e.status(true));
        }
        Err(Exhausted {
            status: CreditStatus {
                remaining: e.held + e.allowance,
                next_refill: e.next_refill,
            },
        })
    }

    /// Takes in a shared balance's answer to a request for `cost` uses: on a grant,
    /// spends `cost` of it and keeps the rest as a lease; on a refusal, refuses here for
    /// `hold_ms` (other replicas' leases may come back meanwhile, or a refill fall due,
    /// which is checked first). A grant from a balance older than the one already known
    /// still pays for this request, and the rest is dropped.
    pub(crate) fn granted(
        &self,
        u: Use<'_>,
        reply: SharedBalance,
        hold_ms: u64,
    ) -> Result<CreditStatus, Exhausted> {
        let Use {
            token,
            state,
            cost,
            now,
            now_ms,
        } = u;
        let mut map = self.shard(token);
        let e = self.entry(&mut map, token, state, now);
        if reply.version < e.version || reply.refilled_at < e.refilled_at {
            let mut status = e.status(true);
            status.remaining = reply.remaining;
            return if reply.granted >= cost {
                Ok(status)
            } else {
                Err(Exhausted { status })
            };
        }
        if reply.version > e.version || reply.refilled_at > e.refilled_at {
            let period_moved = reply.refilled_at > e.refilled_at;
            e.version = reply.version;
            e.set_period(reply.refilled_at);
            e.held = 0;
            e.pending = 0;
            e.debt = 0;
            e.refill_pending = period_moved && e.refill.is_some();
        }
        e.seen = reply.remaining;
        e.held += reply.granted;
        e.held_used_ms = now_ms;
        if reply.granted >= cost && e.spend_held(cost, now_ms) {
            e.exhausted_until_ms = 0;
            Ok(e.status(true))
        } else {
            e.exhausted_until_ms = now_ms.saturating_add(hold_ms);
            Err(Exhausted {
                status: e.status(true),
            })
        }
    }

    /// Leases not spent from for `idle_ms`, taken out to go back to the shared balance.
    pub(crate) fn idle_leases(&self, now_ms: u64, idle_ms: u64) -> Vec<Parcel> {
        self.take_parcels(|e| {
            if e.held > 0 && now_ms.saturating_sub(e.held_used_ms) >= idle_ms {
                Some(std::mem::take(&mut e.held))
            } else {
                None
            }
        })
    }

    /// Every lease, taken out to go back to the shared balance (on shutdown).
    pub(crate) fn all_leases(&self) -> Vec<Parcel> {
        self.take_parcels(|e| (e.held > 0).then(|| std::mem::take(&mut e.held)))
    }

    /// What was spent from fallback shares, taken out to be charged to the shared balance.
    pub(crate) fn debts(&self) -> Vec<Parcel> {
        self.take_parcels(|e| (e.debt > 0).then(|| std::mem::take(&mut e.debt)))
    }

    fn take_parcels(&self, mut take: impl FnMut(&mut Entry) -> Option<u64>) -> Vec<Parcel> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
            for (token, e) in map.iter_mut() {
                if let Some(units) = take(e) {
                    out.push(Parcel {
                        token: *token,
                        version: e.version,
                        refilled_at: e.refilled_at,
                        seen: e.seen,
                        units,
                    });
                }
            }
        }
        out
    }

    /// Puts back a lease that could not be returned.
    pub(crate) fn keep_lease(&self, p: &Parcel) {
        self.with_same(p, |e| e.held += p.units);
    }

    /// Puts back a debt that could not be charged.
    pub(crate) fn keep_debt(&self, p: &Parcel) {
        self.with_same(p, |e| e.debt += p.units);
    }

    fn with_same(&self, p: &Parcel, f: impl FnOnce(&mut Entry)) {
        let mut map = self.shard(p.token);
        if let Some(e) = map.get_mut(&p.token) {
            if e.version == p.version && e.refilled_at == p.refilled_at {
                f(e);
            }
        }
    }

    /// The spends (and refills) to write, taken out. Write them, and on failure hand them
    /// back to [`Self::restore`].
    pub fn drain(&self) -> Vec<CreditFlush> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
            for (token, e) in map.iter_mut() {
                if e.pending > 0 || e.refill_pending {
                    out.push(CreditFlush {
                        token: *token,
                        version: e.version,
                        refilled_at: e.refilled_at,
                        refill_amount: e.refill.map(|r| r.amount),
                        spent: std::mem::take(&mut e.pending),
                    });
                    e.refill_pending = false;
                }
            }
        }
        out
    }

    /// Merges back spends whose write failed, so that the next drain retries them. Those
    /// of a balance replaced since are dropped, as the store would drop them.
    pub fn restore(&self, batch: Vec<CreditFlush>) {
        for f in batch {
            let mut map = self.shard(f.token);
            if let Some(e) = map.get_mut(&f.token) {
                if e.version == f.version && e.refilled_at == f.refilled_at {
                    e.pending += f.spent;
                    e.refill_pending |= f.refill_amount.is_some();
                }
            }
        }
    }

    /// Forgets balances unused for `idle_ms` that have nothing left to write or return.
    pub fn sweep(&self, now_ms: u64, idle_ms: u64) {
        for shard in self.shards.iter() {
            let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
            map.retain(|_, e| {
                let busy = e.pending > 0 || e.refill_pending || e.debt > 0;
                let leased = self.shared && e.held > 0;
                busy || leased || now_ms.saturating_sub(e.last_used_ms) < idle_ms
            });
        }
    }

    /// Balances held in memory.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|m| m.len()).unwrap_or(0))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Interval;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn use_(
        token: TokenId,
        state: &CreditState,
        cost: u64,
        now: DateTime<Utc>,
        now_ms: u64,
    ) -> Use<'_> {
        Use {
            token,
            state,
            cost,
            now,
            now_ms,
        }
    }

    fn state(remaining: u64, version: u64) -> CreditState {
        CreditState {
            remaining,
            version,
            refill: None,
            refilled_at: at("2024-01-01T00:00:00Z"),
        }
    }

    fn daily(remaining: u64, amount: u64) -> CreditState {
        CreditState {
            remaining,
            version: 1,
            refill: Some(Refill {
                interval: Interval::Daily,
                amount,
                day: None,
            }),
            refilled_at: at("2024-01-01T00:00:00Z"),
        }
    }

    #[test]
    fn spends_never_go_below_zero() {
        let l = CreditLedger::new(false);
        let t = TokenId::new();
        let s = state(5, 1);
        let now = at("2024-01-01T10:00:00Z");
        assert_eq!(l.spend_local(use_(t, &s, 3, now, 0)).unwrap().remaining, 2);
        let refused = l.spend_local(use_(t, &s, 3, now, 0)).unwrap_err();
        assert_eq!(refused.status.remaining, 2);
        assert_eq!(l.spend_local(use_(t, &s, 2, now, 0)).unwrap().remaining, 0);
        assert!(l.spend_local(use_(t, &s, 1, now, 0)).is_err());
        let flush = l.drain();
        assert_eq!(flush.len(), 1);
        assert_eq!((flush[0].version, flush[0].spent), (1, 5));
        assert!(l.drain().is_empty());
    }

    #[test]
    fn a_new_version_replaces_the_balance() {
        let l = CreditLedger::new(false);
        let t = TokenId::new();
        let now = at("2024-01-01T10:00:00Z");
        l.spend_local(use_(t, &state(5, 1), 5, now, 0)).unwrap();
        // The caller's cached state (same version) does not bring the old balance back.
        assert!(l.spend_local(use_(t, &state(5, 1), 1, now, 0)).is_err());
        assert_eq!(
            l.spend_local(use_(t, &state(10, 2), 1, now, 0))
                .unwrap()
                .remaining,
            9
        );
        let flush = l.drain();
        assert_eq!((flush[0].version, flush[0].spent), (2, 1));
    }

    #[test]
    fn a_failed_flush_is_retried_not_lost() {
        let l = CreditLedger::new(false);
        let t = TokenId::new();
        let now = at("2024-01-01T10:00:00Z");
        l.spend_local(use_(t, &state(5, 1), 2, now, 0)).unwrap();
        let batch = l.drain();
        l.spend_local(use_(t, &state(5, 1), 1, now, 0)).unwrap();
        l.restore(batch);
        assert_eq!(l.drain()[0].spent, 3);
    }

    #[test]
    fn refills_once_per_period() {
        let l = CreditLedger::new(false);
        let t = TokenId::new();
        let s = daily(2, 10);
        let day1 = at("2024-01-01T10:00:00Z");
        l.spend_local(use_(t, &s, 2, day1, 0)).unwrap();
        let refused = l.spend_local(use_(t, &s, 1, day1, 0)).unwrap_err();
        assert_eq!(refused.status.next_refill, Some(at("2024-01-02T00:00:00Z")));
        let day2 = at("2024-01-02T00:00:00Z");
        assert_eq!(l.spend_local(use_(t, &s, 4, day2, 0)).unwrap().remaining, 6);
        assert_eq!(l.spend_local(use_(t, &s, 1, day2, 0)).unwrap().remaining, 5);
        let flush = l.drain();
        assert_eq!(flush.len(), 1);
        assert_eq!(flush[0].refilled_at, day2);
        assert_eq!(flush[0].refill_amount, Some(10));
        assert_eq!(flush[0].spent, 5, "the old period's spends are void");
        // Several days unused: one refill, to the amount (not amount per day).
        let day5 = at("2024-01-05T08:00:00Z");
        assert_eq!(l.spend_local(use_(t, &s, 1, day5, 0)).unwrap().remaining, 9);
    }

    #[test]
    fn a_stored_overdue_refill_is_applied_and_written() {
        let l = CreditLedger::new(false);
        let t = TokenId::new();
        let now = at("2024-03-01T10:00:00Z");
        assert_eq!(
            daily(0, 10).effective(now),
            (10, at("2024-03-01T00:00:00Z"))
        );
        assert_eq!(
            l.spend_local(use_(t, &daily(0, 10), 1, now, 0))
                .unwrap()
                .remaining,
            9
        );
        let flush = l.drain();
        assert_eq!(flush[0].refilled_at, at("2024-03-01T00:00:00Z"));
        assert_eq!(flush[0].spent, 1);
    }

    #[test]
    fn fallback_spends_a_share_and_owes_it() {
        let l = CreditLedger::new(true);
        let t = TokenId::new();
        let s = state(90, 1);
        let now = at("2024-01-01T10:00:00Z");
        // Nothing leased: the shared balance must be asked.
        assert_eq!(l.spend_leased(use_(t, &s, 1, now, 0)), Ok(None));
        let mut spent = 0;
        while l.spend_fallback(use_(t, &s, 1, now, 0), 3, 1).is_ok() {
            spent += 1;
        }
        assert_eq!(spent, 30, "90 / 3 replicas");
        let debts = l.debts();
        assert_eq!(debts[0].units, 30);
        assert!(l.debts().is_empty());
        assert_eq!(l.drain()[0].spent, 30);
        // The next outage starts from what is known then.
        assert!(l.spend_fallback(use_(t, &s, 1, now, 0), 3, 2).is_ok());
    }

    #[test]
    fn grants_become_leases() {
        let l = CreditLedger::new(true);
        let t = TokenId::new();
        let s = state(100, 1);
        let now = at("2024-01-01T10:00:00Z");
        let reply = SharedBalance {
            granted: 10,
            remaining: 90,
            version: 1,
            refilled_at: s.refilled_at,
        };
        assert_eq!(
            l.granted(use_(t, &s, 1, now, 0), reply, 1000)
                .unwrap()
                .remaining,
            99
        );
        for _ in 0..9 {
            assert!(l.spend_leased(use_(t, &s, 1, now, 10)).unwrap().is_some());
        }
        assert_eq!(l.spend_leased(use_(t, &s, 1, now, 10)), Ok(None));
        assert_eq!(l.drain()[0].spent, 10);
        // Unspent leases go back after a while.
        let reply = SharedBalance {
            granted: 5,
            remaining: 85,
            ..reply
        };
        l.granted(use_(t, &s, 1, now, 20), reply, 1000).unwrap();
        assert!(l.idle_leases(500, 1000).is_empty());
        let back = l.idle_leases(1020, 1000);
        assert_eq!(back[0].units, 4);
        l.keep_lease(&back[0]);
        assert_eq!(l.all_leases()[0].units, 4);
        // A refusal is answered here for a while, then Redis is asked again.
        let refused = SharedBalance {
            granted: 0,
            remaining: 0,
            ..reply
        };
        assert!(l.granted(use_(t, &s, 1, now, 2000), refused, 1000).is_err());
        assert!(l.spend_leased(use_(t, &s, 1, now, 2999)).is_err());
        assert_eq!(l.spend_leased(use_(t, &s, 1, now, 3000)), Ok(None));
    }

    #[test]
    fn idle_balances_are_forgotten_once_written() {
        let l = CreditLedger::new(false);
        let now = at("2024-01-01T10:00:00Z");
        l.spend_local(use_(TokenId::new(), &state(5, 1), 1, now, 0))
            .unwrap();
        l.sweep(10_000, 1_000);
        assert_eq!(l.len(), 1, "a spend is not written yet");
        l.drain();
        l.sweep(10_000, 1_000);
        assert!(l.is_empty());
    }
}
