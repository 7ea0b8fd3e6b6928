//! The platform operator's signing key and the short-lived operator tokens it signs.

use std::sync::Arc;

use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use sea_orm::{EntityTrait, Set};
use serde::{Deserialize, Serialize};
use sigil_core::crypto::MasterKey;
use sigil_core::db::Db;
use sigil_core::{Error, Result};

use crate::entity::platform_secret;
use crate::keys::{decoding_key, generate_key, load_encoding_key};

pub const OPERATOR_ISSUER: &str = "sigil:platform";
const KEY_NAME: &str = "operator_signing_key";

#[derive(Debug, Serialize, Deserialize)]
pub struct OperatorClaims {
    pub iss: String,
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Serialize, Deserialize)]
struct StoredKey {
    kid: String,
    public_x: String,
    sealed: String,
}

pub struct PlatformKey {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl PlatformKey {
    /// Loads the operator key, creating it on first start. Concurrent first starts race on
    /// the primary key; the loser reads the winner's key.
    pub async fn load_or_create(db: &Db, master: &MasterKey) -> Result<Arc<Self>> {
        if let Some(found) = Self::load(db, master).await? {
            return Ok(found);
        }
        let key = generate_key(master, "op-")?;
        let stored = StoredKey {
            kid: key.kid,
            public_x: key.public_x,
            sealed: key.sealed,
        };
        let value = serde_json::to_string(&stored).map_err(Error::internal)?;
        let _ = platform_secret::Entity::insert(platform_secret::ActiveModel {
            name: Set(KEY_NAME.to_owned()),
            value: Set(value),
            created_at: Set(Utc::now()),
        })
        .exec_without_returning(db)
        .await;
        Self::load(db, master)
            .await?
            .ok_or_else(|| Error::internal("operator key missing"))
    }

    async fn load(db: &Db, master: &MasterKey) -> Result<Option<Arc<Self>>> {
        let Some(row) = platform_secret::Entity::find_by_id(KEY_NAME.to_owned())
            .one(db)
            .await?
        else {
            return Ok(None);
        };
        let stored: StoredKey = serde_json::from_str(&row.value).map_err(Error::internal)?;
        Ok(Some(Arc::new(Self {
            encoding: load_encoding_key(master, &stored.kid, &stored.sealed)?,
            decoding: decoding_key(&stored.public_x)?,
            kid: stored.kid,
        })))
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn issue(&self, ttl: std::time::Duration) -> Result<(String, i64)> {
        let now = Utc::now().timestamp();
        let exp = now + i64::try_from(ttl.as_secs()).map_err(Error::internal)?;
        let claims = OperatorClaims {
            iss: OPERATOR_ISSUER.to_owned(),
            sub: "operator".into(),
            iat: now,
            exp,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".into());
        let token =
            jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(Error::internal)?;
        Ok((token, exp))
    }

    pub fn verify(&self, token: &str) -> Option<OperatorClaims> {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[OPERATOR_ISSUER]);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        jsonwebtoken::decode::<OperatorClaims>(token, &self.decoding, &validation)
            .ok()
            .map(|d| d.claims)
    }
}
