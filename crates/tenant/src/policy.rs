//! A tenant's rules for tokens and logins.

use serde::{Deserialize, Serialize};
use sigil_core::{Error, FieldError, Result};
use sigil_limits::RateLimit;

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
    /// Rate limits of every token that has none of its own.
    pub default_token_rate_limits: Vec<RateLimit>,
    /// Rate limits of every user who has none of their own, shared by all of the user's
    /// tokens.
    pub default_owner_rate_limits: Vec<RateLimit>,
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
            default_token_rate_limits: Vec::new(),
            default_owner_rate_limits: Vec::new(),
        }
    }
}

impl TenantPolicy {
    /// What `tenant.update_policy` keeps of a policy: every rule.
    pub fn audit_view(&self) -> serde_json::Value {
        serde_json::json!({
            "max_token_lifetime_days": self.max_token_lifetime_days,
            "allow_non_expiring_tokens": self.allow_non_expiring_tokens,
            "session_lifetime_secs": self.session_lifetime_secs,
            "allow_query_credentials": self.allow_query_credentials,
            "ip_allowlist": self.ip_allowlist,
            "require_password_confirmation": self.require_password_confirmation,
            "password_confirmation_secs": self.password_confirmation_secs,
            "login_max_failures": self.login_max_failures,
            "login_lockout_secs": self.login_lockout_secs,
            "max_tokens_per_user": self.max_tokens_per_user,
            "key_overlap_secs": self.key_overlap_secs,
            "detect_reuse_after_rotation": self.detect_reuse_after_rotation,
            "detect_reuse_after_regeneration": self.detect_reuse_after_regeneration,
            "require_two_factor": self.require_two_factor,
            "default_token_rate_limits": self.default_token_rate_limits,
            "default_owner_rate_limits": self.default_owner_rate_limits,
        })
    }

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
        for (field, limits) in [
            ("default_token_rate_limits", &self.default_token_rate_limits),
            ("default_owner_rate_limits", &self.default_owner_rate_limits),
        ] {
            if let Err(Error::Invalid { errors: found, .. }) =
                sigil_limits::spec::validate_rate_limits(field, limits)
            {
                errors.extend(found);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The fields a rejected policy names, in the order they were found.
    fn rejected_fields(policy: &TenantPolicy) -> Vec<String> {
        match policy.validate() {
            Err(Error::Invalid { code, errors, .. }) => {
                assert_eq!(code, "invalid_policy");
                errors.into_iter().map(|e| e.field).collect()
            }
            other => panic!("expected an invalid policy, got {other:?}"),
        }
    }

    #[test]
    fn the_default_policy_is_valid() {
        assert!(TenantPolicy::default().validate().is_ok());
    }

    #[test]
    fn every_bound_is_inclusive() {
        let lowest = TenantPolicy {
            max_token_lifetime_days: Some(1),
            session_lifetime_secs: 60,
            password_confirmation_secs: 30,
            login_max_failures: 1,
            login_lockout_secs: 1,
            max_tokens_per_user: 1,
            key_overlap_secs: 0,
            ..TenantPolicy::default()
        };
        assert!(lowest.validate().is_ok());
        let highest = TenantPolicy {
            max_token_lifetime_days: Some(3650),
            session_lifetime_secs: 3600,
            password_confirmation_secs: 3600,
            login_max_failures: 100,
            login_lockout_secs: 86_400,
            max_tokens_per_user: 10_000,
            key_overlap_secs: 7_776_000,
            ..TenantPolicy::default()
        };
        assert!(highest.validate().is_ok());
    }

    #[test]
    fn no_lifetime_cap_is_allowed() {
        let uncapped = TenantPolicy {
            max_token_lifetime_days: None,
            ..TenantPolicy::default()
        };
        assert!(uncapped.validate().is_ok());
    }

    #[test]
    fn values_just_outside_the_bounds_are_refused_by_field() {
        let below = TenantPolicy {
            max_token_lifetime_days: Some(0),
            session_lifetime_secs: 59,
            password_confirmation_secs: 29,
            login_max_failures: 0,
            login_lockout_secs: 0,
            max_tokens_per_user: 0,
            ..TenantPolicy::default()
        };
        assert_eq!(
            rejected_fields(&below),
            [
                "max_token_lifetime_days",
                "session_lifetime_secs",
                "password_confirmation_secs",
                "login_max_failures",
                "login_lockout_secs",
                "max_tokens_per_user",
            ]
        );
        let above = TenantPolicy {
            max_token_lifetime_days: Some(3651),
            session_lifetime_secs: 3601,
            password_confirmation_secs: 3601,
            login_max_failures: 101,
            login_lockout_secs: 86_401,
            max_tokens_per_user: 10_001,
            key_overlap_secs: 7_776_001,
            ..TenantPolicy::default()
        };
        assert_eq!(
            rejected_fields(&above),
            [
                "max_token_lifetime_days",
                "session_lifetime_secs",
                "password_confirmation_secs",
                "login_max_failures",
                "login_lockout_secs",
                "max_tokens_per_user",
                "key_overlap_secs",
            ]
        );
    }

    #[test]
    fn each_bad_allowlist_entry_is_named() {
        let policy = TenantPolicy {
            ip_allowlist: vec![
                "10.0.0.0/8".into(),
                "not-an-ip".into(),
                "2001:db8::/129".into(),
            ],
            ..TenantPolicy::default()
        };
        let Err(Error::Invalid { errors, .. }) = policy.validate() else {
            panic!("a bad allowlist entry must be refused");
        };
        let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(errors.len(), 2);
        assert!(errors.iter().all(|e| e.field == "ip_allowlist"));
        assert!(messages[0].contains("\"not-an-ip\""));
        assert!(messages[1].contains("\"2001:db8::/129\""));
    }

    #[test]
    fn an_allowlist_entry_is_a_network_or_a_single_address() {
        let net = |s: &str| parse_ip_net(s).map(|n| n.to_string());
        assert_eq!(net("10.0.0.0/8").as_deref(), Some("10.0.0.0/8"));
        // Host bits are dropped: the entry means the whole network.
        assert_eq!(net("10.1.2.3/8").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(net("192.0.2.7").as_deref(), Some("192.0.2.7/32"));
        assert_eq!(net("2001:db8::1").as_deref(), Some("2001:db8::1/128"));
        assert_eq!(net("  192.0.2.7 ").as_deref(), Some("192.0.2.7/32"));
        assert_eq!(net("192.0.2.300"), None);
        assert_eq!(net(""), None);
    }

    #[test]
    fn ip_nets_match_addresses_inside_the_allowlist() {
        let policy = TenantPolicy {
            ip_allowlist: vec!["10.0.0.0/8".into(), "192.0.2.7".into()],
            ..TenantPolicy::default()
        };
        let nets = policy.ip_nets();
        let allowed = |ip: &str| {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            nets.iter().any(|n| n.contains(&ip))
        };
        assert!(allowed("10.200.1.1"));
        assert!(allowed("192.0.2.7"));
        assert!(!allowed("192.0.2.8"));
        assert!(!allowed("11.0.0.1"));
    }

    #[test]
    fn a_stored_policy_missing_newer_fields_reads_with_their_defaults() {
        // A policy stored before reuse detection and two-factor sign-in existed.
        let stored = r#"{"max_token_lifetime_days": 30, "session_lifetime_secs": 900}"#;
        let policy: TenantPolicy = serde_json::from_str(stored).unwrap();
        assert_eq!(policy.max_token_lifetime_days, Some(30));
        assert_eq!(policy.session_lifetime_secs, 900);
        assert!(policy.detect_reuse_after_rotation);
        assert!(!policy.require_two_factor);
        assert_eq!(policy.login_max_failures, 5);
        assert!(policy.validate().is_ok());
    }

    #[test]
    fn a_policy_round_trips_through_its_stored_form() {
        let policy = TenantPolicy {
            max_token_lifetime_days: None,
            ip_allowlist: vec!["10.0.0.0/8".into()],
            require_two_factor: true,
            ..TenantPolicy::default()
        };
        let stored = serde_json::to_string(&policy).unwrap();
        assert_eq!(
            serde_json::from_str::<TenantPolicy>(&stored).unwrap(),
            policy
        );
    }

    #[test]
    fn the_audit_view_names_every_rule() {
        let policy = TenantPolicy {
            max_token_lifetime_days: None,
            default_owner_rate_limits: vec![RateLimit::new("hourly", 3600, 500)],
            ..TenantPolicy::default()
        };
        let view = policy.audit_view();
        // Every field of the policy, none more, none renamed.
        assert_eq!(view, serde_json::to_value(&policy).unwrap());
        assert_eq!(view["max_token_lifetime_days"], serde_json::Value::Null);
        assert_eq!(
            view["default_owner_rate_limits"],
            serde_json::json!([{"name": "hourly", "window_secs": 3600, "limit": 500}])
        );
    }
}
