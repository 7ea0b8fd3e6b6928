//! Per-tenant Ed25519 signing keys: creation, rotation with overlap, lookup for signing and
//! verification (cached), and the public JWKS. [`KeyRing`] is the store and its caches;
//! [`SigningKeyService`] is what a tenant's admins do with their keys, and publishes each
//! rotation on the change feed.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use jsonwebtoken::{DecodingKey, EncodingKey};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set, TransactionTrait,
};
use serde::Serialize;
use sigil_audit::Actor;
use sigil_core::crypto::MasterKey;
use sigil_core::db::Db;
use sigil_core::{Change, ChangeFeed, Error, Result, TenantId, TenantOwned};

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

/// A key ready for use on the hot path: decoded once, when it is loaded into the cache
/// (the public point decompressed, the private key opened and parsed from PKCS#8), so
/// signing and verifying a token is the Ed25519 operation alone.
///
/// No `Debug`: it holds the private key.
pub struct TenantKey {
    pub kid: String,
    pub tenant_id: TenantId,
    pub state: KeyState,
    pub retire_after: Option<DateTime<Utc>>,
    /// The public key, as tokens are verified with it.
    pub verifying: VerifyingKey,
    /// The private key, as tokens are signed with it. Present only for the active key.
    pub signing: Option<SigningKey>,
    /// The same public key for `jsonwebtoken` (tests and tools that verify the standard
    /// way).
    pub decoding: DecodingKey,
    /// The same private key for `jsonwebtoken` (tests and tools that sign the standard
    /// way). Present only for the active key.
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

/// Opens a sealed private key (PKCS#8 DER, as [`generate_key`] seals it) and decodes it
/// once: the Ed25519 key, and the same bytes as a `jsonwebtoken` key.
pub(crate) fn load_signing_key(
    master: &MasterKey,
    kid: &str,
    sealed: &str,
) -> Result<(SigningKey, EncodingKey)> {
    let der = master.open(sealed, kid)?;
    let signing = SigningKey::from_pkcs8_der(&der)
        .map_err(|_| Error::internal("sealed signing key is not an Ed25519 PKCS#8 key"))?;
    Ok((signing, EncodingKey::from_ed_der(&der)))
}

pub(crate) fn decoding_key(public_x: &str) -> Result<DecodingKey> {
    DecodingKey::from_ed_components(public_x).map_err(Error::internal)
}

/// The stored public key (base64url of the 32-byte point, the JWK `x`), decompressed.
pub(crate) fn verifying_key(public_x: &str) -> Result<VerifyingKey> {
    let mut bytes = [0u8; 32];
    if URL_SAFE_NO_PAD.decode_slice(public_x, &mut bytes).ok() != Some(32) {
        return Err(Error::internal("stored public key is not 32 bytes"));
    }
    VerifyingKey::from_bytes(&bytes)
        .map_err(|_| Error::internal("stored public key is not an Ed25519 point"))
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
        let model = signing_key::Entity::find_in(tenant_id)
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
                // Looked up by kid alone: the cache is keyed by kid, and the tenant is
                // checked on the entry below, so another tenant's kid is refused either way.
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
        let (signing, encoding) = if with_private && state == KeyState::Active {
            let (signing, encoding) =
                load_signing_key(&self.master, &model.kid, &model.private_key_sealed)?;
            (Some(signing), Some(encoding))
        } else {
            (None, None)
        };
        Ok(TenantKey {
            kid: model.kid.clone(),
            tenant_id: model.tenant_id,
            state,
            retire_after: model.retire_after,
            verifying: verifying_key(&model.public_key)?,
            signing,
            decoding: decoding_key(&model.public_key)?,
            encoding,
        })
    }

    pub async fn list(&self, tenant_id: TenantId) -> Result<Vec<SigningKeyInfo>> {
        let now = Utc::now();
        let models = signing_key::Entity::find_in(tenant_id)
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
    /// Drops this replica's cached keys of the tenant but tells no other replica (they
    /// follow within the cache TTL) and writes no audit event: [`SigningKeyService::rotate`]
    /// is the rotation that publishes the change and files its event.
    ///
    /// The tenant row is locked so concurrent rotations leave exactly one active key: the
    /// transaction starts by writing it (a row lock on PostgreSQL; on SQLite the write lock,
    /// taken before any read so a concurrent rotation waits instead of failing).
    pub async fn rotate(&self, tenant_id: TenantId, overlap: Duration) -> Result<SigningKeyInfo> {
        self.rotate_by(None, tenant_id, overlap).await
    }

    /// [`KeyRing::rotate`], writing `actor`'s `signing_key.rotate` event (filed under the
    /// tenant) in the rotation's transaction when there is an actor.
    async fn rotate_by(
        &self,
        actor: Option<&Actor>,
        tenant_id: TenantId,
        overlap: Duration,
    ) -> Result<SigningKeyInfo> {
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
        signing_key::Entity::update_many_in(tenant_id)
            .col_expr(signing_key::Column::State, "retiring".into())
            .col_expr(signing_key::Column::RetiringAt, Some(now).into())
            .col_expr(signing_key::Column::RetireAfter, Some(retire_after).into())
            .filter(signing_key::Column::State.eq("active"))
            .exec(&txn)
            .await?;
        insert_key(&txn, tenant_id, &key, now).await?;
        if let Some(actor) = actor {
            let event = actor
                .event("signing_key.rotate", "signing_key")
                .in_tenant(tenant_id)
                .target(&key.kid)
                .after(serde_json::json!({"kid": key.kid, "overlap_secs": overlap.as_secs()}));
            sigil_audit::write(&txn, event).await?;
        }
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

/// A tenant's signing keys as its admins and the public see them: rotation, the list, the
/// JWKS.
#[derive(Clone)]
pub struct SigningKeyService {
    ring: KeyRing,
    changes: Arc<ChangeFeed>,
}

impl SigningKeyService {
    pub fn new(ring: KeyRing, changes: Arc<ChangeFeed>) -> Self {
        Self { ring, changes }
    }

    /// Rotates the tenant's key (`signing_key.rotate`, written with the rotation); every
    /// replica drops its cached keys of the tenant, so the new key signs everywhere and a
    /// key rotated out with no overlap stops verifying.
    pub async fn rotate(
        &self,
        actor: &Actor,
        tenant_id: TenantId,
        overlap: Duration,
    ) -> Result<SigningKeyInfo> {
        let key = self.ring.rotate_by(Some(actor), tenant_id, overlap).await?;
        self.changes
            .publish(Change::Keys { tenant: tenant_id })
            .await;
        Ok(key)
    }

    /// Every key of the tenant, newest first.
    pub async fn list(&self, tenant_id: TenantId) -> Result<Vec<SigningKeyInfo>> {
        self.ring.list(tenant_id).await
    }

    /// The public keys that verify tokens of the tenant with this slug.
    pub async fn jwks_of(&self, slug: &str) -> Result<Jwks> {
        let tenant = tenant::Entity::find()
            .filter(tenant::Column::Slug.eq(slug))
            .one(&self.ring.db)
            .await?
            .ok_or_else(|| Error::not_found("tenant"))?;
        self.ring.jwks(tenant.id).await
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

#[cfg(test)]
mod tests {
    use jsonwebtoken::{Algorithm, Header, Validation};
    use serde_json::{json, Value};
    use tokio::sync::broadcast::error::TryRecvError;

    use super::*;
    use crate::service::{NewTenant, TenantService};
    use crate::test_db;

    fn sign(key: &EncodingKey, kid: &str) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.to_owned());
        let claims = json!({"sub": "alice", "exp": Utc::now().timestamp() + 60});
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    }

    fn verifies(token: &str, key: &DecodingKey) -> bool {
        jsonwebtoken::decode::<Value>(token, key, &Validation::new(Algorithm::EdDSA)).is_ok()
    }

    struct Setup {
        ring: KeyRing,
        service: SigningKeyService,
        tenants: TenantService,
    }

    async fn setup() -> Setup {
        let db = test_db::migrated().await;
        let changes = test_db::feed(&db);
        let ring = KeyRing::new(db.clone(), MasterKey::generate());
        Setup {
            service: SigningKeyService::new(ring.clone(), changes.clone()),
            tenants: TenantService::new(db, changes),
            ring,
        }
    }

    /// A tenant with its first key, as onboarding leaves it.
    async fn tenant_with_key(s: &Setup, slug: &str) -> (TenantId, String) {
        let new = NewTenant {
            slug: slug.into(),
            name: None,
            policy: None,
        };
        let tenant = s.tenants.insert(&s.ring.db, new).await.unwrap();
        let kid = s.ring.create_initial(&s.ring.db, tenant.id).await.unwrap();
        (tenant.id, kid)
    }

    /// Lets the clock move past the last key's creation (keys are ordered by it, to the
    /// millisecond).
    async fn tick() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    #[test]
    fn a_generated_key_signs_what_its_published_half_verifies() {
        let master = MasterKey::generate();
        let key = generate_key(&master, "op-").unwrap();
        let encoding = load_encoding_key(&master, &key.kid, &key.sealed).unwrap();
        let token = sign(&encoding, &key.kid);
        assert!(verifies(&token, &decoding_key(&key.public_x).unwrap()));
        let other = generate_key(&master, "").unwrap();
        assert!(!verifies(&token, &decoding_key(&other.public_x).unwrap()));
    }

    #[test]
    fn the_kid_is_derived_from_the_public_key() {
        let key = generate_key(&MasterKey::generate(), "op-").unwrap();
        let public = URL_SAFE_NO_PAD.decode(&key.public_x).unwrap();
        assert_eq!(public.len(), 32);
        let digest = sigil_core::crypto::sha256_hex(&public);
        assert_eq!(key.kid, format!("op-{}", &digest[..16]));
    }

    #[test]
    fn the_sealed_private_key_opens_only_under_its_kid_and_master_key() {
        let master = MasterKey::generate();
        let key = generate_key(&master, "").unwrap();
        assert!(load_encoding_key(&master, "another-kid", &key.sealed).is_err());
        assert!(load_encoding_key(&MasterKey::generate(), &key.kid, &key.sealed).is_err());
        assert!(load_signing_key(&master, "another-kid", &key.sealed).is_err());
        assert!(load_signing_key(&MasterKey::generate(), &key.kid, &key.sealed).is_err());
    }

    #[test]
    fn the_decoded_keys_are_the_stored_pair_and_agree_with_jsonwebtokens() {
        use ed25519_dalek::Signer;
        let master = MasterKey::generate();
        let key = generate_key(&master, "").unwrap();
        let (signing, encoding) = load_signing_key(&master, &key.kid, &key.sealed).unwrap();
        let verifying = verifying_key(&key.public_x).unwrap();
        assert_eq!(signing.verifying_key(), verifying);
        // Ed25519 signatures are deterministic: both forms of the key sign alike.
        let token = sign(&encoding, &key.kid);
        let (message, signature) = token.rsplit_once('.').unwrap();
        let direct = URL_SAFE_NO_PAD.encode(signing.sign(message.as_bytes()).to_bytes());
        assert_eq!(direct, signature);
        let signature =
            ed25519_dalek::Signature::from_slice(&URL_SAFE_NO_PAD.decode(signature).unwrap())
                .unwrap();
        assert!(verifying
            .verify_strict(message.as_bytes(), &signature)
            .is_ok());
        // Not a key: refused when loaded, not when used.
        assert!(verifying_key("").is_err());
        assert!(verifying_key(&key.public_x[..20]).is_err());
        assert!(verifying_key(&format!("{}AA", key.public_x)).is_err());
        assert!(verifying_key("not base64!").is_err());
    }

    #[test]
    fn a_retiring_key_counts_as_retired_once_its_overlap_ends() {
        let now = Utc::now();
        let model = |state: &str, retire_after: Option<DateTime<Utc>>| signing_key::Model {
            kid: "k".into(),
            tenant_id: TenantId::new(),
            public_key: String::new(),
            private_key_sealed: String::new(),
            state: state.into(),
            created_at: now,
            retiring_at: None,
            retire_after,
        };
        let later = now + chrono::Duration::seconds(1);
        assert_eq!(KeyState::of(&model("active", None), now), KeyState::Active);
        assert_eq!(
            KeyState::of(&model("retiring", Some(later)), now),
            KeyState::Retiring
        );
        assert_eq!(
            KeyState::of(&model("retiring", None), now),
            KeyState::Retiring
        );
        assert_eq!(
            KeyState::of(&model("retiring", Some(now)), now),
            KeyState::Retired
        );
        assert_eq!(
            KeyState::of(&model("retired", None), now),
            KeyState::Retired
        );
    }

    #[tokio::test]
    async fn the_stored_active_key_signs_and_its_kid_verifies_for_its_tenant_only() {
        let s = setup().await;
        let (acme, kid) = tenant_with_key(&s, "acme").await;
        let (other, _) = tenant_with_key(&s, "other").await;
        let signing = s.ring.signing_key(acme).await.unwrap();
        assert_eq!(signing.kid, kid);
        assert_eq!(signing.state, KeyState::Active);
        let token = sign(signing.encoding.as_ref().unwrap(), &kid);
        let verifying = s.ring.verification_key(acme, &kid).await.unwrap().unwrap();
        assert!(
            verifying.encoding.is_none() && verifying.signing.is_none(),
            "only the signing lookup opens the private key"
        );
        let signer = signing.signing.as_ref().unwrap();
        assert_eq!(signer.verifying_key(), verifying.verifying);
        assert_eq!(signing.verifying, verifying.verifying);
        assert!(verifies(&token, &verifying.decoding));
        assert!(s
            .ring
            .verification_key(other, &kid)
            .await
            .unwrap()
            .is_none());
        assert!(s
            .ring
            .verification_key(acme, "unknown")
            .await
            .unwrap()
            .is_none());
        assert!(s.ring.verification_key(acme, "").await.unwrap().is_none());
        let too_long = "k".repeat(65);
        assert!(s
            .ring
            .verification_key(acme, &too_long)
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn a_rotated_out_key_verifies_during_its_overlap_only() {
        let s = setup().await;
        let (acme, first) = tenant_with_key(&s, "acme").await;
        let old_token = sign(
            s.ring
                .signing_key(acme)
                .await
                .unwrap()
                .encoding
                .as_ref()
                .unwrap(),
            &first,
        );

        tick().await;
        let second = s
            .service
            .rotate(&Actor::operator(), acme, Duration::from_secs(3600))
            .await
            .unwrap();
        assert_ne!(second.kid, first);
        assert_eq!(second.state, KeyState::Active);
        assert_eq!(s.ring.signing_key(acme).await.unwrap().kid, second.kid);
        let old = s
            .ring
            .verification_key(acme, &first)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(old.state, KeyState::Retiring);
        assert!(verifies(&old_token, &old.decoding));
        let listed: Vec<(String, KeyState)> = s
            .service
            .list(acme)
            .await
            .unwrap()
            .into_iter()
            .map(|k| (k.kid, k.state))
            .collect();
        assert_eq!(
            listed,
            [
                (second.kid.clone(), KeyState::Active),
                (first.clone(), KeyState::Retiring)
            ]
        );

        // No overlap: the key that was active stops verifying at once, even though this
        // replica had it cached as the active key.
        assert!(s
            .ring
            .verification_key(acme, &second.kid)
            .await
            .unwrap()
            .is_some());
        tick().await;
        let third = s
            .service
            .rotate(&Actor::operator(), acme, Duration::ZERO)
            .await
            .unwrap();
        assert!(s
            .ring
            .verification_key(acme, &second.kid)
            .await
            .unwrap()
            .is_none());
        assert!(s
            .ring
            .verification_key(acme, &first)
            .await
            .unwrap()
            .is_some());
        let jwks: Vec<String> = s
            .service
            .jwks_of("acme")
            .await
            .unwrap()
            .keys
            .into_iter()
            .map(|k| k.kid)
            .collect();
        assert_eq!(jwks, [third.kid, first]);
    }

    #[tokio::test]
    async fn rotation_is_published_for_the_tenant() {
        let s = setup().await;
        let (acme, _) = tenant_with_key(&s, "acme").await;
        let mut changes = s.service.changes.subscribe();
        s.service
            .rotate(&Actor::operator(), acme, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(changes.try_recv(), Ok(Change::Keys { tenant: acme }));
        let unknown = s
            .service
            .rotate(&Actor::operator(), TenantId::new(), Duration::ZERO)
            .await;
        assert!(matches!(unknown, Err(Error::NotFound { what: "tenant" })));
        assert_eq!(changes.try_recv(), Err(TryRecvError::Empty));
    }

    #[tokio::test]
    async fn the_jwks_holds_the_public_halves_of_the_named_tenant() {
        let s = setup().await;
        let (acme, kid) = tenant_with_key(&s, "acme").await;
        tenant_with_key(&s, "other").await;
        let jwks = s.service.jwks_of("acme").await.unwrap();
        assert_eq!(jwks.keys.len(), 1);
        let jwk = &jwks.keys[0];
        assert_eq!(
            (jwk.kty, jwk.crv, jwk.alg, jwk.use_),
            ("OKP", "Ed25519", "EdDSA", "sig")
        );
        assert_eq!(jwk.kid, kid);
        // The published `x` verifies what the tenant's key signs.
        let signing = s.ring.signing_key(acme).await.unwrap();
        let token = sign(signing.encoding.as_ref().unwrap(), &kid);
        assert!(verifies(&token, &decoding_key(&jwk.x).unwrap()));
        let unknown = s.service.jwks_of("nobody").await;
        assert!(matches!(unknown, Err(Error::NotFound { what: "tenant" })));
    }

    #[tokio::test]
    async fn a_rotation_is_one_event_by_its_actor_naming_the_new_key() {
        let s = setup().await;
        let (acme, _) = tenant_with_key(&s, "acme").await;
        let admin = test_db::alice(acme);
        let key = s
            .service
            .rotate(&admin, acme, Duration::from_secs(60))
            .await
            .unwrap();
        let events = test_db::events(&s.ring.db).await;
        assert_eq!(events.len(), 1, "{events:#?}");
        let e = &events[0];
        assert_eq!(e.action, "signing_key.rotate");
        assert_eq!(e.target_type, "signing_key");
        assert_eq!(e.target_id.as_deref(), Some(key.kid.as_str()));
        assert_eq!(e.tenant_id, Some(acme));
        assert_eq!(e.actor_id, admin.user);
        assert_eq!(e.actor_label, "alice");
        assert_eq!(e.credential_id, admin.credential);
        assert_eq!(e.client_ip.as_deref(), Some("192.0.2.7"));
        assert_eq!(e.user_agent.as_deref(), Some("sdk/1"));
        assert_eq!(e.before, None);
        assert_eq!(
            test_db::json(&e.after),
            json!({"kid": key.kid, "overlap_secs": 60})
        );
    }

    #[tokio::test]
    async fn an_operators_rotation_is_filed_under_the_tenant() {
        let s = setup().await;
        let (acme, _) = tenant_with_key(&s, "acme").await;
        s.service
            .rotate(&test_db::operator(), acme, Duration::ZERO)
            .await
            .unwrap();
        let events = test_db::events(&s.ring.db).await;
        assert_eq!(events.len(), 1, "{events:#?}");
        assert_eq!(events[0].tenant_id, Some(acme));
        assert_eq!(events[0].actor_label, "operator");
        assert_eq!(events[0].actor_id, None);
    }

    #[tokio::test]
    async fn a_refused_rotation_writes_no_event_nor_does_the_key_rings_own() {
        let s = setup().await;
        let (acme, _) = tenant_with_key(&s, "acme").await;
        let unknown = TenantId::new();
        let refused = s
            .service
            .rotate(&test_db::alice(unknown), unknown, Duration::ZERO)
            .await;
        assert!(matches!(refused, Err(Error::NotFound { what: "tenant" })));
        s.ring.rotate(acme, Duration::ZERO).await.unwrap();
        assert!(test_db::events(&s.ring.db).await.is_empty());
    }
}
