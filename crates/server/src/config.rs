//! Configuration: embedded defaults, then an optional TOML file, then `SIGIL_*` environment
//! variables; validated once at start with a message naming the bad setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use sigil_user::PasswordParams;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port.
    pub listen: String,
    /// `sqlite://...` or `postgres://...`; empty means a SQLite file in the data directory.
    pub database_url: String,
    pub data_dir: PathBuf,
    /// Base URL people and clients reach the server at (printed, used in links).
    pub public_url: String,
    /// Base64 of 32 bytes; when empty, a key is generated once into the data directory.
    pub master_key: String,
    /// `text` or `json`.
    pub log_format: String,
    pub log_level: String,
    /// Maximum request body size in bytes.
    pub body_limit: usize,
    pub db_max_connections: u32,
    /// CIDRs of reverse proxies whose X-Forwarded-For / Forwarded headers are trusted
    /// (a list, or one comma-separated string in the environment).
    #[serde(deserialize_with = "list_or_csv")]
    pub trusted_proxies: Vec<String>,
    pub cache_max_entries: u64,
    pub cache_ttl_secs: u64,
    pub usage_flush_secs: u64,
    pub audit_retention_days: u32,
    /// Plugin manifests loaded at start (JSON files).
    #[serde(deserialize_with = "paths_or_csv")]
    pub plugins: Vec<PathBuf>,
    pub argon2: PasswordParams,
    /// Seconds to wait for in-flight requests at shutdown.
    pub shutdown_grace_secs: u64,
    /// Refused verifications (401) allowed per client address and minute; past that, bad
    /// credentials from the address answer 429 until the minute is over (valid ones keep
    /// working). 0 turns the limit off.
    pub refusal_limit_per_minute: u32,
    /// Seconds a connection may stay silent (no byte read or written) before it is closed.
    pub idle_timeout_secs: u64,
    /// Seconds a client has to send a complete request head (slow-client protection).
    pub header_read_timeout_secs: u64,
    /// Public keys that sign leak reports of a secret scanning partner program (GitHub
    /// secret scanning): key identifier -> PEM of an ECDSA P-256 public key. A JSON object
    /// in the environment (`SIGIL_LEAK_REPORT_KEYS`). Empty: partner reports are refused.
    #[serde(deserialize_with = "map_or_json")]
    pub leak_report_keys: std::collections::BTreeMap<String, String>,
    /// Waits between webhook delivery attempts (`5s,5m,30m,2h,5h,10h,10h`: over a day).
    pub webhook_retry_schedule: String,
    /// Seconds an endpoint has to answer a delivery.
    pub webhook_timeout_secs: u64,
    /// Let webhooks reach private, loopback and link-local addresses (a trusted network).
    pub webhook_allow_private: bool,
    /// How often the delivery worker looks for new events and due retries (ms).
    pub webhook_poll_millis: u64,
    /// How often tokens are checked for `token.expiring` / `token.expired` (seconds).
    pub webhook_sweep_secs: u64,
    /// Days before expiry that `token.expiring` fires (once each).
    #[serde(deserialize_with = "days_or_csv")]
    pub webhook_expiring_days: Vec<u32>,
    /// Days the delivery log (finished deliveries and their events) is kept.
    pub webhook_retention_days: u32,
    /// `redis://host:port/db`: rate limits and credits are shared by every replica through
    /// this Redis. Empty: counters live in the process (right for one replica).
    pub redis_url: String,
    /// Prefix of Sigil's Redis keys; deployments sharing one Redis each need their own.
    pub redis_prefix: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            database_url: String::new(),
            data_dir: PathBuf::from("./sigil-data"),
            public_url: String::new(),
            master_key: String::new(),
            log_format: "text".into(),
            log_level: "info".into(),
            body_limit: 1024 * 1024,
            db_max_connections: 16,
            trusted_proxies: Vec::new(),
            cache_max_entries: 1_000_000,
            cache_ttl_secs: 60,
            usage_flush_secs: 2,
            audit_retention_days: 365,
            plugins: Vec::new(),
            argon2: PasswordParams::default(),
            shutdown_grace_secs: 20,
            refusal_limit_per_minute: 600,
            idle_timeout_secs: 60,
            header_read_timeout_secs: 15,
            leak_report_keys: std::collections::BTreeMap::new(),
            webhook_retry_schedule: sigil_webhook::schedule::DEFAULT.into(),
            webhook_timeout_secs: 15,
            webhook_allow_private: false,
            webhook_poll_millis: 1000,
            webhook_sweep_secs: 60,
            webhook_expiring_days: vec![7, 1],
            webhook_retention_days: 30,
            redis_url: String::new(),
            redis_prefix: "sigil:limits".into(),
        }
    }
}

/// A configuration problem: names the setting; the CLI prints it and exits with code 2.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {setting}: {message}")]
pub struct ConfigError {
    pub setting: String,
    pub message: String,
}

const KEYS: &[&str] = &[
    "listen",
    "database_url",
    "data_dir",
    "public_url",
    "master_key",
    "log_format",
    "log_level",
    "body_limit",
    "db_max_connections",
    "trusted_proxies",
    "cache_max_entries",
    "cache_ttl_secs",
    "usage_flush_secs",
    "audit_retention_days",
    "plugins",
    "shutdown_grace_secs",
    "refusal_limit_per_minute",
    "idle_timeout_secs",
    "header_read_timeout_secs",
    "leak_report_keys",
    "webhook_retry_schedule",
    "webhook_timeout_secs",
    "webhook_allow_private",
    "webhook_poll_millis",
    "webhook_sweep_secs",
    "webhook_expiring_days",
    "webhook_retention_days",
    "redis_url",
    "redis_prefix",
];

fn is_known_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    KEYS.contains(&key.as_str()) || key.starts_with("argon2_") || key.starts_with("argon2.")
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ListOrCsv {
    List(Vec<String>),
    Csv(String),
}

impl ListOrCsv {
    fn items(self) -> Vec<String> {
        match self {
            ListOrCsv::List(v) => v,
            ListOrCsv::Csv(s) => s
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }
}

fn list_or_csv<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(ListOrCsv::deserialize(d)?.items())
}

fn paths_or_csv<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
    Ok(ListOrCsv::deserialize(d)?
        .items()
        .into_iter()
        .map(PathBuf::from)
        .collect())
}

/// A list of day counts, or (from the environment) one comma-separated string.
fn days_or_csv<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum DaysOrCsv {
        List(Vec<u32>),
        One(u32),
        Csv(String),
    }
    match DaysOrCsv::deserialize(d)? {
        DaysOrCsv::List(v) => Ok(v),
        DaysOrCsv::One(n) => Ok(vec![n]),
        DaysOrCsv::Csv(s) => s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.parse::<u32>()
                    .map_err(|_| serde::de::Error::custom(format!("{p:?} is not a number of days")))
            })
            .collect(),
    }
}

/// A map, or (from the environment) a JSON object in a string.
fn map_or_json<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<std::collections::BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum MapOrJson {
        Map(std::collections::BTreeMap<String, String>),
        Json(String),
    }
    match MapOrJson::deserialize(d)? {
        MapOrJson::Map(m) => Ok(m),
        MapOrJson::Json(s) if s.trim().is_empty() => Ok(Default::default()),
        MapOrJson::Json(s) => serde_json::from_str(&s).map_err(|e| {
            serde::de::Error::custom(format!(
                "must be a JSON object of key id -> PEM public key ({e})"
            ))
        }),
    }
}

fn bad(setting: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        setting: setting.to_owned(),
        message: message.into(),
    }
}

impl Config {
    /// Loads defaults, then `file` (if given), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(bad(
                    "--config",
                    format!("file {} does not exist", file.display()),
                ));
            }
            figment = figment.merge(Toml::file(file));
        }
        // Only Sigil's own settings are read from the environment: platforms inject other
        // SIGIL_* variables (e.g. Kubernetes service links for a Service named `sigil`).
        figment = figment.merge(
            Env::prefixed("SIGIL_")
                .map(|key| key.as_str().replacen("argon2_", "argon2.", 1).into())
                .filter(|k| is_known_key(k.as_str())),
        );
        let config: Config = figment.extract().map_err(|e| {
            let setting = e
                .path
                .first()
                .map(|p| format!("SIGIL_{}", p.to_uppercase()))
                .unwrap_or_else(|| "configuration".into());
            bad(&setting, e.kind.to_string())
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        if !self.database_url.is_empty()
            && !self.database_url.starts_with("sqlite:")
            && !sigil_core::db::is_postgres(&self.database_url)
        {
            return Err(bad(
                "SIGIL_DATABASE_URL",
                "must start with sqlite:, postgres:// or postgresql://",
            ));
        }
        let url = &self.public_url;
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            return Err(bad(
                "SIGIL_PUBLIC_URL",
                "must be an http:// or https:// URL",
            ));
        }
        if !self.master_key.is_empty()
            && sigil_core::crypto::MasterKey::from_base64(&self.master_key).is_err()
        {
            return Err(bad(
                "SIGIL_MASTER_KEY",
                "must be base64 of exactly 32 bytes",
            ));
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(bad("SIGIL_LOG_FORMAT", "must be text or json"));
        }
        if self.body_limit < 1024 || self.body_limit > 64 * 1024 * 1024 {
            return Err(bad(
                "SIGIL_BODY_LIMIT",
                "must be between 1024 and 67108864 bytes",
            ));
        }
        if self.db_max_connections == 0 || self.db_max_connections > 1000 {
            return Err(bad(
                "SIGIL_DB_MAX_CONNECTIONS",
                "must be between 1 and 1000",
            ));
        }
        for entry in &self.trusted_proxies {
            if sigil_tenant::policy::parse_ip_net(entry).is_none() {
                return Err(bad(
                    "SIGIL_TRUSTED_PROXIES",
                    format!("{entry:?} is not an IP or CIDR"),
                ));
            }
        }
        if self.cache_ttl_secs == 0 || self.cache_ttl_secs > 3600 {
            return Err(bad("SIGIL_CACHE_TTL_SECS", "must be between 1 and 3600"));
        }
        if self.idle_timeout_secs == 0 || self.idle_timeout_secs > 3600 {
            return Err(bad("SIGIL_IDLE_TIMEOUT_SECS", "must be between 1 and 3600"));
        }
        if self.header_read_timeout_secs == 0 || self.header_read_timeout_secs > 300 {
            return Err(bad(
                "SIGIL_HEADER_READ_TIMEOUT_SECS",
                "must be between 1 and 300",
            ));
        }
        if self.usage_flush_secs == 0 || self.usage_flush_secs > 300 {
            return Err(bad("SIGIL_USAGE_FLUSH_SECS", "must be between 1 and 300"));
        }
        for (id, pem) in &self.leak_report_keys {
            if crate::api::leaks::parse_report_key(pem).is_none() {
                return Err(bad(
                    "SIGIL_LEAK_REPORT_KEYS",
                    format!("key {id:?} is not a PEM ECDSA P-256 public key"),
                ));
            }
        }
        if let Err(e) = sigil_webhook::RetrySchedule::parse(&self.webhook_retry_schedule) {
            return Err(bad("SIGIL_WEBHOOK_RETRY_SCHEDULE", e));
        }
        if self.webhook_timeout_secs == 0 || self.webhook_timeout_secs > 300 {
            return Err(bad(
                "SIGIL_WEBHOOK_TIMEOUT_SECS",
                "must be between 1 and 300",
            ));
        }
        if self.webhook_poll_millis < 50 || self.webhook_poll_millis > 600_000 {
            return Err(bad(
                "SIGIL_WEBHOOK_POLL_MILLIS",
                "must be between 50 and 600000",
            ));
        }
        if self.webhook_sweep_secs == 0 || self.webhook_sweep_secs > 86_400 {
            return Err(bad(
                "SIGIL_WEBHOOK_SWEEP_SECS",
                "must be between 1 and 86400",
            ));
        }
        if self
            .webhook_expiring_days
            .iter()
            .any(|d| *d == 0 || *d > 365)
        {
            return Err(bad(
                "SIGIL_WEBHOOK_EXPIRING_DAYS",
                "each must be between 1 and 365",
            ));
        }
        if self.webhook_retention_days == 0 {
            return Err(bad("SIGIL_WEBHOOK_RETENTION_DAYS", "must be at least 1"));
        }
        let redis_scheme = ["redis://", "unix://"]
            .iter()
            .any(|scheme| self.redis_url.starts_with(scheme));
        if self.redis_prefix.is_empty()
            || self.redis_prefix.len() > 64
            || self.redis_prefix.chars().any(|c| c.is_whitespace())
        {
            return Err(bad(
                "SIGIL_REDIS_PREFIX",
                "must be 1-64 characters without white space",
            ));
        }
        if !self.redis_url.is_empty() && !redis_scheme {
            return Err(bad(
                "SIGIL_REDIS_URL",
                "must be a redis:// or unix:// URL (or empty for counters in the process)",
            ));
        }
        if self.argon2.memory_kib < 8 * 1024
            || self.argon2.iterations == 0
            || self.argon2.parallelism == 0
        {
            return Err(bad(
                "SIGIL_ARGON2_MEMORY_KIB",
                "argon2 needs at least 8192 KiB, 1 iteration, 1 lane",
            ));
        }
        Ok(())
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.parse().map_err(|_| {
            bad(
                "SIGIL_LISTEN",
                format!("{:?} is not host:port (e.g. 127.0.0.1:8080)", self.listen),
            )
        })
    }

    /// The database URL, defaulting to a SQLite file in the data directory.
    pub fn effective_database_url(&self) -> String {
        if self.database_url.is_empty() {
            sigil_core::db::sqlite_url(&self.data_dir.join("sigil.db"))
        } else {
            self.database_url.clone()
        }
    }

    pub fn trusted_proxy_nets(&self) -> Vec<ipnet::IpNet> {
        self.trusted_proxies
            .iter()
            .filter_map(|e| sigil_tenant::policy::parse_ip_net(e))
            .collect()
    }
}
