//! Throttling of password attempts (login, password confirmation, password change) per
//! user and per client IP.
//!
//! Every attempt first *reserves* a slot, counted as a failure, with an atomic
//! read-modify-write on the counter, before the password is hashed. A right password
//! clears the user's count and gives the IP slot back; anything else (a wrong password, an
//! error, a dropped request) leaves the slot taken. So however many attempts arrive at
//! once, at most `max` of them per user (and `max * IP_FACTOR` per IP) reach the password
//! hash within a window; the rest are refused with `login_throttled` and a retry delay.

use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use moka::ops::compute::Op;
use moka::sync::Cache;
use sigil_core::{Error, Result, TenantId};

/// An IP gets this many times a user's room: several people may share a NAT.
pub const IP_FACTOR: u32 = 4;

/// Failures counted in the window that began at `since`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Failures {
    count: u32,
    since: Instant,
}

type UserKey = (TenantId, String);

#[derive(Clone)]
pub struct LoginThrottle {
    by_user: Cache<UserKey, Failures>,
    by_ip: Cache<IpAddr, Failures>,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self::new()
    }
}

/// A reserved password attempt. Dropping it keeps the slot taken, which counts the
/// attempt as a failure; call [`LoginAttempt::succeeded`] once the password proved right.
#[must_use = "dropping the attempt counts it as a failure; call `succeeded` on a right password"]
pub struct LoginAttempt<'a> {
    throttle: &'a LoginThrottle,
    user: UserKey,
    /// The start of the user window the slot was taken in.
    user_since: Instant,
    /// The IP and the start of the IP window the slot was taken in.
    ip: Option<(IpAddr, Instant)>,
}

impl LoginAttempt<'_> {
    /// The password was right: clears the user's failures and gives the IP slot back.
    pub fn succeeded(self) {
        self.throttle
            .by_user
            .entry(self.user)
            .and_compute_with(|_| Op::Remove);
        if let Some((ip, since)) = self.ip {
            give_back(&self.throttle.by_ip, ip, since);
        }
    }

    /// The password was right but a second factor is still to come: gives this attempt's
    /// slots back without clearing earlier failures, so guessing codes (which count like
    /// passwords) cannot be reset by signing in again with the password.
    pub fn released(self) {
        give_back(&self.throttle.by_user, self.user, self.user_since);
        if let Some((ip, since)) = self.ip {
            give_back(&self.throttle.by_ip, ip, since);
        }
    }
}

impl LoginThrottle {
    pub fn new() -> Self {
        // At least the longest lockout window a tenant policy allows (one day).
        let ttl = Duration::from_secs(86_400);
        Self {
            by_user: Cache::builder()
                .max_capacity(200_000)
                .time_to_idle(ttl)
                .build(),
            by_ip: Cache::builder()
                .max_capacity(200_000)
                .time_to_idle(ttl)
                .build(),
        }
    }

    /// Reserves one password attempt for the user and the client IP, before the password
    /// is hashed. Refused with 429 `login_throttled` (and the seconds until the window
    /// ends) when the user already has `max` failures, or the IP `max * IP_FACTOR`, within
    /// `window`.
    pub fn reserve(
        &self,
        tenant: TenantId,
        username: &str,
        ip: Option<IpAddr>,
        max: u32,
        window: Duration,
    ) -> Result<LoginAttempt<'_>> {
        let user = (tenant, username.to_owned());
        let user_since = take(&self.by_user, user.clone(), max, window).map_err(throttled)?;
        let ip = match ip {
            None => None,
            Some(ip) => match take(&self.by_ip, ip, max.saturating_mul(IP_FACTOR), window) {
                Ok(since) => Some((ip, since)),
                Err(secs) => {
                    // Refused attempts are not failures: give the user slot back.
                    give_back(&self.by_user, user, user_since);
                    return Err(throttled(secs));
                }
            },
        };
        Ok(LoginAttempt {
            throttle: self,
            user,
            user_since,
            ip,
        })
    }
}

fn throttled(retry_after_secs: u64) -> Error {
    Error::TooMany {
        code: "login_throttled",
        detail: "too many failed password attempts; try again later".into(),
        retry_after_secs,
    }
}

/// Takes a slot in `key`'s current window, atomically (calls on one key are serialised by
/// moka's key lock). Returns the start of the window, or the whole seconds until it ends
/// when it is full.
fn take<K>(
    cache: &Cache<K, Failures>,
    key: K,
    max: u32,
    window: Duration,
) -> std::result::Result<Instant, u64>
where
    K: Hash + Eq + Send + Sync + 'static,
{
    let mut outcome = Err(1);
    cache.entry(key).and_compute_with(|current| {
        let now = Instant::now();
        let current = current
            .map(|e| e.into_value())
            .filter(|f| now.saturating_duration_since(f.since) < window);
        match current {
            Some(f) if f.count >= max => {
                let left = window.saturating_sub(now.saturating_duration_since(f.since));
                let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
                outcome = Err(secs.max(1));
                Op::Nop
            }
            Some(f) => {
                outcome = Ok(f.since);
                Op::Put(Failures {
                    count: f.count.saturating_add(1),
                    since: f.since,
                })
            }
            None => {
                outcome = Ok(now);
                Op::Put(Failures {
                    count: 1,
                    since: now,
                })
            }
        }
    });
    outcome
}

/// Gives one slot back to the window that began at `since` (nothing when that window has
/// been cleared or replaced since).
fn give_back<K>(cache: &Cache<K, Failures>, key: K, since: Instant)
where
    K: Hash + Eq + Send + Sync + 'static,
{
    cache
        .entry(key)
        .and_compute_with(|current| match current.map(|e| e.into_value()) {
            Some(f) if f.since == since && f.count > 1 => Op::Put(Failures {
                count: f.count - 1,
                since,
            }),
            Some(f) if f.since == since => Op::Remove,
            _ => Op::Nop,
        });
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Barrier;

    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn ip(n: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, n]))
    }

    fn retry_after(r: Result<LoginAttempt<'_>>) -> u64 {
        match r {
            Err(Error::TooMany {
                code,
                retry_after_secs,
                ..
            }) => {
                assert_eq!(code, "login_throttled");
                retry_after_secs
            }
            Err(e) => panic!("unexpected error {e:?}"),
            Ok(_) => panic!("the attempt was not throttled"),
        }
    }

    #[test]
    fn failures_up_to_the_limit_then_refused_with_a_delay() {
        let t = LoginThrottle::new();
        let tenant = TenantId::new();
        for _ in 0..3 {
            drop(
                t.reserve(tenant, "bob", ip(1), 3, MINUTE)
                    .expect("within the limit"),
            );
        }
        let secs = retry_after(t.reserve(tenant, "bob", ip(1), 3, MINUTE));
        assert!((59..=60).contains(&secs), "{secs}");
        // Refused attempts take no slot: the IP still has room for others.
        for _ in 0..20 {
            let _ = t.reserve(tenant, "bob", ip(1), 3, MINUTE);
        }
        t.reserve(tenant, "alice", ip(1), 3, MINUTE)
            .expect("another user")
            .succeeded();
        // Other users, tenants and addresses are untouched.
        drop(
            t.reserve(TenantId::new(), "bob", ip(1), 3, MINUTE)
                .expect("other tenant"),
        );
        retry_after(t.reserve(tenant, "bob", ip(2), 3, MINUTE));
        retry_after(t.reserve(tenant, "bob", None, 3, MINUTE));
    }

    #[test]
    fn a_success_clears_the_user_and_gives_the_ip_slot_back() {
        let t = LoginThrottle::new();
        let tenant = TenantId::new();
        for _ in 0..2 {
            drop(t.reserve(tenant, "bob", ip(1), 3, MINUTE).expect("room"));
        }
        t.reserve(tenant, "bob", ip(1), 3, MINUTE)
            .expect("room")
            .succeeded();
        // Bob's count is cleared: three failures again before the lockout.
        for _ in 0..3 {
            drop(t.reserve(tenant, "bob", ip(1), 3, MINUTE).expect("cleared"));
        }
        retry_after(t.reserve(tenant, "bob", ip(1), 3, MINUTE));
        // The IP holds the five failures only (room 12), the success gave its slot back.
        for i in 0..7 {
            drop(
                t.reserve(tenant, &format!("u{i}"), ip(1), 3, MINUTE)
                    .expect("ip room"),
            );
        }
        retry_after(t.reserve(tenant, "carol", ip(1), 3, MINUTE));
    }

    #[test]
    fn a_released_attempt_keeps_earlier_failures() {
        let t = LoginThrottle::new();
        let tenant = TenantId::new();
        for _ in 0..2 {
            drop(t.reserve(tenant, "bob", ip(1), 3, MINUTE).expect("room"));
        }
        // A right password with a second factor to come: the two failures stay.
        for _ in 0..10 {
            t.reserve(tenant, "bob", ip(1), 3, MINUTE)
                .expect("room")
                .released();
        }
        drop(t.reserve(tenant, "bob", ip(1), 3, MINUTE).expect("third"));
        retry_after(t.reserve(tenant, "bob", ip(1), 3, MINUTE));
    }

    #[test]
    fn successes_alone_never_lock_anyone_out() {
        let t = LoginThrottle::new();
        let tenant = TenantId::new();
        for _ in 0..100 {
            t.reserve(tenant, "bob", ip(1), 1, MINUTE)
                .expect("room")
                .succeeded();
        }
        drop(t.reserve(tenant, "bob", ip(1), 1, MINUTE).expect("room"));
    }

    #[test]
    fn an_ip_gets_four_times_the_room_and_its_refusal_costs_the_user_nothing() {
        let t = LoginThrottle::new();
        let tenant = TenantId::new();
        for i in 0..(2 * IP_FACTOR) {
            drop(
                t.reserve(tenant, &format!("guess{i}"), ip(1), 2, MINUTE)
                    .expect("ip room"),
            );
        }
        retry_after(t.reserve(tenant, "bob", ip(1), 2, MINUTE));
        retry_after(t.reserve(tenant, "bob", ip(1), 2, MINUTE));
        // Bob was refused for the address only: his own count is untouched.
        for _ in 0..2 {
            drop(
                t.reserve(tenant, "bob", ip(2), 2, MINUTE)
                    .expect("bob's room"),
            );
        }
        retry_after(t.reserve(tenant, "bob", ip(2), 2, MINUTE));
    }

    #[test]
    fn the_window_passes() {
        let t = LoginThrottle::new();
        let tenant = TenantId::new();
        let window = Duration::from_millis(200);
        for _ in 0..2 {
            drop(t.reserve(tenant, "bob", ip(1), 2, window).expect("room"));
        }
        assert_eq!(retry_after(t.reserve(tenant, "bob", ip(1), 2, window)), 1);
        std::thread::sleep(window + Duration::from_millis(50));
        // A new window with a fresh count.
        for _ in 0..2 {
            drop(
                t.reserve(tenant, "bob", ip(1), 2, window)
                    .expect("new window"),
            );
        }
        retry_after(t.reserve(tenant, "bob", ip(1), 2, window));
    }

    #[test]
    fn a_give_back_never_touches_a_newer_window() {
        let t = LoginThrottle::new();
        let tenant = TenantId::new();
        let window = Duration::from_millis(100);
        let old = t.reserve(tenant, "bob", ip(1), 2, window).expect("room");
        std::thread::sleep(window + Duration::from_millis(20));
        for _ in 0..2 {
            drop(
                t.reserve(tenant, "bob", ip(1), 2, window)
                    .expect("new window"),
            );
        }
        // The old attempt succeeds: it clears bob, but the IP slot it gives back belongs
        // to the old window, so the new window keeps both of its failures.
        old.succeeded();
        let ip_count = t.by_ip.get(&IpAddr::from([10, 0, 0, 1])).map(|f| f.count);
        assert_eq!(ip_count, Some(2));
    }

    /// Many threads at once against one user: exactly `max` attempts get through.
    #[test]
    fn a_concurrent_burst_gets_exactly_the_limit() {
        let t = LoginThrottle::new();
        let tenant = TenantId::new();
        let threads = 16;
        let per_thread = 50;
        let passed = AtomicU32::new(0);
        let refused = AtomicU32::new(0);
        let barrier = Barrier::new(threads);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    barrier.wait();
                    for _ in 0..per_thread {
                        match t.reserve(tenant, "bob", ip(1), 5, MINUTE) {
                            // A wrong password: the slot stays taken.
                            Ok(attempt) => {
                                passed.fetch_add(1, Ordering::SeqCst);
                                drop(attempt);
                            }
                            Err(_) => {
                                refused.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                });
            }
        });
        assert_eq!(passed.load(Ordering::SeqCst), 5);
        assert_eq!(refused.load(Ordering::SeqCst), 16 * 50 - 5);
        let user = t.by_user.get(&(tenant, "bob".to_owned())).map(|f| f.count);
        assert_eq!(user, Some(5));
        // Refused attempts gave their IP slots back (or never took one).
        let ip_count = t.by_ip.get(&IpAddr::from([10, 0, 0, 1])).map(|f| f.count);
        assert_eq!(ip_count, Some(5));
    }

    /// Many threads at once over many usernames from one address: the address limit holds.
    #[test]
    fn a_concurrent_spray_from_one_address_gets_exactly_its_limit() {
        let t = LoginThrottle::new();
        let tenant = TenantId::new();
        let passed = AtomicU32::new(0);
        let barrier = Barrier::new(8);
        std::thread::scope(|s| {
            for n in 0..8 {
                let (t, passed, barrier) = (&t, &passed, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    for i in 0..40 {
                        if t.reserve(tenant, &format!("u{n}-{i}"), ip(9), 3, MINUTE)
                            .is_ok()
                        {
                            passed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        assert_eq!(passed.load(Ordering::SeqCst), 3 * IP_FACTOR);
    }

    /// Successes racing with failures: the limit on failures still holds.
    #[test]
    fn concurrent_successes_and_failures_keep_the_ip_count_exact() {
        let t = LoginThrottle::new();
        let tenant = TenantId::new();
        let barrier = Barrier::new(8);
        std::thread::scope(|s| {
            for n in 0..8 {
                let (t, barrier) = (&t, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    for i in 0..50 {
                        let name = format!("u{n}-{i}");
                        if let Ok(a) = t.reserve(tenant, &name, ip(3), 100, MINUTE) {
                            if n % 2 == 0 {
                                a.succeeded();
                            }
                        }
                    }
                });
            }
        });
        // Four threads failed 50 times each; the successes left nothing behind.
        let ip_count = t.by_ip.get(&IpAddr::from([10, 0, 0, 3])).map(|f| f.count);
        assert_eq!(ip_count, Some(200));
    }
}
