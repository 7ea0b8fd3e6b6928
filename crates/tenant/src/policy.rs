//! A tenant's rules for tokens and logins.

use serde::{Deserialize, Serialize};
use sigil_core::{Error, FieldError, Result};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TenantPolicy {
    /// Longest lifetime a personal or application token may have, in days; `None` = no cap.
    pub max_token_lifetime_days: Option<u32>,
    /// Whether tokens without an expiry may be minted.
    pub allow_non_expiring_tokens: bool,
    /// Lifetime of a login session token in seconds (at most one hour).
    pub session_lifetime_secs: u32,
    /// Whether credentials may travel in the query string or a form body
    /// (`auth_token`, `session`); headers are always allowed.
    pub allow_query_credentials: bool,
    /// IPs/CIDRs every token of the tenant must come from, in addition to its own filter.
    pub ip_allowlist: Vec<String>,
    /// Whether token changes made with a login session need a recent password confirmation.
    pub require_password_confirmation: bool,
    /// How long a password confirmation lasts, in seconds.
    pub password_confirmation_secs: u32,
    /// Failed logins per user (and per client IP) before throttling.
    pub login_max_failures: u32,
    /// How long a throttled user or IP must wait, in seconds.
    pub login_lockout_secs: u32,
    /// Maximum number of personal/application tokens one user may own.
    pub max_tokens_per_user: u32,
    /// How long a rotated-out signing key keeps verifying, in seconds.
    pub key_overlap_secs: u32,
    /// Reuse detection: a secret replaced by the token's own rotation
    /// (`rotateCurrentToken`), presented after its grace period, revokes the token.
    pub detect_reuse_after_rotation: bool,
    /// Reuse detection for secrets replaced by `regenerateToken` too.
    pub detect_reuse_after_regeneration: bool,
    /// Every person must sign in with a second factor: one without it gets a session
    /// that can only enrol. Tokens and `api` users are not affected.
    pub require_two_factor: bool,
}

impl Default for TenantPolicy {
    fn default() -> Self {
        Self {
            max_token_lifetime_days: Some(365),
            allow_non_expiring_tokens: false,
            session_lifetime_secs: 3600,
            allow_query_credentials: true,
            ip_allowlist: Vec::new(),
            require_password_confirmation: true,
            password_confirmation_secs: 300,
            login_max_failures: 5,
            login_lockout_secs: 60,
            max_tokens_per_user: 100,
            key_overlap_secs: 86_400,
            detect_reuse_after_rotation: true,
            detect_reuse_after_regeneration: false,
            require_two_factor: false,
        }
    }
}

impl TenantPolicy {
    pub fn validate(&self) -> Result<()> {
        let mut errors = Vec::new();
        if let Some(days) = self.max_token_lifetime_days {
            if days == 0 || days > 3650 {
                errors.push(FieldError::new(
                    "max_token_lifetime_days",
                    "max_token_lifetime_days must be between 1 and 3650",
                ));
            }
        }
        if !(60..=3600).contains(&self.session_lifetime_secs) {
            errors.push(FieldError::new(
                "session_lifetime_secs",
                "session_lifetime_secs must be between 60 and 3600",
            ));
        }
        if !(30..=3600).contains(&self.password_confirmation_secs) {
            errors.push(FieldError::new(
                "password_confirmation_secs",
                "password_confirmation_secs must be between 30 and 3600",
            ));
        }
        if !(1..=100).contains(&self.login_max_failures) {
            errors.push(FieldError::new(
                "login_max_failures",
                "login_max_failures must be between 1 and 100",
            ));
        }
        if !(1..=86_400).contains(&self.login_lockout_secs) {
            errors.push(FieldError::new(
                "login_lockout_secs",
                "login_lockout_secs must be between 1 and 86400",
            ));
        }
        if !(1..=10_000).contains(&self.max_tokens_per_user) {
            errors.push(FieldError::new(
                "max_tokens_per_user",
                "max_tokens_per_user must be between 1 and 10000",
            ));
        }
        if self.key_overlap_secs > 90 * 86_400 {
            errors.push(FieldError::new(
                "key_overlap_secs",
                "key_overlap_secs must be at most 7776000 (90 days)",
            ));
        }
        for entry in &self.ip_allowlist {
            if parse_ip_net(entry).is_none() {
                errors.push(FieldError::new(
                    "ip_allowlist",
                    format!("ip_allowlist entry {entry:?} is not an IP or CIDR"),
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::invalid_with(
                "invalid_policy",
                "the tenant policy is invalid",
                errors,
            ))
        }
    }

    pub fn ip_nets(&self) -> Vec<ipnet::IpNet> {
        self.ip_allowlist
            .iter()
            .filter_map(|e| parse_ip_net(e))
            .collect()
    }
}

/// Accepts a CIDR (`10.0.0.0/8`, `2001:db8::/32`) or a bare address (a /32 or /128).
pub fn parse_ip_net(text: &str) -> Option<ipnet::IpNet> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .ok()
        .map(|n| n.trunc())
        .or_else(|| {
            text.parse::<std::net::IpAddr>()
                .ok()
                .map(ipnet::IpNet::from)
        })
}
