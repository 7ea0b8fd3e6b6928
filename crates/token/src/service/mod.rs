//! Managing tokens: mint, list, change, regenerate, copy, delete, and login sessions.
//! Authorisation rules live here: members touch their own tokens, token managers and
//! admins every API token of the tenant; nobody crosses tenants; a token never carries
//! more rights or a later expiry than the credential that made it.
//!
//! One file per job: [`minting`] makes tokens and secrets, [`management`] reads, changes
//! and deletes them, [`sessions`] keeps login sessions, `store` holds the statements and
//! `validate` the field rules.

mod management;
mod minting;
pub mod sessions;
mod store;
mod validate;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sigil_core::db::Db;
use sigil_core::{Error, Result, TenantId, TokenId, UserId};
use sigil_scope_registry::store::ScopeSetStore;
use sigil_scope_registry::{MethodSet, Registry, Snapshot};
use sigil_tenant::KeyRing;
use sigil_user::{User, UserService};

use crate::changes::{Change, ChangeFeed};
use crate::entity;
use crate::jwt::{self, Claims};
use crate::types::TokenKind;
use crate::Principal;

pub use management::{TokenFilter, TokenPatch, TokenSort};
pub use minting::NewToken;
pub use validate::validate_ip_filter;

#[derive(Clone)]
pub struct TokenService {
    db: Db,
    keys: KeyRing,
    users: UserService,
    registry: Arc<Registry>,
    sets: ScopeSetStore,
    changes: Arc<ChangeFeed>,
}

impl TokenService {
    pub fn new(
        db: Db,
        keys: KeyRing,
        users: UserService,
        registry: Arc<Registry>,
        sets: ScopeSetStore,
        changes: Arc<ChangeFeed>,
    ) -> Self {
        Self {
            db,
            keys,
            users,
            registry,
            sets,
            changes,
        }
    }

    /// Signs the secret of generation `generation` of token `id`.
    async fn mint_secret(
        &self,
        tenant: TenantId,
        owner: UserId,
        id: TokenId,
        generation: i32,
        kind: TokenKind,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<String> {
        let key = self.keys.signing_key(tenant).await?;
        let now = Utc::now().timestamp();
        let claims = Claims {
            iss: jwt::issuer(tenant),
            sub: owner.to_string(),
            tid: tenant,
            jti: jwt::jti(id, generation),
            iat: now,
            nbf: now,
            exp: expires_at.map(|t| t.timestamp()),
            typ: kind.as_str().to_owned(),
        };
        jwt::sign(&key, &claims)
    }

    /// Loads a token the actor may manage; others' tokens answer 404 to members.
    async fn managed(&self, actor: &Principal, id: TokenId) -> Result<entity::Model> {
        let model = store::api_token(&self.db, actor.tenant_id, id).await?;
        if model.owner_id != actor.user_id && !actor.role.manages_all_tokens() {
            return Err(Error::not_found("token"));
        }
        Ok(model)
    }

    /// The owner of a managed token, and what the owner's role allows now.
    async fn owner_of(
        &self,
        snapshot: &Snapshot,
        actor: &Principal,
        model: &entity::Model,
    ) -> Result<(User, MethodSet)> {
        let owner = self
            .users
            .find(actor.tenant_id, model.owner_id)
            .await?
            .ok_or_else(|| Error::not_found("token"))?;
        let rights = crate::rights::role_rights(snapshot, actor.tenant_id.0, owner.role);
        Ok((owner, rights))
    }

    /// Tells the caches (here and on every replica) that the token changed.
    async fn token_changed(&self, tenant: TenantId, token: TokenId) {
        self.changes.publish(Change::Token { tenant, token }).await;
    }
}
