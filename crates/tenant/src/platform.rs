//! The platform operator's signing key, the short-lived operator tokens it signs, and their
//! revocation.
//!
//! Every operator token carries a `jti`. A revocation is stored in the database (the
//! `operator_revocation` row of `platform_secrets`, beside the key): a "not before" instant
//! that refuses every token issued earlier, and single revoked ids kept until their token
//! would have expired anyway. Verification only reads an in-memory copy; the replica that
//! revokes updates its copy at once, and every replica re-reads the row every
//! [`REFRESH_EVERY`] (the `sigil` command revokes from another process, and operator tokens
//! are not in the verification cache, so there is no cache entry to invalidate).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Set, TransactionTrait};
use serde::{Deserialize, Serialize};
use sigil_core::crypto::MasterKey;
use sigil_core::db::Db;
use sigil_core::{Error, Result};

use crate::entity::platform_secret;
use crate::keys::{decoding_key, generate_key, load_encoding_key};

pub const OPERATOR_ISSUER: &str = "sigil:platform";
const KEY_NAME: &str = "operator_signing_key";
const REVOCATION_NAME: &str = "operator_revocation";

/// The longest lifetime of an operator token.
pub const MAX_OPERATOR_TTL: Duration = Duration::from_secs(86_400);

/// How often every replica re-reads the stored revocations.
pub const REFRESH_EVERY: Duration = Duration::from_secs(2);

/// Clock leeway (seconds) allowed on `exp`.
const LEEWAY: u64 = 5;

#[derive(Debug, Serialize, Deserialize)]
pub struct OperatorClaims {
    pub iss: String,
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    /// Token id, for revoking one token. Absent only in tokens issued before operator
    /// tokens could be revoked one by one (those die with `revoke_all`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

/// Why an operator token is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperatorRefusal {
    /// Not an operator token of this platform, malformed, or expired.
    Invalid,
    /// Signed by the platform key but revoked.
    Revoked,
}

/// Stored revocations of operator tokens.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocations {
    /// Operator tokens issued (`iat`) before this Unix second are refused.
    #[serde(default)]
    pub not_before: i64,
    /// Revoked token ids, each with the expiry (Unix seconds) after which it is forgotten.
    #[serde(default)]
    pub jtis: BTreeMap<String, i64>,
}

impl Revocations {
    fn refuses(&self, claims: &OperatorClaims) -> bool {
        claims.iat < self.not_before
            || claims
                .jti
                .as_deref()
                .is_some_and(|jti| self.jtis.contains_key(jti))
    }

    fn parse(value: &str) -> Result<Self> {
        serde_json::from_str(value).map_err(Error::internal)
    }
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
    db: Db,
    revocations: RwLock<Arc<Revocations>>,
}

impl PlatformKey {
    /// Loads the operator key, creating it on first start. Concurrent first starts race on
    /// the primary key; the loser reads the winner's key. Inside a Tokio runtime, a task
    /// re-reads the revocations every [`REFRESH_EVERY`] while the key is alive.
    pub async fn load_or_create(db: &Db, master: &MasterKey) -> Result<Arc<Self>> {
        let key = match Self::load(db, master).await? {
            Some(found) => found,
            None => {
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
                    .ok_or_else(|| Error::internal("operator key missing"))?
            }
        };
        key.watch();
        Ok(key)
    }

    async fn load(db: &Db, master: &MasterKey) -> Result<Option<Arc<Self>>> {
        let Some(row) = platform_secret::Entity::find_by_id(KEY_NAME.to_owned())
            .one(db)
            .await?
        else {
            return Ok(None);
        };
        let stored: StoredKey = serde_json::from_str(&row.value).map_err(Error::internal)?;
        let revocations = read_revocations(db).await?;
        Ok(Some(Arc::new(Self {
            encoding: load_encoding_key(master, &stored.kid, &stored.sealed)?,
            decoding: decoding_key(&stored.public_x)?,
            kid: stored.kid,
            db: db.clone(),
            revocations: RwLock::new(Arc::new(revocations)),
        })))
    }

    /// Re-reads the revocations every [`REFRESH_EVERY`] until the key is dropped.
    fn watch(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let key = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut failing = false;
            loop {
                tokio::time::sleep(REFRESH_EVERY).await;
                let Some(key) = key.upgrade() else {
                    return;
                };
                match key.refresh().await {
                    Ok(()) => failing = false,
                    Err(e) => {
                        if !failing {
                            tracing::warn!(
                                error = %e,
                                "cannot re-read operator token revocations; keeping the last ones"
                            );
                        }
                        failing = true;
                    }
                }
            }
        });
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Signs an operator token valid for `ttl` (at most [`MAX_OPERATOR_TTL`]); returns it
    /// and its expiry (Unix seconds).
    pub fn issue(&self, ttl: Duration) -> Result<(String, i64)> {
        if ttl.is_zero() || ttl > MAX_OPERATOR_TTL {
            return Err(Error::invalid(
                "invalid_ttl",
                "an operator token lives between 1 second and 24 hours",
            ));
        }
        let now = Utc::now().timestamp();
        let exp = now + i64::try_from(ttl.as_secs()).map_err(Error::internal)?;
        let claims = OperatorClaims {
            iss: OPERATOR_ISSUER.to_owned(),
            sub: "operator".into(),
            iat: now,
            exp,
            jti: Some(uuid::Uuid::new_v4().to_string()),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".into());
        let token =
            jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(Error::internal)?;
        Ok((token, exp))
    }

    /// The claims of a valid, unrevoked operator token.
    pub fn verify(&self, token: &str) -> Option<OperatorClaims> {
        self.check(token).ok()
    }

    /// Like [`PlatformKey::verify`], saying why a token is refused.
    pub fn check(&self, token: &str) -> std::result::Result<OperatorClaims, OperatorRefusal> {
        let claims = self.decode(token, true).ok_or(OperatorRefusal::Invalid)?;
        if self.current().refuses(&claims) {
            return Err(OperatorRefusal::Revoked);
        }
        Ok(claims)
    }

    fn decode(&self, token: &str, check_expiry: bool) -> Option<OperatorClaims> {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[OPERATOR_ISSUER]);
        validation.leeway = LEEWAY;
        validation.validate_exp = check_expiry;
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        jsonwebtoken::decode::<OperatorClaims>(token, &self.decoding, &validation)
            .ok()
            .map(|d| d.claims)
    }

    /// The revocations in force on this replica.
    pub fn current(&self) -> Arc<Revocations> {
        match self.revocations.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set(&self, revocations: Revocations) {
        let revocations = Arc::new(revocations);
        match self.revocations.write() {
            Ok(mut r) => *r = revocations,
            Err(poisoned) => *poisoned.into_inner() = revocations,
        }
    }

    /// Re-reads the stored revocations (other replicas and the `sigil` command write them).
    pub async fn refresh(&self) -> Result<()> {
        let stored = read_revocations(&self.db).await?;
        if *self.current() != stored {
            self.set(stored);
        }
        Ok(())
    }

    /// Refuses every operator token issued so far. Returns the Unix second from which new
    /// tokens are accepted: the next whole second, since `iat` counts whole seconds (a
    /// token issued earlier in the current second is refused too; wait until then before
    /// issuing a new one).
    pub async fn revoke_all(&self) -> Result<i64> {
        let from = Utc::now().timestamp() + 1;
        let stored = self
            .update(|r| r.not_before = r.not_before.max(from))
            .await?;
        Ok(stored.not_before)
    }

    /// Refuses the operator token with this id. Its expiry is not known, so the id is kept
    /// for the longest operator token lifetime.
    pub async fn revoke_id(&self, jti: &str) -> Result<()> {
        let jti = jti.trim();
        if jti.is_empty() || jti.len() > 64 {
            return Err(Error::invalid(
                "invalid_jti",
                "a token id has 1 to 64 characters",
            ));
        }
        let keep_until = Utc::now().timestamp() + ttl_secs(MAX_OPERATOR_TTL);
        self.update(|r| {
            r.jtis.insert(jti.to_owned(), keep_until);
        })
        .await?;
        Ok(())
    }

    /// Refuses one operator token given in full (its signature is checked); returns its id.
    pub async fn revoke_token(&self, token: &str) -> Result<String> {
        let claims = self.decode(token.trim(), false).ok_or_else(|| {
            Error::invalid(
                "not_an_operator_token",
                "not an operator token signed by this platform's key",
            )
        })?;
        let jti = claims.jti.ok_or_else(|| {
            Error::invalid(
                "token_without_id",
                "this operator token has no id (issued by an older version); use --all",
            )
        })?;
        let exp = claims.exp;
        self.update(|r| {
            r.jtis.insert(jti.clone(), exp);
        })
        .await?;
        Ok(jti)
    }

    /// Applies a change to the stored revocations under a lock (concurrent revocations do
    /// not lose each other's ids), forgets ids of tokens expired by now, and applies the
    /// result to this replica at once.
    async fn update(&self, change: impl FnOnce(&mut Revocations)) -> Result<Revocations> {
        let txn = self.db.begin().await?;
        // Writes first: on SQLite the transaction takes the write lock before it reads, so
        // a concurrent revocation waits instead of failing; on PostgreSQL the UPDATE locks
        // the row.
        platform_secret::Entity::insert(platform_secret::ActiveModel {
            name: Set(REVOCATION_NAME.to_owned()),
            value: Set(serde_json::to_string(&Revocations::default()).map_err(Error::internal)?),
            created_at: Set(Utc::now()),
        })
        .on_conflict(
            OnConflict::column(platform_secret::Column::Name)
                .do_nothing()
                .to_owned(),
        )
        .do_nothing()
        .exec_without_returning(&txn)
        .await?;
        platform_secret::Entity::update_many()
            .col_expr(
                platform_secret::Column::Value,
                Expr::col(platform_secret::Column::Value).into(),
            )
            .filter(platform_secret::Column::Name.eq(REVOCATION_NAME))
            .exec(&txn)
            .await?;
        let row = platform_secret::Entity::find_by_id(REVOCATION_NAME.to_owned())
            .one(&txn)
            .await?
            .ok_or_else(|| Error::internal("operator revocations missing"))?;
        let mut revocations = Revocations::parse(&row.value)?;
        change(&mut revocations);
        let now = Utc::now().timestamp();
        revocations
            .jtis
            .retain(|_, exp| *exp + LEEWAY as i64 >= now);
        let value = serde_json::to_string(&revocations).map_err(Error::internal)?;
        platform_secret::Entity::update_many()
            .col_expr(platform_secret::Column::Value, value.into())
            .filter(platform_secret::Column::Name.eq(REVOCATION_NAME))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        self.set(revocations.clone());
        Ok(revocations)
    }
}

fn ttl_secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

async fn read_revocations(db: &Db) -> Result<Revocations> {
    match platform_secret::Entity::find_by_id(REVOCATION_NAME.to_owned())
        .one(db)
        .await?
    {
        Some(row) => Revocations::parse(&row.value),
        None => Ok(Revocations::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(iat: i64, jti: Option<&str>) -> OperatorClaims {
        OperatorClaims {
            iss: OPERATOR_ISSUER.to_owned(),
            sub: "operator".into(),
            iat,
            exp: iat + 60,
            jti: jti.map(str::to_owned),
        }
    }

    #[test]
    fn not_before_refuses_earlier_tokens_only() {
        let r = Revocations {
            not_before: 1_000,
            jtis: BTreeMap::new(),
        };
        assert!(r.refuses(&claims(999, Some("a"))));
        assert!(r.refuses(&claims(999, None)));
        assert!(!r.refuses(&claims(1_000, Some("a"))));
        assert!(!r.refuses(&claims(1_001, None)));
    }

    #[test]
    fn a_revoked_id_is_refused_and_others_are_not() {
        let r = Revocations {
            not_before: 0,
            jtis: BTreeMap::from([("gone".to_owned(), 2_000)]),
        };
        assert!(r.refuses(&claims(1_500, Some("gone"))));
        assert!(!r.refuses(&claims(1_500, Some("kept"))));
        assert!(!r.refuses(&claims(1_500, None)));
    }

    #[test]
    fn stored_revocations_parse_with_missing_fields() {
        assert_eq!(Revocations::parse("{}").ok(), Some(Revocations::default()));
    }
}
