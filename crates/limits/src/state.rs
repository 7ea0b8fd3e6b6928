//! What a check answers: the decision, and the state of every limit it looked at, ready
//! for the `RateLimit-Policy` and `RateLimit` header fields of
//! draft-ietf-httpapi-ratelimit-headers-09 and for introspection. The state lives inline
//! (no heap) so that an allowed check allocates nothing; rendering allocates.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::key::{LimitName, Scope};
use crate::spec::MAX_LIMITS_PER_HOLDER;

/// Limits one check can involve: the token's and its owner's.
pub const MAX_LIMITS_PER_CHECK: usize = 2 * MAX_LIMITS_PER_HOLDER;

/// One rate limit as a check left it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitStatus {
    pub scope: Scope,
    pub name: LimitName,
    pub limit: u32,
    pub window_secs: u32,
    /// Requests still admitted now (0 on the limit that refused).
    pub remaining: u32,
    /// Seconds until the whole limit is available again if no request is made.
    pub reset_secs: u32,
}

impl LimitStatus {
    const EMPTY: Self = Self {
        scope: Scope::Token,
        name: LimitName::EMPTY,
        limit: 0,
        window_secs: 0,
        remaining: 0,
        reset_secs: 0,
    };

    /// The policy name in the header fields: the limit's own name for a token's limits,
    /// `owner:<name>` for its owner's (so that both may use the same name).
    pub fn policy_name(&self) -> PolicyName<'_> {
        PolicyName(self)
    }
}

/// Display of a [`LimitStatus`]'s policy name.
pub struct PolicyName<'a>(&'a LimitStatus);

impl std::fmt::Display for PolicyName<'_> {
    /// The inside of a structured-field String: validated names need no escaping, but a
    /// stray `"` or `\` is escaped and anything outside printable ASCII left out, so the
    /// field stays well-formed whatever the name.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.scope == Scope::Owner {
            f.write_str("owner:")?;
        }
        for c in self.0.name.as_str().chars() {
            match c {
                '"' | '\\' => write!(f, "\\{c}")?,
                ' '..='~' => write!(f, "{c}")?,
                _ => {}
            }
        }
        Ok(())
    }
}

/// A token's credits as a check left them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct CreditStatus {
    /// Uses left. With shared counters this is the balance last seen plus the uses this
    /// replica holds, so other replicas' latest uses may not be in it yet.
    pub remaining: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_refill: Option<DateTime<Utc>>,
}

/// The limits a check looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitState {
    limits: [LimitStatus; MAX_LIMITS_PER_CHECK],
    len: u8,
    credits: Option<CreditStatus>,
}

impl Default for LimitState {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl LimitState {
    /// No limit at all.
    pub const EMPTY: Self = Self {
        limits: [LimitStatus::EMPTY; MAX_LIMITS_PER_CHECK],
        len: 0,
        credits: None,
    };

    pub fn limits(&self) -> &[LimitStatus] {
        &self.limits[..usize::from(self.len)]
    }

    pub fn credits(&self) -> Option<&CreditStatus> {
        self.credits.as_ref()
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0 && self.credits.is_none()
    }

    pub(crate) fn push(&mut self, status: LimitStatus) {
        if let Some(slot) = self.limits.get_mut(usize::from(self.len)) {
            *slot = status;
            self.len += 1;
        }
    }

    pub(crate) fn set_credits(&mut self, credits: CreditStatus) {
        self.credits = Some(credits);
    }

    /// `RateLimit-Policy` field value, one list member per limit:
    /// `"per-minute";q=100;w=60, "owner:daily";q=5000;w=86400`. None without rate limits.
    pub fn policy_header(&self) -> Option<String> {
        self.render(|out, s| {
            write!(
                out,
                "\"{}\";q={};w={}",
                s.policy_name(),
                s.limit,
                s.window_secs
            )
        })
    }

    /// `RateLimit` field value, one list member per limit: `"per-minute";r=42;t=17`.
    /// None without rate limits.
    pub fn ratelimit_header(&self) -> Option<String> {
        self.render(|out, s| {
            write!(
                out,
                "\"{}\";r={};t={}",
                s.policy_name(),
                s.remaining,
                s.reset_secs
            )
        })
    }

    fn render(
        &self,
        member: impl Fn(&mut String, &LimitStatus) -> std::fmt::Result,
    ) -> Option<String> {
        let limits = self.limits();
        if limits.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(limits.len() * 32);
        for (i, s) in limits.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            // Writing to a String cannot fail.
            let _ = member(&mut out, s);
        }
        Some(out)
    }

    /// The state for introspection (JSON).
    pub fn summary(&self) -> LimitSummary {
        LimitSummary {
            rate_limits: self
                .limits()
                .iter()
                .map(|s| RateLimitSummary {
                    scope: s.scope,
                    name: s.name.as_str().to_owned(),
                    limit: s.limit,
                    window_secs: s.window_secs,
                    remaining: s.remaining,
                    reset_secs: s.reset_secs,
                })
                .collect(),
            credits: self.credits,
        }
    }
}

/// Introspection's view of a token's limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LimitSummary {
    pub rate_limits: Vec<RateLimitSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credits: Option<CreditStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RateLimitSummary {
    pub scope: Scope,
    pub name: String,
    pub limit: u32,
    pub window_secs: u32,
    pub remaining: u32,
    pub reset_secs: u32,
}

/// The answer to a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed {
        state: LimitState,
    },
    /// A rate limit refused: HTTP 429 `rate_limited` with `Retry-After`.
    RateLimited {
        retry_after_secs: u32,
        state: LimitState,
    },
    /// The credits are spent: HTTP 429 `usage_exceeded`, with the next refill if any.
    UsageExceeded {
        next_refill: Option<DateTime<Utc>>,
        state: LimitState,
    },
}

impl Decision {
    /// Allowed, with no limit to report.
    pub const UNLIMITED: Self = Self::Allowed {
        state: LimitState::EMPTY,
    };

    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allowed { .. })
    }

    pub fn state(&self) -> &LimitState {
        match self {
            Self::Allowed { state }
            | Self::RateLimited { state, .. }
            | Self::UsageExceeded { state, .. } => state,
        }
    }

    /// The problem code of a refusal.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Self::Allowed { .. } => None,
            Self::RateLimited { .. } => Some("rate_limited"),
            Self::UsageExceeded { .. } => Some("usage_exceeded"),
        }
    }
}

/// Seconds for a header from milliseconds: rounded up, so a client that waits that long is
/// never early.
pub(crate) fn secs_ceil(ms: u64) -> u32 {
    u32::try_from(ms.div_ceil(1000)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(scope: Scope, name: &str, remaining: u32) -> LimitStatus {
        LimitStatus {
            scope,
            name: LimitName::new(name),
            limit: 100,
            window_secs: 60,
            remaining,
            reset_secs: 17,
        }
    }

    #[test]
    fn headers_follow_the_draft_syntax() {
        let mut s = LimitState::EMPTY;
        assert_eq!(s.policy_header(), None);
        assert_eq!(s.ratelimit_header(), None);
        s.push(status(Scope::Token, "per-minute", 42));
        s.push(status(Scope::Owner, "per-minute", 0));
        assert_eq!(
            s.policy_header().unwrap(),
            "\"per-minute\";q=100;w=60, \"owner:per-minute\";q=100;w=60"
        );
        assert_eq!(
            s.ratelimit_header().unwrap(),
            "\"per-minute\";r=42;t=17, \"owner:per-minute\";r=0;t=17"
        );
    }

    #[test]
    fn odd_names_stay_well_formed() {
        let mut s = LimitState::EMPTY;
        s.push(status(Scope::Token, "a\"b\\c\u{e9}", 1));
        assert_eq!(s.policy_header().unwrap(), r#""a\"b\\c";q=100;w=60"#);
    }

    #[test]
    fn summary_is_json() {
        let mut s = LimitState::EMPTY;
        s.push(status(Scope::Owner, "burst", 3));
        s.set_credits(CreditStatus {
            remaining: 9,
            next_refill: None,
        });
        let json = serde_json::to_value(s.summary()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "rate_limits": [{"scope": "owner", "name": "burst", "limit": 100,
                    "window_secs": 60, "remaining": 3, "reset_secs": 17}],
                "credits": {"remaining": 9}
            })
        );
    }

    #[test]
    fn the_state_is_capped_not_overrun() {
        let mut s = LimitState::EMPTY;
        for _ in 0..MAX_LIMITS_PER_CHECK + 3 {
            s.push(status(Scope::Token, "x", 1));
        }
        assert_eq!(s.limits().len(), MAX_LIMITS_PER_CHECK);
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(secs_ceil(0), 0);
        assert_eq!(secs_ceil(1), 1);
        assert_eq!(secs_ceil(1000), 1);
        assert_eq!(secs_ceil(1001), 2);
    }
}
