//! The retry schedule: the waits between attempts (`5s,5m,30m,2h,5h,10h,10h` by default,
//! a little over a day in all). A delivery is tried once at once and once after each wait;
//! then it is marked failed.

use std::time::Duration;

/// The default waits: Standard Webhooks' suggested exponential backoff, over 27 hours.
pub const DEFAULT: &str = "5s,5m,30m,2h,5h,10h,10h";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetrySchedule(Vec<Duration>);

impl Default for RetrySchedule {
    fn default() -> Self {
        Self::parse(DEFAULT).unwrap_or(Self(vec![Duration::from_secs(60)]))
    }
}

impl RetrySchedule {
    /// Parses a comma-separated list of waits: a number with `ms`, `s`, `m`, `h` or `d`.
    /// An empty list means a single attempt.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut waits = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let split = part
                .find(|c: char| !c.is_ascii_digit())
                .ok_or_else(|| format!("{part:?} has no unit (ms, s, m, h or d)"))?;
            let (number, unit) = part.split_at(split);
            let n: u64 = number
                .parse()
                .map_err(|_| format!("{part:?} does not start with a number"))?;
            let wait = match unit {
                "ms" => Duration::from_millis(n),
                "s" => Duration::from_secs(n),
                "m" => Duration::from_secs(n * 60),
                "h" => Duration::from_secs(n * 3600),
                "d" => Duration::from_secs(n * 86_400),
                _ => return Err(format!("{part:?}: the unit must be ms, s, m, h or d")),
            };
            if wait > Duration::from_secs(7 * 86_400) {
                return Err(format!("{part:?} is longer than 7 days"));
            }
            waits.push(wait);
        }
        if waits.len() > 50 {
            return Err("at most 50 retries".into());
        }
        Ok(Self(waits))
    }

    /// The wait after attempt number `attempts` (1 = the first) failed; `None` when that
    /// was the last attempt.
    pub fn wait_after(&self, attempts: i32) -> Option<Duration> {
        usize::try_from(attempts)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| self.0.get(i))
            .copied()
    }

    /// Attempts in all (the first and one per wait).
    pub fn attempts(&self) -> usize {
        self.0.len() + 1
    }

    /// The time from the first attempt to the last.
    pub fn span(&self) -> Duration {
        self.0.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_retries_for_more_than_a_day() {
        let s = RetrySchedule::default();
        assert!(s.span() > Duration::from_secs(86_400));
        assert_eq!(s.wait_after(1), Some(Duration::from_secs(5)));
        assert_eq!(s.wait_after(8), None);
        assert_eq!(s.attempts(), 8);
    }

    #[test]
    fn parses_units_and_refuses_nonsense() {
        let s = RetrySchedule::parse("500ms, 2s,1m,1h,1d").unwrap();
        assert_eq!(s.wait_after(1), Some(Duration::from_millis(500)));
        assert_eq!(s.wait_after(5), Some(Duration::from_secs(86_400)));
        assert_eq!(RetrySchedule::parse("").unwrap().attempts(), 1);
        for bad in ["5", "x5s", "5y", "8d"] {
            assert!(RetrySchedule::parse(bad).is_err(), "{bad}");
        }
    }
}
