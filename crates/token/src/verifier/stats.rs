//! Counters of the verifier, read by the metrics endpoint: outcomes and cache use.

use std::sync::atomic::{AtomicU64, Ordering};

use super::refusal::RefusalKind;

/// How one verification ended: allowed, or refused with a kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    Refused(RefusalKind),
}

impl Outcome {
    /// How many outcomes there are: allowed and every refusal kind.
    pub const COUNT: usize = RefusalKind::ALL.len() + 1;

    /// Every outcome, in a fixed order: allowed, then the refusal kinds.
    pub fn all() -> impl Iterator<Item = Outcome> {
        std::iter::once(Outcome::Allowed).chain(RefusalKind::ALL.into_iter().map(Outcome::Refused))
    }

    /// The metric label: `ok`, or the refusal code.
    pub const fn label(self) -> &'static str {
        match self {
            Outcome::Allowed => "ok",
            Outcome::Refused(kind) => kind.code(),
        }
    }

    const fn index(self) -> usize {
        match self {
            Outcome::Allowed => 0,
            Outcome::Refused(kind) => kind as usize + 1,
        }
    }
}

#[derive(Debug)]
pub struct VerifyStats {
    outcomes: [AtomicU64; Outcome::COUNT],
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
    pub(super) fn count(&self, outcome: Outcome) {
        self.outcomes[outcome.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    /// (outcome, count) for every outcome, zeros included, in [`Outcome::all`]'s order.
    pub fn outcomes(&self) -> impl Iterator<Item = (Outcome, u64)> + '_ {
        Outcome::all().map(|o| (o, self.outcomes[o.index()].load(Ordering::Relaxed)))
    }

    pub fn cache_hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    pub fn cache_misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_allowed_and_every_refusal_kind() {
        let labels: Vec<_> = Outcome::all().map(Outcome::label).collect();
        assert_eq!(labels.len(), Outcome::COUNT);
        assert_eq!(labels[0], "ok");
        for (label, kind) in labels[1..].iter().zip(RefusalKind::ALL) {
            assert_eq!(*label, kind.code());
        }
        for (i, outcome) in Outcome::all().enumerate() {
            assert_eq!(outcome.index(), i);
        }
    }

    #[test]
    fn counts_each_outcome_apart() {
        let stats = VerifyStats::default();
        stats.count(Outcome::Allowed);
        stats.count(Outcome::Allowed);
        stats.count(Outcome::Refused(RefusalKind::TokenExpired));
        stats.hit();
        stats.miss();
        stats.miss();
        let counts: Vec<_> = stats.outcomes().collect();
        assert_eq!(counts.len(), Outcome::COUNT);
        for (outcome, n) in counts {
            let expected = match outcome {
                Outcome::Allowed => 2,
                Outcome::Refused(RefusalKind::TokenExpired) => 1,
                _ => 0,
            };
            assert_eq!(n, expected, "{outcome:?}");
        }
        assert_eq!((stats.cache_hits(), stats.cache_misses()), (1, 2));
    }
}
