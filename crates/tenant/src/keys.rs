//! Per-tenant Ed25519 signing keys: creation, rotation with overlap, lookup for signing and
//! verification (cached), and the public JWKS.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::SigningKey;
use jsonwebtoken::{DecodingKey, EncodingKey};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set, TransactionTrait,
};
use serde::Serialize;
use sigil_core::crypto::MasterKey;
use sigil_core::db::Db;
use sigil_core::{Error, Result, TenantId};

use crate::entity::{signing_key, tenant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    Active,
    Retiring,
    Retired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Active => "active",
            KeyState::Retiring => "retiring",
            KeyState::Retired => "retired",
        }
    }

    /// The state as of `now`: a retiring key past its overlap counts as retired.
    fn of(model: &signing_key::Model, now: DateTime<Utc>) -> Self {
        match model.state.as_str() {
            "active" => KeyState::Active,
            "retiring" if model.retire_after.is_none_or(|t| t > now) => KeyState::Retiring,
            _ => KeyState::Retired,
        }
    }
}

/// Public facts about a key, safe to show to an admin.
#[derive(Clone, Debug, Serialize)]
pub struct SigningKeyInfo {
    pub kid: String,
    pub state: KeyState,
    pub algorithm: &'static str,
    pub public_key: String,
    pub created_at: DateTime<Utc>,
    pub retire_after: Option<DateTime<Utc>>,
}

/// A key ready for use on the hot path.
pub struct TenantKey {
    pub kid: String,
    pub tenant_id: TenantId,
    pub state: KeyState,
    pub retire_after: Option<DateTime<Utc>>,
    pub decoding: DecodingKey,
    /// Present only for the active key.
    pub encoding: Option<EncodingKey>,
}

impl TenantKey {
    pub fn verifies_at(&self, now: DateTime<Utc>) -> bool {
        match self.state {
            KeyState::Active => true,
            KeyState::Retiring => self.retire_after.is_none_or(|t| t > now),
            KeyState::Retired => false,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Jwk {
    pub kty: &'static str,
    pub crv: &'static str,
    pub x: String,
    pub kid: String,
    #[serde(rename = "use")]
    pub use_: &'static str,
    pub alg: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// A freshly generated key pair: the public half and the sealed PKCS#8 private half.
pub(crate) struct GeneratedKey {
    pub kid: String,
    pub public_x: String,
    pub sealed: String,
}

pub(crate) fn generate_key(master: &MasterKey, kid_prefix: &str) -> Result<GeneratedKey> {
    let signing = SigningKey::generate(&mut rand::rngs::OsRng);
    let public_x = URL_SAFE_NO_PAD.encode(signing.verifying_key().as_bytes());
    let digest = sigil_core::crypto::sha256_hex(signing.verifying_key().as_bytes());
    let kid = format!("{kid_prefix}{}", &digest[..16]);
    let der = signing.to_pkcs8_der().map_err(Error::internal)?;
    let sealed = master.seal(der.as_bytes(), &kid)?;
    Ok(GeneratedKey {
        kid,
        public_x,
        sealed,
    })
}

pub(crate) fn load_encoding_key(
    master: &MasterKey,
    kid: &str,
    sealed: &str,
) -> Result<EncodingKey> {
    let der = master.open(sealed, kid)?;
    Ok(EncodingKey::from_ed_der(&der))
}

pub(crate) fn decoding_key(public_x: &str) -> Result<DecodingKey> {
    DecodingKey::from_ed_components(public_x).map_err(Error::internal)
}

/// How long a cached key is trusted when [`KeyRing::new`] is used (the server's default
/// `cache_ttl_secs`); the server passes its configured TTL to [`KeyRing::with_ttl`].
pub const DEFAULT_KEY_CACHE_TTL: Duration = Duration::from_secs(60);

/// Keys of every tenant, loaded on demand and cached; the cache is dropped for a tenant
/// on rotation (locally, and on other replicas through the change feed). The TTL bounds
/// how long a replica that missed a notification keeps signing with, or accepting, a key
/// that was rotated out: the same bound as the verification cache (`cache_ttl_secs`).
#[derive(Clone)]
pub struct KeyRing {
    db: Db,
    master: MasterKey,
    by_kid: moka::sync::Cache<String, Option<Arc<TenantKey>>>,
    active: moka::sync::Cache<TenantId, Arc<TenantKey>>,
}

impl KeyRing {
    pub fn new(db: Db, master: MasterKey) -> Self {
        Self::with_ttl(db, master, DEFAULT_KEY_CACHE_TTL)
    }

    /// A key ring whose cached keys live at most `ttl` (the configured cache TTL).
    pub fn with_ttl(db: Db, master: MasterKey, ttl: Duration) -> Self {
        Self {
            db,
            master,
            // `invalidate_tenant` drops entries by predicate, which moka only allows when
            // invalidation closures are enabled (otherwise the call fails and is ignored).
            by_kid: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .support_invalidation_closures()
                .build(),
            active: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build(),
        }
    }

    pub fn master(&self) -> &MasterKey {
        &self.master
    }

    /// Inserts the first active key of a new tenant, inside the caller's transaction.
    pub async fn create_initial(
        &self,
        conn: &impl ConnectionTrait,
        tenant_id: TenantId,
    ) -> Result<String> {
        let key = generate_key(&self.master, "")?;
        insert_key(conn, tenant_id, &key, Utc::now()).await?;
        Ok(key.kid)
    }

    /// The key that signs new tokens of the tenant.
    pub async fn signing_key(&self, tenant_id: TenantId) -> Result<Arc<TenantKey>> {
        if let Some(key) = self.active.get(&tenant_id) {
            return Ok(key);
        }
        let model = signing_key::Entity::find()
            .filter(signing_key::Column::TenantId.eq(tenant_id))
            .filter(signing_key::Column::State.eq("active"))
            .order_by_desc(signing_key::Column::CreatedAt)
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::internal("tenant has no active signing key"))?;
        let key = Arc::new(self.materialise(&model, true)?);
        self.active.insert(tenant_id, key.clone());
        Ok(key)
    }

    /// A key that may verify tokens of `tenant_id`, or `None` when the kid is unknown, of
    /// another tenant, or retired.
    pub async fn verification_key(
        &self,
        tenant_id: TenantId,
        kid: &str,
    ) -> Result<Option<Arc<TenantKey>>> {
        if kid.is_empty() || kid.len() > 64 {
            return Ok(None);
        }
        let cached = match self.by_kid.get(kid) {
            Some(entry) => entry,
            None => {
                let model = signing_key::Entity::find_by_id(kid.to_owned())
                    .one(&self.db)
                    .await?;
                let entry = match model {
                    Some(m) => Some(Arc::new(self.materialise(&m, false)?)),
                    None => None,
                };
                self.by_kid.insert(kid.to_owned(), entry.clone());
                entry
            }
        };
        Ok(cached.filter(|k| k.tenant_id == tenant_id && k.verifies_at(Utc::now())))
    }

    fn materialise(&self, model: &signing_key::Model, with_private: bool) -> Result<TenantKey> {
        let state = KeyState::of(model, Utc::now());
        let encoding = if with_private && state == KeyState::Active {
            Some(load_encoding_key(
                &self.master,
                &model.kid,
                &model.private_key_sealed,
            )?)
        } else {
            None
        };
        Ok(TenantKey {
            kid: model.kid.clone(),
            tenant_id: model.tenant_id,
            state,
            retire_after: model.retire_after,
            decoding: decoding_key(&model.public_key)?,
            encoding,
        })
    }

    pub async fn list(&self, tenant_id: TenantId) -> Result<Vec<SigningKeyInfo>> {
        let now = Utc::now();
        let models = signing_key::Entity::find()
            .filter(signing_key::Column::TenantId.eq(tenant_id))
            .order_by_desc(signing_key::Column::CreatedAt)
            .all(&self.db)
            .await?;
        Ok(models
            .iter()
            .map(|m| SigningKeyInfo {
                kid: m.kid.clone(),
                state: KeyState::of(m, now),
                algorithm: "EdDSA",
                public_key: m.public_key.clone(),
                created_at: m.created_at,
                retire_after: m.retire_after,
            })
            .collect())
    }

    /// Makes a new key active; the previous active key keeps verifying for `overlap`.
    /// The tenant row is locked so concurrent rotations leave exactly one active key: the
    /// transaction starts by writing it (a row lock on PostgreSQL; on SQLite the write lock,
    /// taken before any read so a concurrent rotation waits instead of failing).
    pub async fn rotate(&self, tenant_id: TenantId, overlap: Duration) -> Result<SigningKeyInfo> {
        let key = generate_key(&self.master, "")?;
        let now = sigil_core::now();
        let retire_after = now + chrono::Duration::from_std(overlap).map_err(Error::internal)?;
        let txn = self.db.begin().await?;
        let locked = tenant::Entity::update_many()
            .col_expr(
                tenant::Column::UpdatedAt,
                sea_orm::sea_query::Expr::col(tenant::Column::UpdatedAt).into(),
            )
            .filter(tenant::Column::Id.eq(tenant_id))
            .exec(&txn)
            .await?;
        if locked.rows_affected == 0 {
            return Err(Error::not_found("tenant"));
        }
        signing_key::Entity::update_many()
            .col_expr(signing_key::Column::State, "retiring".into())
            .col_expr(signing_key::Column::RetiringAt, Some(now).into())
            .col_expr(signing_key::Column::RetireAfter, Some(retire_after).into())
            .filter(signing_key::Column::TenantId.eq(tenant_id))
            .filter(signing_key::Column::State.eq("active"))
            .exec(&txn)
            .await?;
        insert_key(&txn, tenant_id, &key, now).await?;
        txn.commit().await?;
        self.invalidate_tenant(tenant_id);
        Ok(SigningKeyInfo {
            kid: key.kid,
            state: KeyState::Active,
            algorithm: "EdDSA",
            public_key: key.public_x,
            created_at: now,
            retire_after: None,
        })
    }

    /// Drops cached keys of a tenant (after a rotation here or on another replica).
    pub fn invalidate_tenant(&self, tenant_id: TenantId) {
        self.active.invalidate(&tenant_id);
        let _ = self
            .by_kid
            .invalidate_entries_if(move |_, v| v.as_ref().is_none_or(|k| k.tenant_id == tenant_id));
    }

    pub fn invalidate_all(&self) {
        self.active.invalidate_all();
        self.by_kid.invalidate_all();
    }

    pub async fn jwks(&self, tenant_id: TenantId) -> Result<Jwks> {
        let keys = self
            .list(tenant_id)
            .await?
            .into_iter()
            .filter(|k| k.state != KeyState::Retired)
            .map(|k| Jwk {
                kty: "OKP",
                crv: "Ed25519",
                x: k.public_key,
                kid: k.kid,
                use_: "sig",
                alg: "EdDSA",
            })
            .collect();
        Ok(Jwks { keys })
    }
}

async fn insert_key(
    conn: &impl ConnectionTrait,
    tenant_id: TenantId,
    key: &GeneratedKey,
    now: DateTime<Utc>,
) -> Result<()> {
    signing_key::Entity::insert(signing_key::ActiveModel {
        kid: Set(key.kid.clone()),
        tenant_id: Set(tenant_id),
        public_key: Set(key.public_x.clone()),
        private_key_sealed: Set(key.sealed.clone()),
        state: Set("active".to_owned()),
        created_at: Set(now),
        retiring_at: Set(None),
        retire_after: Set(None),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(())
}
