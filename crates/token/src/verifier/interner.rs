//! Identical method sets shared by the principals that hold them. Most tokens of a tenant
//! carry one of a few scopes, so a cached principal points at a shared set instead of
//! holding its own bitsets (two of them: scope and rights).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use sigil_scope_registry::MethodSet;

#[derive(Default)]
pub(crate) struct SetInterner {
    inner: Mutex<Interned>,
}

#[derive(Default)]
struct Interned {
    /// By the set's words without trailing zero words (equal sets, equal keys).
    sets: HashMap<Box<[u64]>, Weak<MethodSet>>,
    /// Dead entries are swept when the table reaches this size.
    sweep_at: usize,
}

const FIRST_SWEEP: usize = 1024;

impl SetInterner {
    /// The shared set equal to `set`.
    pub(crate) fn intern(&self, set: MethodSet) -> Arc<MethodSet> {
        let words = set.as_words();
        let key = &words[..words.iter().rposition(|w| *w != 0).map_or(0, |i| i + 1)];
        let Ok(mut interned) = self.inner.lock() else {
            return Arc::new(set);
        };
        if let Some(shared) = interned.sets.get(key).and_then(Weak::upgrade) {
            return shared;
        }
        let key: Box<[u64]> = key.into();
        let shared = Arc::new(set);
        interned.sets.insert(key, Arc::downgrade(&shared));
        if interned.sets.len() >= interned.sweep_at.max(FIRST_SWEEP) {
            interned.sets.retain(|_, w| w.strong_count() > 0);
            interned.sweep_at = interned.sets.len() * 2;
        }
        shared
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().map_or(0, |i| i.sets.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sigil_scope_registry::MethodIdx;

    fn set(ids: &[u32]) -> MethodSet {
        ids.iter().map(|i| MethodIdx(*i)).collect()
    }

    #[test]
    fn equal_sets_are_one_allocation() {
        let interner = SetInterner::default();
        let a = interner.intern(set(&[1, 5, 70]));
        let b = interner.intern(set(&[70, 5, 1]));
        let c = interner.intern(set(&[1, 5]));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(*c, set(&[1, 5]));
    }

    #[test]
    fn trailing_empty_words_do_not_split_a_set() {
        let interner = SetInterner::default();
        let mut wide = MethodSet::with_capacity(512);
        wide.insert(MethodIdx(3));
        let a = interner.intern(wide);
        let b = interner.intern(set(&[3]));
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn sets_nobody_holds_are_swept() {
        let interner = SetInterner::default();
        for i in 0..(FIRST_SWEEP as u32 * 3) {
            drop(interner.intern(set(&[i])));
        }
        assert!(
            interner.len() < FIRST_SWEEP,
            "{} entries left",
            interner.len()
        );
        let kept = interner.intern(set(&[1, 2]));
        assert!(Arc::ptr_eq(&kept, &interner.intern(set(&[2, 1]))));
    }
}
