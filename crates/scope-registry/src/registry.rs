//! The live registry: the current [`Snapshot`], swapped atomically when plugins change.

use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

use crate::snapshot::Snapshot;

/// Holds the current snapshot. Readers never block: they get the snapshot that was current
/// when they asked and keep it for as long as they hold the `Arc`.
#[derive(Debug)]
pub struct Registry {
    current: ArcSwap<Snapshot>,
}

impl Default for Registry {
    fn default() -> Registry {
        Registry::new(Snapshot::empty())
    }
}

impl Registry {
    pub fn new(snapshot: Snapshot) -> Registry {
        Registry::from_arc(Arc::new(snapshot))
    }

    pub fn from_arc(snapshot: Arc<Snapshot>) -> Registry {
        Registry {
            current: ArcSwap::new(snapshot),
        }
    }

    /// The current snapshot.
    pub fn current(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The current snapshot through a short-lived guard; cheaper than [`Registry::current`]
    /// for a quick check on a hot path.
    pub fn load(&self) -> Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// Version of the current snapshot.
    pub fn version(&self) -> u64 {
        self.current.load().version()
    }

    /// Replaces the current snapshot; returns the previous one.
    pub fn publish(&self, snapshot: Snapshot) -> Arc<Snapshot> {
        self.current.swap(Arc::new(snapshot))
    }

    /// Replaces the current snapshot only if `snapshot` has a higher version, so that
    /// concurrent reloads finishing out of order cannot install an older state. Returns
    /// whether it was published.
    pub fn publish_if_newer(&self, snapshot: Snapshot) -> bool {
        let new = Arc::new(snapshot);
        let mut published = false;
        self.current.rcu(|cur| {
            published = new.version() > cur.version();
            if published {
                Arc::clone(&new)
            } else {
                Arc::clone(cur)
            }
        });
        published
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Access;
    use crate::manifest::{HttpRoute, ManifestMethod, PluginManifest};
    use crate::snapshot::RegisteredPlugin;

    fn snapshot(version: u64, methods: &[&str]) -> Snapshot {
        let manifest = PluginManifest {
            id: "p".into(),
            name: "P".into(),
            version: "1".into(),
            description: None,
            docs_url: None,
            methods: methods
                .iter()
                .enumerate()
                .map(|(i, id)| ManifestMethod {
                    id: (*id).to_string(),
                    http: HttpRoute::new("GET", &format!("/m/{i}")),
                    access: Access::Read,
                    description: String::new(),
                    docs_url: None,
                    cost: 1,
                })
                .collect(),
            scope_sets: Vec::new(),
        };
        Snapshot::build_with_version(vec![RegisteredPlugin::global(manifest)], version).unwrap()
    }

    #[test]
    fn publish_swaps_and_old_readers_keep_their_snapshot() {
        let registry = Registry::new(snapshot(1, &["p.a"]));
        let old = registry.current();
        assert_eq!(registry.version(), 1);
        let previous = registry.publish(snapshot(2, &["p.a", "p.b"]));
        assert_eq!(previous.version(), 1);
        assert_eq!(registry.version(), 2);
        assert!(old.lookup(None, "p.b").is_none());
        assert!(registry.current().lookup(None, "p.b").is_some());
        assert!(registry.load().lookup(None, "p.b").is_some());
    }

    #[test]
    fn publish_if_newer_ignores_stale_snapshots() {
        let registry = Registry::new(snapshot(5, &["p.a"]));
        assert!(!registry.publish_if_newer(snapshot(4, &["p.b"])));
        assert!(!registry.publish_if_newer(snapshot(5, &["p.b"])));
        assert_eq!(registry.current().method_count(), 1);
        assert!(registry.current().lookup(None, "p.a").is_some());
        assert!(registry.publish_if_newer(snapshot(6, &["p.b"])));
        assert!(registry.current().lookup(None, "p.b").is_some());
    }

    #[test]
    fn default_is_empty_and_shared_across_threads() {
        let registry = Arc::new(Registry::default());
        assert_eq!(registry.current().method_count(), 0);
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let r = Arc::clone(&registry);
                std::thread::spawn(move || {
                    r.publish(snapshot(i, &["p.a"]));
                    r.current().method_count()
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), 1);
        }
    }
}
