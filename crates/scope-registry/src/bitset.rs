//! Dense method indices and bitsets over them.

use std::fmt;

use uuid::Uuid;

use crate::snapshot::Snapshot;

/// Dense index of a method inside one [`Snapshot`]. Indices are only meaningful for the
/// snapshot that produced them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MethodIdx(pub u32);

impl MethodIdx {
    #[inline]
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for MethodIdx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A set of methods of one snapshot, stored as a bitset over [`MethodIdx`].
///
/// Sets of different lengths interoperate: missing words count as zero.
#[derive(Clone, Default)]
pub struct MethodSet {
    words: Vec<u64>,
}

#[inline]
fn split(idx: MethodIdx) -> (usize, u64) {
    let i = idx.index();
    (i >> 6, 1u64 << (i & 63))
}

impl MethodSet {
    /// The empty set.
    pub fn empty() -> MethodSet {
        MethodSet { words: Vec::new() }
    }

    /// An empty set with room for `methods` indices without reallocating.
    pub fn with_capacity(methods: usize) -> MethodSet {
        MethodSet {
            words: vec![0; methods.div_ceil(64)],
        }
    }

    /// Every method the tenant can see in the snapshot.
    pub fn full(snapshot: &Snapshot, tenant: Option<Uuid>) -> MethodSet {
        snapshot.visible(tenant).clone()
    }

    #[inline]
    pub fn contains(&self, idx: MethodIdx) -> bool {
        let (w, bit) = split(idx);
        match self.words.get(w) {
            Some(word) => word & bit != 0,
            None => false,
        }
    }

    /// Adds a method; returns whether it was not present before.
    pub fn insert(&mut self, idx: MethodIdx) -> bool {
        let (w, bit) = split(idx);
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
        }
        let word = &mut self.words[w];
        let fresh = *word & bit == 0;
        *word |= bit;
        fresh
    }

    /// Removes a method; returns whether it was present.
    pub fn remove(&mut self, idx: MethodIdx) -> bool {
        let (w, bit) = split(idx);
        match self.words.get_mut(w) {
            Some(word) => {
                let present = *word & bit != 0;
                *word &= !bit;
                present
            }
            None => false,
        }
    }

    /// Number of methods in the set.
    pub fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }

    pub fn clear(&mut self) {
        self.words.clear();
    }

    /// Methods in ascending index order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            words: &self.words,
            next_word: 0,
            current: 0,
            base: 0,
        }
    }

    /// Methods in both sets.
    pub fn intersect(&self, other: &MethodSet) -> MethodSet {
        let words = self
            .words
            .iter()
            .zip(&other.words)
            .map(|(a, b)| a & b)
            .collect();
        MethodSet { words }
    }

    /// Methods in either set.
    pub fn union(&self, other: &MethodSet) -> MethodSet {
        let mut out = self.clone();
        out.union_with(other);
        out
    }

    /// Methods in `self` but not in `other`.
    pub fn difference(&self, other: &MethodSet) -> MethodSet {
        let words = self
            .words
            .iter()
            .enumerate()
            .map(|(i, a)| a & !other.words.get(i).copied().unwrap_or(0))
            .collect();
        MethodSet { words }
    }

    pub fn intersect_with(&mut self, other: &MethodSet) {
        self.words.truncate(other.words.len());
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a &= b;
        }
    }

    pub fn union_with(&mut self, other: &MethodSet) {
        if other.words.len() > self.words.len() {
            self.words.resize(other.words.len(), 0);
        }
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
    }

    /// Whether every method of `self` is also in `other`.
    pub fn is_subset(&self, other: &MethodSet) -> bool {
        self.words
            .iter()
            .enumerate()
            .all(|(i, a)| a & !other.words.get(i).copied().unwrap_or(0) == 0)
    }

    /// Whether the sets share at least one method.
    pub fn intersects(&self, other: &MethodSet) -> bool {
        self.words.iter().zip(&other.words).any(|(a, b)| a & b != 0)
    }

    /// The raw words (bit `i` of word `w` is method `64 * w + i`).
    pub fn as_words(&self) -> &[u64] {
        &self.words
    }
}

impl PartialEq for MethodSet {
    fn eq(&self, other: &Self) -> bool {
        let (short, long) = if self.words.len() <= other.words.len() {
            (&self.words, &other.words)
        } else {
            (&other.words, &self.words)
        };
        short.iter().zip(long.iter()).all(|(a, b)| a == b)
            && long.iter().skip(short.len()).all(|w| *w == 0)
    }
}

impl Eq for MethodSet {}

impl fmt::Debug for MethodSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter().map(|i| i.0)).finish()
    }
}

impl FromIterator<MethodIdx> for MethodSet {
    fn from_iter<I: IntoIterator<Item = MethodIdx>>(iter: I) -> Self {
        let mut set = MethodSet::empty();
        set.extend(iter);
        set
    }
}

impl Extend<MethodIdx> for MethodSet {
    fn extend<I: IntoIterator<Item = MethodIdx>>(&mut self, iter: I) {
        for idx in iter {
            self.insert(idx);
        }
    }
}

impl<'a> IntoIterator for &'a MethodSet {
    type Item = MethodIdx;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// Iterator over the members of a [`MethodSet`].
pub struct Iter<'a> {
    words: &'a [u64],
    next_word: usize,
    current: u64,
    base: u32,
}

impl Iterator for Iter<'_> {
    type Item = MethodIdx;

    fn next(&mut self) -> Option<MethodIdx> {
        while self.current == 0 {
            let word = *self.words.get(self.next_word)?;
            self.base = (self.next_word as u32) << 6;
            self.current = word;
            self.next_word += 1;
        }
        let bit = self.current.trailing_zeros();
        self.current &= self.current - 1;
        Some(MethodIdx(self.base + bit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[u32]) -> MethodSet {
        ids.iter().map(|i| MethodIdx(*i)).collect()
    }

    fn ids(s: &MethodSet) -> Vec<u32> {
        s.iter().map(|i| i.0).collect()
    }

    #[test]
    fn insert_contains_remove() {
        let mut s = MethodSet::empty();
        assert!(s.is_empty());
        assert!(!s.contains(MethodIdx(0)));
        assert!(!s.contains(MethodIdx(10_000)));
        assert!(s.insert(MethodIdx(3)));
        assert!(!s.insert(MethodIdx(3)));
        assert!(s.insert(MethodIdx(64)));
        assert!(s.insert(MethodIdx(130)));
        assert!(s.contains(MethodIdx(3)));
        assert!(s.contains(MethodIdx(64)));
        assert!(s.contains(MethodIdx(130)));
        assert!(!s.contains(MethodIdx(63)));
        assert_eq!(s.len(), 3);
        assert_eq!(ids(&s), vec![3, 64, 130]);
        assert!(s.remove(MethodIdx(64)));
        assert!(!s.remove(MethodIdx(64)));
        assert!(!s.remove(MethodIdx(9999)));
        assert_eq!(ids(&s), vec![3, 130]);
        s.clear();
        assert!(s.is_empty());
    }

    #[test]
    fn with_capacity_is_empty() {
        let s = MethodSet::with_capacity(129);
        assert_eq!(s.as_words().len(), 3);
        assert!(s.is_empty());
        assert_eq!(s, MethodSet::empty());
    }

    #[test]
    fn set_algebra() {
        let a = set(&[1, 2, 70, 200]);
        let b = set(&[2, 70, 71]);
        assert_eq!(ids(&a.intersect(&b)), vec![2, 70]);
        assert_eq!(ids(&b.intersect(&a)), vec![2, 70]);
        assert_eq!(ids(&a.union(&b)), vec![1, 2, 70, 71, 200]);
        assert_eq!(ids(&b.union(&a)), vec![1, 2, 70, 71, 200]);
        assert_eq!(ids(&a.difference(&b)), vec![1, 200]);
        assert_eq!(ids(&b.difference(&a)), vec![71]);
        assert!(a.intersects(&b));
        assert!(!set(&[5]).intersects(&b));

        let mut c = a.clone();
        c.intersect_with(&b);
        assert_eq!(c, set(&[2, 70]));
        c.union_with(&set(&[500]));
        assert_eq!(ids(&c), vec![2, 70, 500]);
    }

    #[test]
    fn subset_and_equality_across_lengths() {
        let small = set(&[2, 70]);
        let big = set(&[1, 2, 70, 300]);
        assert!(small.is_subset(&big));
        assert!(!big.is_subset(&small));
        assert!(MethodSet::empty().is_subset(&small));
        assert!(small.is_subset(&small));

        let mut padded = MethodSet::with_capacity(1000);
        padded.insert(MethodIdx(2));
        padded.insert(MethodIdx(70));
        assert_eq!(padded, small);
        assert_eq!(small, padded);
        assert!(padded.is_subset(&small));
        padded.insert(MethodIdx(999));
        assert_ne!(padded, small);
        assert!(!padded.is_subset(&small));
    }

    #[test]
    fn debug_lists_members() {
        assert_eq!(format!("{:?}", set(&[0, 65])), "{0, 65}");
    }
}
