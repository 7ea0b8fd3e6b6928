//! Usage limits on the wire: named rate limits (of a token, an owner or a tenant's
//! defaults), credits with their refill, and the state introspection reports.

use chrono::{DateTime, Utc};
use poem_openapi::{Enum, Object};
use sigil_limits::{Credits, Interval, LimitSummary, RateLimit, Refill, Scope};

/// A sliding-window rate limit: at most `limit` requests in any `window_secs` seconds.
#[derive(Clone, Debug, Object, PartialEq, Eq, serde::Serialize)]
#[oai(rename = "RateLimit")]
pub struct RateLimitDto {
    /// Unique among the holder's limits; names the limit in the `RateLimit` headers.
    #[oai(validator(pattern = r"^[a-z0-9_-]{1,32}$"))]
    pub name: String,
    /// The window in seconds (at most 31 days).
    #[oai(validator(minimum(value = "1"), maximum(value = "2678400")))]
    pub window_secs: u32,
    /// Requests allowed in any window.
    #[oai(validator(minimum(value = "1"), maximum(value = "1000000000")))]
    pub limit: u32,
}

impl From<&RateLimit> for RateLimitDto {
    fn from(l: &RateLimit) -> Self {
        Self {
            name: l.name.clone(),
            window_secs: l.window_secs,
            limit: l.limit,
        }
    }
}

impl From<RateLimitDto> for RateLimit {
    fn from(l: RateLimitDto) -> Self {
        RateLimit::new(l.name, l.window_secs, l.limit)
    }
}

pub fn rate_limits_from(dtos: Vec<RateLimitDto>) -> Vec<RateLimit> {
    dtos.into_iter().map(Into::into).collect()
}

pub fn rate_limits_to(limits: &[RateLimit]) -> Vec<RateLimitDto> {
    limits.iter().map(Into::into).collect()
}

#[derive(Clone, Copy, Debug, Enum, PartialEq, Eq)]
#[oai(rename_all = "snake_case", rename = "RefillInterval")]
pub enum IntervalDto {
    /// At UTC midnight every day.
    Daily,
    /// At UTC midnight of `day` (1 by default) every month.
    Monthly,
}

impl IntervalDto {
    pub fn as_str(self) -> &'static str {
        match self {
            IntervalDto::Daily => "daily",
            IntervalDto::Monthly => "monthly",
        }
    }
}

/// A periodic refill: at the start of each period the balance is set to `amount`.
#[derive(Clone, Debug, Object, PartialEq, Eq)]
#[oai(rename = "Refill")]
pub struct RefillDto {
    pub interval: IntervalDto,
    /// The balance at the start of each period.
    #[oai(validator(minimum(value = "1"), maximum(value = "1000000000000000")))]
    pub amount: u64,
    /// Day of the month of a monthly refill (1-28; default 1). Not for daily refills.
    #[oai(validator(minimum(value = "1"), maximum(value = "28")))]
    pub day: Option<u8>,
}

/// Credits to set on a token: uses left, and how they come back.
#[derive(Clone, Debug, Object, PartialEq, Eq)]
#[oai(rename = "CreditsInput")]
pub struct CreditsInput {
    /// Uses left; each allowed call spends one, or the method's `cost`.
    #[oai(validator(maximum(value = "1000000000000000")))]
    pub remaining: u64,
    pub refill: Option<RefillDto>,
}

impl From<CreditsInput> for Credits {
    fn from(c: CreditsInput) -> Self {
        Credits {
            remaining: c.remaining,
            refill: c.refill.map(|r| Refill {
                interval: match r.interval {
                    IntervalDto::Daily => Interval::Daily,
                    IntervalDto::Monthly => Interval::Monthly,
                },
                amount: r.amount,
                day: r.day,
            }),
        }
    }
}

fn refill_dto(r: &Refill) -> RefillDto {
    RefillDto {
        interval: match r.interval {
            Interval::Daily => IntervalDto::Daily,
            Interval::Monthly => IntervalDto::Monthly,
        },
        amount: r.amount,
        day: r.day,
    }
}

/// A token's credits as they are now.
#[derive(Clone, Debug, Object, PartialEq, Eq)]
#[oai(rename = "Credits")]
pub struct CreditsView {
    /// Uses left now.
    pub remaining: u64,
    pub refill: Option<RefillDto>,
    /// When the balance is refilled next (with a refill).
    pub next_refill_at: Option<DateTime<Utc>>,
}

impl CreditsView {
    pub fn new(remaining: u64, refill: Option<&Refill>, next: Option<DateTime<Utc>>) -> Self {
        Self {
            remaining,
            refill: refill.map(refill_dto),
            next_refill_at: next,
        }
    }
}

#[derive(Clone, Copy, Debug, Enum, PartialEq, Eq, serde::Serialize)]
#[oai(rename_all = "snake_case", rename = "RateLimitHolder")]
#[serde(rename_all = "snake_case")]
pub enum HolderDto {
    /// The token's own limit (or the tenant's default for tokens).
    Token,
    /// A limit of the token's owner, shared by all of the owner's tokens.
    Owner,
}

/// One rate limit as the introspected use left it.
#[derive(Clone, Debug, Object, PartialEq, Eq, serde::Serialize)]
#[oai(rename = "RateLimitState")]
pub struct RateLimitStateDto {
    pub name: String,
    pub applies_to: HolderDto,
    pub limit: u32,
    pub window_secs: u32,
    /// Requests still admitted now.
    pub remaining: u32,
    /// Seconds until the whole limit is available again without further requests.
    pub reset_secs: u32,
}

/// The usage limits of an introspected token after this use.
#[derive(Clone, Debug, Object, PartialEq, Eq, serde::Serialize)]
#[oai(rename = "LimitState")]
pub struct LimitStateDto {
    pub rate_limits: Vec<RateLimitStateDto>,
    /// Credits left (absent: unlimited).
    pub credits: Option<CreditsLeftDto>,
}

#[derive(Clone, Debug, Object, PartialEq, Eq, serde::Serialize)]
#[oai(rename = "CreditsLeft")]
pub struct CreditsLeftDto {
    pub remaining: u64,
    #[serde(serialize_with = "super::json_out::rfc3339_opt")]
    pub next_refill_at: Option<DateTime<Utc>>,
}

impl From<LimitSummary> for LimitStateDto {
    fn from(s: LimitSummary) -> Self {
        Self {
            rate_limits: s
                .rate_limits
                .into_iter()
                .map(|l| RateLimitStateDto {
                    name: l.name,
                    applies_to: match l.scope {
                        Scope::Token => HolderDto::Token,
                        Scope::Owner => HolderDto::Owner,
                    },
                    limit: l.limit,
                    window_secs: l.window_secs,
                    remaining: l.remaining,
                    reset_secs: l.reset_secs,
                })
                .collect(),
            credits: s.credits.map(|c| CreditsLeftDto {
                remaining: c.remaining,
                next_refill_at: c.next_refill,
            }),
        }
    }
}
