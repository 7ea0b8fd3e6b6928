use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::RwLock;

use crate::ClientError;

#[derive(Clone, Debug, Deserialize)]
pub struct OfflineClaims {
    pub sub: String,
    pub tid: String,
    pub jti: String,
    pub exp: Option<i64>,
}

#[derive(Deserialize)]
struct Jwk {
    kid: String,
    x: String,
    #[serde(default)]
    alg: Option<String>,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

/// Verifies tokens of one tenant with its published keys (fetched once, refreshed when an
/// unknown `kid` shows up, at most every `min_refresh`).
pub struct OfflineVerifier {
    http: reqwest::Client,
    jwks_url: String,
    issuer: String,
    keys: RwLock<Vec<(String, Arc<DecodingKey>)>>,
    last_fetch: RwLock<Option<std::time::Instant>>,
    min_refresh: Duration,
}

impl OfflineVerifier {
    pub fn new(base_url: &str, tenant_slug: &str, tenant_id: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            jwks_url: format!(
                "{}/api/v1/tenants/{tenant_slug}/jwks.json",
                base_url.trim_end_matches('/')
            ),
            issuer: format!("sigil:tenant:{tenant_id}"),
            keys: RwLock::new(Vec::new()),
            last_fetch: RwLock::new(None),
            min_refresh: Duration::from_secs(30),
        }
    }

    /// Refetches the JWKS for an unknown `kid` at most this often (default 30 s), so
    /// garbage tokens cannot make the plugin hammer Sigil.
    pub fn with_min_refresh(mut self, every: Duration) -> Self {
        self.min_refresh = every;
        self
    }

    async fn refresh(&self) -> Result<(), ClientError> {
        if self
            .last_fetch
            .read()
            .await
            .is_some_and(|t| t.elapsed() < self.min_refresh)
        {
            return Ok(());
        }
        let jwks: Jwks = self
            .http
            .get(&self.jwks_url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| ClientError::Transport(e.to_string()))?
            .json()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let keys = jwks
            .keys
            .into_iter()
            .filter(|k| k.alg.as_deref().is_none_or(|a| a == "EdDSA"))
            .filter_map(|k| {
                DecodingKey::from_ed_components(&k.x)
                    .ok()
                    .map(|d| (k.kid, Arc::new(d)))
            })
            .collect();
        *self.keys.write().await = keys;
        *self.last_fetch.write().await = Some(std::time::Instant::now());
        Ok(())
    }

    async fn key(&self, kid: &str) -> Option<Arc<DecodingKey>> {
        self.keys
            .read()
            .await
            .iter()
            .find(|(k, _)| k == kid)
            .map(|(_, d)| d.clone())
    }

    /// Checks signature (EdDSA only, a key of this tenant), issuer, expiry and not-before.
    pub async fn verify(&self, token: &str) -> Result<OfflineClaims, ClientError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| ClientError::Invalid(e.to_string()))?;
        if header.alg != Algorithm::EdDSA
            || header.jku.is_some()
            || header.jwk.is_some()
            || header.x5u.is_some()
        {
            return Err(ClientError::Invalid(
                "only plain EdDSA tokens are accepted".into(),
            ));
        }
        let kid = header
            .kid
            .ok_or_else(|| ClientError::Invalid("no kid".into()))?;
        let key = match self.key(&kid).await {
            Some(k) => k,
            None => {
                self.refresh().await?;
                self.key(&kid)
                    .await
                    .ok_or_else(|| ClientError::Invalid("unknown signing key".into()))?
            }
        };
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&self.issuer]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        validation.set_required_spec_claims(&["iss", "sub"]);
        jsonwebtoken::decode::<OfflineClaims>(token, &key, &validation)
            .map(|d| d.claims)
            .map_err(|e| ClientError::Invalid(e.to_string()))
    }
}
