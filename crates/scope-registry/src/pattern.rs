//! Scope entries: an exact method id or a glob over method ids.

use globset::{GlobBuilder, GlobMatcher};

/// A compiled scope entry.
#[derive(Debug, Clone)]
pub enum EntryPattern {
    /// An exact method id.
    Exact(String),
    /// A glob; `*` matches any run of characters including dots.
    Glob(GlobMatcher),
}

/// Whether an entry is written as a glob rather than an exact method id.
pub fn is_glob(entry: &str) -> bool {
    entry.contains(['*', '?', '[', '{'])
}

impl EntryPattern {
    /// Compiles an entry. Fails for empty entries and malformed globs.
    pub fn parse(entry: &str) -> Result<EntryPattern, String> {
        let entry = entry.trim();
        if entry.is_empty() {
            return Err("empty scope entry".to_string());
        }
        if !is_glob(entry) {
            return Ok(EntryPattern::Exact(entry.to_string()));
        }
        GlobBuilder::new(entry)
            .literal_separator(false)
            .backslash_escape(true)
            .build()
            .map(|g| EntryPattern::Glob(g.compile_matcher()))
            .map_err(|e| format!("invalid pattern '{entry}': {e}"))
    }

    /// Whether the entry matches a method id.
    pub fn matches(&self, method_id: &str) -> bool {
        match self {
            EntryPattern::Exact(id) => id == method_id,
            EntryPattern::Glob(g) => g.is_match(method_id),
        }
    }

    /// Whether the entry matches every method id.
    pub fn is_match_all(&self) -> bool {
        matches!(self, EntryPattern::Glob(g) if g.glob().glob() == "*")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_glob() {
        let e = EntryPattern::parse("tokens.create").unwrap();
        assert!(matches!(e, EntryPattern::Exact(_)));
        assert!(e.matches("tokens.create"));
        assert!(!e.matches("tokens.created"));

        let g = EntryPattern::parse("platform.environment.*").unwrap();
        assert!(g.matches("platform.environment.control.stopenv"));
        assert!(g.matches("platform.environment.x"));
        assert!(!g.matches("platform.environments.x"));
        assert!(!g.matches("platform.marketplace.app.getlist"));

        let all = EntryPattern::parse("*").unwrap();
        assert!(all.is_match_all());
        assert!(all.matches("a.b.c"));

        let mid = EntryPattern::parse("*.plugin.getenvs").unwrap();
        assert!(mid.matches("platform.ide.plugin.getenvs"));
        assert!(mid.matches("platform.maven.plugin.getenvs"));
        assert!(!mid.matches("platform.maven.plugin.deploy"));
    }

    #[test]
    fn bad_entries() {
        assert!(EntryPattern::parse("").is_err());
        assert!(EntryPattern::parse("  ").is_err());
        assert!(EntryPattern::parse("a.[b").is_err());
    }
}
