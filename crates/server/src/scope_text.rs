//! The space-separated method ids of a set of rights, as introspection answers them. Built
//! once per distinct set: cached principals share their rights (the verifier interns
//! them), so the text is kept by the shared set and the registry version it belongs to.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sigil_scope_registry::{MethodSet, Snapshot};

/// Distinct texts kept; past it the table starts again (a rebuild is one join).
const MAX_TEXTS: usize = 4096;

struct Entry {
    /// Held, so the address that keys the entry cannot be reused by another set.
    rights: Arc<MethodSet>,
    version: u64,
    text: Arc<str>,
}

#[derive(Default)]
pub struct ScopeTexts {
    texts: Mutex<HashMap<usize, Entry>>,
}

impl ScopeTexts {
    pub fn text(&self, snapshot: &Snapshot, rights: &Arc<MethodSet>) -> Arc<str> {
        let key = Arc::as_ptr(rights) as usize;
        if let Ok(texts) = self.texts.lock() {
            if let Some(e) = texts.get(&key) {
                if Arc::ptr_eq(&e.rights, rights) && e.version == snapshot.version() {
                    return Arc::clone(&e.text);
                }
            }
        }
        let text: Arc<str> = snapshot
            .method_ids(rights)
            .collect::<Vec<_>>()
            .join(" ")
            .into();
        if let Ok(mut texts) = self.texts.lock() {
            if texts.len() >= MAX_TEXTS {
                texts.clear();
            }
            texts.insert(
                key,
                Entry {
                    rights: Arc::clone(rights),
                    version: snapshot.version(),
                    text: Arc::clone(&text),
                },
            );
        }
        text
    }
}
