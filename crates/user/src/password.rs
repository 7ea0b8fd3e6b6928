//! Argon2id password hashing, run off the async runtime behind a semaphore so a burst of
//! logins cannot starve request handling or exhaust memory.

use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};
use sigil_core::{Error, FieldError, Result};
use tokio::sync::Semaphore;
use tracing::Instrument;

/// Argon2id cost; the defaults are OWASP's recommendation (19 MiB, 2 passes, 1 lane).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PasswordParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    /// Hashes computed at once; further requests wait.
    pub max_concurrent: usize,
    pub min_length: usize,
}

impl Default for PasswordParams {
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
            max_concurrent: 4,
            min_length: 12,
        }
    }
}

#[derive(Clone)]
pub struct PasswordHasher {
    argon: Arc<Argon2<'static>>,
    permits: Arc<Semaphore>,
    dummy_hash: Arc<String>,
    min_length: usize,
}

impl PasswordHasher {
    pub fn new(params: PasswordParams) -> Result<Self> {
        let p = Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            None,
        )
        .map_err(|e| Error::invalid("invalid_argon2_params", e.to_string()))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, p);
        let salt = SaltString::generate(&mut OsRng);
        let dummy = argon
            .hash_password(b"sigil-dummy-password", &salt)
            .map_err(Error::internal)?
            .to_string();
        Ok(Self {
            argon: Arc::new(argon),
            permits: Arc::new(Semaphore::new(params.max_concurrent.max(1))),
            dummy_hash: Arc::new(dummy),
            min_length: params.min_length,
        })
    }

    /// Checks the password policy: long enough, not too long, not the username.
    pub fn check_policy(&self, field: &str, username: &str, password: &str) -> Result<()> {
        let len = password.chars().count();
        let mut errors = Vec::new();
        if len < self.min_length {
            errors.push(format!(
                "password must have at least {} characters",
                self.min_length
            ));
        }
        if len > 256 {
            errors.push("password must have at most 256 characters".to_owned());
        }
        if !username.is_empty() && password.to_lowercase().contains(&username.to_lowercase()) {
            errors.push("password must not contain the username".to_owned());
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::invalid_with(
                "weak_password",
                "the password does not meet the policy",
                errors
                    .into_iter()
                    .map(|message| FieldError::new(field, message))
                    .collect(),
            ))
        }
    }

    pub async fn hash(&self, password: String) -> Result<String> {
        async {
            let _permit = self.permits.acquire().await.map_err(Error::internal)?;
            let argon = self.argon.clone();
            tokio::task::spawn_blocking(move || {
                let salt = SaltString::generate(&mut OsRng);
                argon
                    .hash_password(password.as_bytes(), &salt)
                    .map(|h| h.to_string())
            })
            .await
            .map_err(Error::internal)?
            .map_err(Error::internal)
        }
        .instrument(tracing::debug_span!("argon2", op = "hash"))
        .await
    }

    /// Verifies a password; with no stored hash it verifies against a dummy so the time
    /// taken does not reveal whether the user exists.
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool> {
        async {
            let _permit = self.permits.acquire().await.map_err(Error::internal)?;
            let argon = self.argon.clone();
            let known = stored.is_some();
            let hash = stored.unwrap_or_else(|| self.dummy_hash.as_str().to_owned());
            let ok = tokio::task::spawn_blocking(move || {
                PasswordHash::new(&hash)
                    .map(|parsed| argon.verify_password(password.as_bytes(), &parsed).is_ok())
                    .unwrap_or(false)
            })
            .await
            .map_err(Error::internal)?;
            Ok(ok && known)
        }
        .instrument(tracing::debug_span!("argon2", op = "verify"))
        .await
    }
}
