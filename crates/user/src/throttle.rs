//! Login throttling per user and per client IP: after too many failures within the lockout
//! window, further attempts are refused with a retry delay.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use sigil_core::{Error, Result, TenantId};

#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    since: Instant,
}

#[derive(Clone)]
pub struct LoginThrottle {
    by_user: moka::sync::Cache<(TenantId, String), Failures>,
    by_ip: moka::sync::Cache<IpAddr, Failures>,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self::new()
    }
}

impl LoginThrottle {
    pub fn new() -> Self {
        let ttl = Duration::from_secs(86_400);
        Self {
            by_user: moka::sync::Cache::builder()
                .max_capacity(200_000)
                .time_to_idle(ttl)
                .build(),
            by_ip: moka::sync::Cache::builder()
                .max_capacity(200_000)
                .time_to_idle(ttl)
                .build(),
        }
    }

    fn retry_after(f: Option<Failures>, max: u32, window: Duration) -> Option<u64> {
        let f = f?;
        let elapsed = f.since.elapsed();
        (f.count >= max && elapsed < window).then(|| (window - elapsed).as_secs().max(1))
    }

    /// Refuses the attempt when the user or the IP is locked out.
    pub fn check(
        &self,
        tenant: TenantId,
        username: &str,
        ip: Option<IpAddr>,
        max: u32,
        window: Duration,
    ) -> Result<()> {
        let user = Self::retry_after(
            self.by_user.get(&(tenant, username.to_owned())),
            max,
            window,
        );
        // An IP gets more room than a single user: several people may share a NAT.
        let ip = ip.and_then(|ip| Self::retry_after(self.by_ip.get(&ip), max * 4, window));
        match user.or(ip) {
            Some(secs) => Err(Error::TooMany {
                code: "login_throttled",
                detail: "too many failed logins; try again later".into(),
                retry_after_secs: secs,
            }),
            None => Ok(()),
        }
    }

    pub fn record_failure(
        &self,
        tenant: TenantId,
        username: &str,
        ip: Option<IpAddr>,
        window: Duration,
    ) {
        let bump = |f: Option<Failures>| match f {
            Some(f) if f.since.elapsed() < window => Failures {
                count: f.count + 1,
                ..f
            },
            _ => Failures {
                count: 1,
                since: Instant::now(),
            },
        };
        let key = (tenant, username.to_owned());
        self.by_user
            .insert(key.clone(), bump(self.by_user.get(&key)));
        if let Some(ip) = ip {
            self.by_ip.insert(ip, bump(self.by_ip.get(&ip)));
        }
    }

    pub fn record_success(&self, tenant: TenantId, username: &str) {
        self.by_user.invalidate(&(tenant, username.to_owned()));
    }
}
