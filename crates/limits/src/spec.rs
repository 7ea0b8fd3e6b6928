//! What a token, an owner or a tenant policy declares: named rate limits and credits with
//! an optional refill, their validation, and the calendar of refill periods (pure
//! functions of the time they are given).

use std::collections::HashSet;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use sigil_core::{Error, FieldError};

/// Rate limits one holder (a token, or an owner for all of its tokens) may carry.
pub const MAX_LIMITS_PER_HOLDER: usize = 8;
/// Longest window: 31 days.
pub const MAX_WINDOW_SECS: u32 = 86_400 * 31;
/// Largest count a limit may allow in its window.
pub const MAX_LIMIT: u32 = 1_000_000_000;
/// Largest credit balance or refill amount. Well below 2^53, so every balance is exact in
/// the Lua numbers (doubles) of the shared scripts.
pub const MAX_CREDITS: u64 = 1_000_000_000_000_000;
/// Longest limit name (`^[a-z0-9_-]{1,32}$`).
pub const MAX_NAME_LEN: usize = 32;

/// A named sliding-window rate limit: at most `limit` requests in any `window_secs`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RateLimit {
    pub name: String,
    pub window_secs: u32,
    pub limit: u32,
}

impl RateLimit {
    pub fn new(name: impl Into<String>, window_secs: u32, limit: u32) -> Self {
        Self {
            name: name.into(),
            window_secs,
            limit,
        }
    }

    /// The window in milliseconds (at least 1, so a bad value can never divide by zero).
    pub fn window_ms(&self) -> u64 {
        u64::from(self.window_secs.max(1)) * 1000
    }
}

/// How often credits are refilled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interval {
    Daily,
    Monthly,
}

/// A periodic refill: at the start of each period the balance is set to `amount`.
/// Daily periods start at UTC midnight; monthly ones at UTC midnight of `day` (1 when
/// absent; at most 28 so that every month has it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Refill {
    pub interval: Interval,
    pub amount: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day: Option<u8>,
}

/// A token's usage credits: how many uses are left and how they come back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Credits {
    pub remaining: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refill: Option<Refill>,
}

/// Checks a holder's rate limits; `field` is how the request names the list
/// (`rate_limits`, `policy.owner_rate_limits`). Every problem is reported at once, each
/// under its own field (`rate_limits[1].window_secs`).
pub fn validate_rate_limits(field: &str, limits: &[RateLimit]) -> Result<(), Error> {
    let mut errors = Vec::new();
    if limits.len() > MAX_LIMITS_PER_HOLDER {
        errors.push(FieldError::new(
            field,
            format!("at most {MAX_LIMITS_PER_HOLDER} rate limits"),
        ));
    }
    let mut names = HashSet::new();
    for (i, l) in limits.iter().enumerate() {
        let at = |part: &str| format!("{field}[{i}].{part}");
        if !valid_name(&l.name) {
            errors.push(FieldError::new(
                at("name"),
                "1 to 32 characters among a-z, 0-9, '_' and '-'",
            ));
        } else if !names.insert(l.name.as_str()) {
            errors.push(FieldError::new(at("name"), "names must be unique"));
        }
        if l.window_secs == 0 || l.window_secs > MAX_WINDOW_SECS {
            errors.push(FieldError::new(
                at("window_secs"),
                format!("between 1 and {MAX_WINDOW_SECS} seconds"),
            ));
        }
        if l.limit == 0 || l.limit > MAX_LIMIT {
            errors.push(FieldError::new(
                at("limit"),
                format!("between 1 and {MAX_LIMIT}"),
            ));
        }
    }
    finish(
        "invalid_rate_limits",
        "the rate limits are not valid",
        errors,
    )
}

/// Checks credits; `field` is how the request names them (`credits`).
pub fn validate_credits(field: &str, credits: &Credits) -> Result<(), Error> {
    let mut errors = Vec::new();
    if credits.remaining > MAX_CREDITS {
        errors.push(FieldError::new(
            format!("{field}.remaining"),
            format!("at most {MAX_CREDITS}"),
        ));
    }
    if let Some(r) = &credits.refill {
        let at = |part: &str| format!("{field}.refill.{part}");
        if r.amount == 0 || r.amount > MAX_CREDITS {
            errors.push(FieldError::new(
                at("amount"),
                format!("between 1 and {MAX_CREDITS}"),
            ));
        }
        match (r.interval, r.day) {
            (_, None) => {}
            (Interval::Daily, Some(_)) => errors.push(FieldError::new(
                at("day"),
                "only monthly refills take a day",
            )),
            (Interval::Monthly, Some(d)) if !(1..=28).contains(&d) => errors.push(FieldError::new(
                at("day"),
                "a day of the month from 1 to 28",
            )),
            (Interval::Monthly, Some(_)) => {}
        }
    }
    finish("invalid_credits", "the credits are not valid", errors)
}

fn finish(code: &'static str, detail: &'static str, errors: Vec<FieldError>) -> Result<(), Error> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::invalid_with(code, detail, errors))
    }
}

fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Start of the refill period that contains `at`.
pub fn period_start(refill: &Refill, at: DateTime<Utc>) -> DateTime<Utc> {
    let date = at.date_naive();
    let start = match refill.interval {
        Interval::Daily => date,
        Interval::Monthly => {
            let this_month = month_day(date.year(), date.month(), refill_day(refill));
            if date >= this_month {
                this_month
            } else {
                let (y, m) = previous_month(date.year(), date.month());
                month_day(y, m, refill_day(refill))
            }
        }
    };
    midnight(start)
}

/// Start of the refill period that follows the one containing `at` (always after `at`).
pub fn period_end(refill: &Refill, at: DateTime<Utc>) -> DateTime<Utc> {
    let start = period_start(refill, at);
    match refill.interval {
        Interval::Daily => start + Duration::days(1),
        Interval::Monthly => {
            let date = start.date_naive();
            let (y, m) = next_month(date.year(), date.month());
            midnight(month_day(y, m, refill_day(refill)))
        }
    }
}

/// Whether a balance last set at `last_refill_at` is due a refill at `now`: a new period
/// has started since.
pub fn refill_due(refill: &Refill, last_refill_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    period_start(refill, now) > last_refill_at
}

/// When the balance last set at `last_refill_at` is refilled next, as seen at `now`: the
/// first period boundary after `last_refill_at`. A value not after `now` means the refill
/// is due and is applied by the next use.
pub fn next_refill(
    refill: &Refill,
    last_refill_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    if refill_due(refill, last_refill_at, now) {
        period_start(refill, now)
    } else {
        period_end(refill, last_refill_at)
    }
}

fn refill_day(refill: &Refill) -> u32 {
    u32::from(refill.day.unwrap_or(1).clamp(1, 28))
}

fn month_day(year: i32, month: u32, day: u32) -> NaiveDate {
    // Days 1..=28 exist in every month; the fallback only guards the calendar's far ends.
    NaiveDate::from_ymd_opt(year, month, day).unwrap_or(NaiveDate::MIN)
}

fn previous_month(year: i32, month: u32) -> (i32, u32) {
    if month == 1 {
        (year - 1, 12)
    } else {
        (year, month - 1)
    }
}

fn next_month(year: i32, month: u32) -> (i32, u32) {
    if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    }
}

fn midnight(date: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&date.and_time(chrono::NaiveTime::MIN))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn daily() -> Refill {
        Refill {
            interval: Interval::Daily,
            amount: 10,
            day: None,
        }
    }

    fn monthly(day: Option<u8>) -> Refill {
        Refill {
            interval: Interval::Monthly,
            amount: 10,
            day,
        }
    }

    #[test]
    fn daily_periods_start_at_utc_midnight() {
        let r = daily();
        assert_eq!(
            period_start(&r, at("2024-02-28T23:59:59.999Z")),
            at("2024-02-28T00:00:00Z")
        );
        assert_eq!(
            period_end(&r, at("2024-02-28T23:59:59.999Z")),
            at("2024-02-29T00:00:00Z")
        );
        assert_eq!(
            period_end(&r, at("2024-02-29T00:00:00Z")),
            at("2024-03-01T00:00:00Z")
        );
        assert_eq!(
            period_end(&r, at("2023-02-28T12:00:00Z")),
            at("2023-03-01T00:00:00Z")
        );
        assert_eq!(
            period_end(&r, at("2023-12-31T12:00:00Z")),
            at("2024-01-01T00:00:00Z")
        );
    }

    #[test]
    fn monthly_periods_default_to_the_first() {
        let r = monthly(None);
        assert_eq!(
            period_start(&r, at("2024-03-01T00:00:00Z")),
            at("2024-03-01T00:00:00Z")
        );
        assert_eq!(
            period_start(&r, at("2024-02-29T23:00:00Z")),
            at("2024-02-01T00:00:00Z")
        );
        assert_eq!(
            period_end(&r, at("2024-02-29T23:00:00Z")),
            at("2024-03-01T00:00:00Z")
        );
        assert_eq!(
            period_end(&r, at("2023-12-15T00:00:00Z")),
            at("2024-01-01T00:00:00Z")
        );
    }

    #[test]
    fn monthly_periods_on_a_given_day() {
        let r = monthly(Some(28));
        // Before the 28th, the period began on the 28th of the month before.
        assert_eq!(
            period_start(&r, at("2024-03-27T23:59:59Z")),
            at("2024-02-28T00:00:00Z")
        );
        assert_eq!(
            period_end(&r, at("2024-03-27T23:59:59Z")),
            at("2024-03-28T00:00:00Z")
        );
        // Leap day and the year's turn.
        assert_eq!(
            period_start(&r, at("2024-02-29T10:00:00Z")),
            at("2024-02-28T00:00:00Z")
        );
        assert_eq!(
            period_start(&r, at("2024-01-05T00:00:00Z")),
            at("2023-12-28T00:00:00Z")
        );
        assert_eq!(
            period_end(&r, at("2023-12-30T00:00:00Z")),
            at("2024-01-28T00:00:00Z")
        );
        let r = monthly(Some(15));
        assert_eq!(
            period_start(&r, at("2025-01-15T00:00:00Z")),
            at("2025-01-15T00:00:00Z")
        );
        assert_eq!(
            period_start(&r, at("2025-01-14T23:59:59.999Z")),
            at("2024-12-15T00:00:00Z")
        );
    }

    #[test]
    fn next_refill_follows_the_last_one() {
        let r = monthly(None);
        let last = at("2024-01-01T00:00:00Z");
        assert_eq!(
            next_refill(&r, last, at("2024-01-20T00:00:00Z")),
            at("2024-02-01T00:00:00Z")
        );
        assert!(!refill_due(&r, last, at("2024-01-31T23:59:59Z")));
        // Overdue: the current period's start, not after now.
        assert!(refill_due(&r, last, at("2024-03-10T00:00:00Z")));
        assert_eq!(
            next_refill(&r, last, at("2024-03-10T00:00:00Z")),
            at("2024-03-01T00:00:00Z")
        );
        // A token created mid-period is refilled at the next boundary.
        let created = at("2024-02-29T13:00:00Z");
        assert_eq!(
            next_refill(&daily(), created, at("2024-02-29T14:00:00Z")),
            at("2024-03-01T00:00:00Z")
        );
    }

    #[test]
    fn rate_limits_are_validated_field_by_field() {
        assert!(
            validate_rate_limits("rate_limits", &[RateLimit::new("per-min_1", 60, 100)]).is_ok()
        );
        let err = validate_rate_limits(
            "rate_limits",
            &[
                RateLimit::new("ok", 60, 1),
                RateLimit::new("ok", 0, 0),
                RateLimit::new("Bad!", MAX_WINDOW_SECS + 1, MAX_LIMIT + 1),
                RateLimit::new("x".repeat(33), 1, 1),
            ],
        )
        .unwrap_err();
        let Error::Invalid { code, errors, .. } = err else {
            panic!("not a validation error")
        };
        assert_eq!(code, "invalid_rate_limits");
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "rate_limits[1].name",
                "rate_limits[1].window_secs",
                "rate_limits[1].limit",
                "rate_limits[2].name",
                "rate_limits[2].window_secs",
                "rate_limits[2].limit",
                "rate_limits[3].name",
            ]
        );
        let many: Vec<RateLimit> = (0..9)
            .map(|i| RateLimit::new(format!("l{i}"), 1, 1))
            .collect();
        assert!(validate_rate_limits("rate_limits", &many).is_err());
    }

    #[test]
    fn credits_are_validated_field_by_field() {
        let ok = Credits {
            remaining: 5,
            refill: Some(monthly(Some(28))),
        };
        assert!(validate_credits("credits", &ok).is_ok());
        let bad = Credits {
            remaining: MAX_CREDITS + 1,
            refill: Some(Refill {
                interval: Interval::Daily,
                amount: 0,
                day: Some(3),
            }),
        };
        let Error::Invalid { errors, .. } = validate_credits("credits", &bad).unwrap_err() else {
            panic!("not a validation error")
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "credits.remaining",
                "credits.refill.amount",
                "credits.refill.day"
            ]
        );
        let day_29 = Credits {
            remaining: 1,
            refill: Some(monthly(Some(29))),
        };
        assert!(validate_credits("credits", &day_29).is_err());
    }

    #[test]
    fn serde_uses_snake_case_intervals() {
        let c: Credits = serde_json::from_str(
            r#"{"remaining":3,"refill":{"interval":"monthly","amount":7,"day":2}}"#,
        )
        .unwrap();
        assert_eq!(c.refill.unwrap().interval, Interval::Monthly);
        assert_eq!(
            serde_json::to_string(&daily()).unwrap(),
            r#"{"interval":"daily","amount":10}"#
        );
    }
}
