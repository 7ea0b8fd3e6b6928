//! Refused verifications per client address. A client that keeps presenting bad
//! credentials (guessing, replaying revoked tokens, a broken script) is answered 429
//! `too_many_refusals` once it has been refused `limit` times within a minute, until that
//! minute is over. Only refusals are counted and only refusals are replaced: a credential
//! that verifies is always served, so one misbehaving client behind a shared address (NAT,
//! a proxy) does not lock out the others. Over the limit, the precise refusal reason is
//! no longer revealed and the refusal is no longer audited one by one.
//!
//! The successful path never touches this: a refusal costs one cache lookup and one
//! atomic increment.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);

struct Window {
    started: Instant,
    count: AtomicU32,
}

pub struct RefusalLimiter {
    limit: u32,
    windows: moka::sync::Cache<IpAddr, Arc<Window>>,
}

impl RefusalLimiter {
    /// `limit` refusals per address and minute; 0 turns the limit off.
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            windows: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(WINDOW)
                .build(),
        }
    }

    /// Counts a refusal from `ip`; `Some(retry_after_secs)` when the address is past its
    /// limit (this refusal included).
    pub fn refused(&self, ip: Option<IpAddr>) -> Option<u64> {
        if self.limit == 0 {
            return None;
        }
        let key = bucket(ip?);
        let window = self.windows.get_with(key, || {
            Arc::new(Window {
                started: Instant::now(),
                count: AtomicU32::new(0),
            })
        });
        let count = window
            .count
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if count <= self.limit {
            return None;
        }
        let left = WINDOW.saturating_sub(window.started.elapsed());
        Some(left.as_secs().clamp(1, WINDOW.as_secs()))
    }
}

/// IPv6 clients usually hold a whole /64: count them as one.
fn bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_address_and_prefix() {
        let limiter = RefusalLimiter::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let b: IpAddr = "192.0.2.2".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        assert_eq!(limiter.refused(Some(a)), None);
        assert_eq!(limiter.refused(Some(a)), None);
        assert!(limiter
            .refused(Some(a))
            .is_some_and(|s| (1..=60).contains(&s)));
        assert_eq!(limiter.refused(Some(b)), None);
        assert_eq!(limiter.refused(None), None);
        let v6a: IpAddr = "2001:db8::1".parse().unwrap_or(a);
        let v6b: IpAddr = "2001:db8::2".parse().unwrap_or(a);
        assert_eq!(limiter.refused(Some(v6a)), None);
        assert_eq!(limiter.refused(Some(v6b)), None);
        assert!(limiter.refused(Some(v6a)).is_some());
        assert_eq!(RefusalLimiter::new(0).refused(Some(a)), None);
    }
}
