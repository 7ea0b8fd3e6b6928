use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::ClientError;

/// Sigil's answer for one token, method and client address.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Decision {
    pub active: bool,
    /// Why the token was refused (e.g. `method_not_in_scope`), when inactive.
    pub code: Option<String>,
    pub username: Option<String>,
    pub tenant: Option<String>,
    pub token_id: Option<String>,
    pub scope: Option<String>,
}

/// Introspection client with a short-lived local cache keyed by a hash of the token, the
/// method and the client address (the token itself is never kept).
#[derive(Clone)]
pub struct Introspector {
    http: reqwest::Client,
    url: String,
    credential: Arc<str>,
    cache: moka::future::Cache<[u8; 32], Decision>,
}

impl Introspector {
    /// `base_url` is Sigil's address; `credential` a token of the plugin's tenant holding
    /// the `sigil.introspect` method.
    pub fn new(base_url: &str, credential: &str, ttl: Duration) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: format!("{}/api/v1/introspect", base_url.trim_end_matches('/')),
            credential: credential.into(),
            cache: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build(),
        }
    }

    /// May `token` call `method` from `client_ip`?
    pub async fn check(
        &self,
        token: &str,
        method: &str,
        client_ip: Option<IpAddr>,
    ) -> Result<Decision, ClientError> {
        let mut hasher = Sha256::new();
        hasher.update(token.as_bytes());
        hasher.update([0]);
        hasher.update(method.as_bytes());
        hasher.update([0]);
        hasher.update(
            client_ip
                .map(|i| i.to_string())
                .unwrap_or_default()
                .as_bytes(),
        );
        let key: [u8; 32] = hasher.finalize().into();
        if let Some(hit) = self.cache.get(&key).await {
            return Ok(hit);
        }
        let body = serde_json::json!({
            "token": token,
            "method": method,
            "client_ip": client_ip.map(|i| i.to_string()),
        });
        let resp = self
            .http
            .post(&self.url)
            .bearer_auth(&*self.credential)
            .json(&body)
            .send()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let status = resp.status().as_u16();
        if status != 200 {
            let body = resp.text().await.unwrap_or_default();
            return Err(ClientError::Status { status, body });
        }
        let decision: Decision = resp
            .json()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        self.cache.insert(key, decision.clone()).await;
        Ok(decision)
    }
}
