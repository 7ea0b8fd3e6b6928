//! Managing tokens: mint, list, change, regenerate, copy, delete, and login sessions.
//! Authorisation rules live here: members touch their own tokens, token managers and
//! admins every API token of the tenant; nobody crosses tenants; a token never carries
//! more rights or a later expiry than the credential that made it.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::{Expr, Func};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Select, Set, TransactionTrait,
};
use sigil_core::crypto::sha256_hex;
use sigil_core::db::Db;
use sigil_core::page::{Page, PageRequest};
use sigil_core::{Error, FieldError, Result, TenantId, TokenId, UserId};
use sigil_scope_registry::store::ScopeSetStore;
use sigil_scope_registry::{MethodSet, Registry, Snapshot};
use sigil_tenant::KeyRing;
use sigil_user::{User, UserKind, UserService};

use crate::ceiling::{self, Expiry};
use crate::changes::{Change, ChangeFeed};
use crate::jwt::{self, Claims};
use crate::types::{scope_of, Minted, Scope, Token, TokenKind};
use crate::verifier::Principal;
use crate::{entity, scope};

#[derive(Clone, Debug)]
pub struct NewToken {
    pub kind: TokenKind,
    pub owner: Option<UserId>,
    pub name: String,
    pub description: String,
    pub scope: Scope,
    pub expires_at: Option<DateTime<Utc>>,
    pub ip_filter: Vec<String>,
    pub enabled: bool,
}

#[derive(Clone, Debug, Default)]
pub struct TokenPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub scope: Option<Scope>,
    pub expires_at: Option<Option<DateTime<Utc>>>,
    pub ip_filter: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TokenSort {
    #[default]
    CreatedDesc,
    CreatedAsc,
    Name,
    ExpiresAt,
    LastUsedDesc,
}

#[derive(Clone, Debug, Default)]
pub struct TokenFilter {
    pub owner: Option<UserId>,
    pub kind: Option<TokenKind>,
    pub enabled: Option<bool>,
    pub expired: Option<bool>,
    pub scope_set: Option<String>,
    pub q: Option<String>,
    pub sort: TokenSort,
    /// Only tokens expiring before this instant (and not yet expired).
    pub expiring_before: Option<DateTime<Utc>>,
    /// Only tokens not used since this instant (or never used and created before it).
    pub unused_since: Option<DateTime<Utc>>,
}

#[derive(Clone)]
pub struct TokenService {
    db: Db,
    keys: KeyRing,
    users: UserService,
    registry: Arc<Registry>,
    sets: ScopeSetStore,
    changes: Arc<ChangeFeed>,
}

fn in_tenant(tenant: TenantId) -> Select<entity::Entity> {
    entity::Entity::find().filter(entity::Column::TenantId.eq(tenant))
}

fn validate_text(name: &str, description: &str) -> Result<()> {
    let mut errors = Vec::new();
    if name.trim().is_empty() || name.chars().count() > 200 {
        errors.push(FieldError::new("name", "name must be 1-200 characters"));
    }
    if description.chars().count() > 2000 {
        errors.push(FieldError::new(
            "description",
            "description must be at most 2000 characters",
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::invalid_with(
            "invalid_token",
            "the token's fields are invalid",
            errors,
        ))
    }
}

pub fn validate_ip_filter(entries: &[String]) -> Result<Vec<String>> {
    let mut bad = Vec::new();
    let mut normalised = Vec::new();
    for entry in entries {
        match sigil_tenant::policy::parse_ip_net(entry) {
            Some(net) => normalised.push(net.to_string()),
            None => bad.push(FieldError::new(
                format!("ip_filter[{}]", normalised.len() + bad.len()),
                format!("{entry:?} is not an IP address or CIDR block"),
            )),
        }
    }
    if entries.len() > 100 {
        bad.push(FieldError::new("ip_filter", "at most 100 entries"));
    }
    if bad.is_empty() {
        Ok(normalised)
    } else {
        Err(Error::invalid_with(
            "invalid_ip_filter",
            "some IP filter entries are not IPs or CIDRs",
            bad,
        ))
    }
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

    async fn model(&self, tenant: TenantId, id: TokenId) -> Result<entity::Model> {
        in_tenant(tenant)
            .filter(entity::Column::Id.eq(id))
            .filter(entity::Column::Kind.ne(TokenKind::Session.as_str()))
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::not_found("token"))
    }

    /// Loads a token the actor may manage; others' tokens answer 404 to members.
    async fn managed(&self, actor: &Principal, id: TokenId) -> Result<entity::Model> {
        let model = self.model(actor.tenant_id, id).await?;
        if model.owner_id != actor.user_id && !actor.role.manages_all_tokens() {
            return Err(Error::not_found("token"));
        }
        Ok(model)
    }

    /// Who will own a new token: the actor, or (for admins and token managers) the user
    /// they name.
    fn owner_id_for(actor: &Principal, new: &NewToken) -> Result<UserId> {
        let owner_id = new.owner.unwrap_or(actor.user_id);
        if owner_id != actor.user_id && !actor.role.manages_all_tokens() {
            return Err(Error::forbidden(
                "user_lacks_permission",
                "only admins and token managers create tokens for other users",
            ));
        }
        Ok(owner_id)
    }

    /// Whether `owner` may own a token of `kind`.
    fn check_owner(owner: &User, kind: TokenKind) -> Result<()> {
        if owner.is_system {
            return Err(Error::invalid_field(
                "system_user",
                "owner_id",
                "the system user cannot own a token",
            ));
        }
        if !owner.active {
            return Err(Error::invalid_field(
                "owner_deactivated",
                "owner_id",
                "the owner is deactivated",
            ));
        }
        match kind {
            TokenKind::Application if owner.kind != UserKind::Api => Err(Error::invalid_field(
                "owner_not_api_user",
                "owner_id",
                "an application token must be owned by an api user",
            )),
            TokenKind::Session => Err(Error::invalid_field(
                "invalid_kind",
                "kind",
                "kind must be personal or application",
            )),
            _ => Ok(()),
        }
    }

    pub async fn create(&self, actor: &Principal, new: NewToken) -> Result<Minted> {
        self.mint(actor, new, None).await
    }

    /// Creates a token (a copy when `copied_ceiling` is given: the source's stored
    /// ceiling, carried over). Every right and the expiry are decided by the one ceiling.
    async fn mint(
        &self,
        actor: &Principal,
        new: NewToken,
        copied_ceiling: Option<Option<String>>,
    ) -> Result<Minted> {
        validate_text(&new.name, &new.description)?;
        let ip_filter = validate_ip_filter(&new.ip_filter)?;
        let owner_id = Self::owner_id_for(actor, &new)?;
        // The secret is signed first (it may read the signing key). Then one statement
        // reads the owner and locks its row, and the limit-guarded insert runs under that
        // lock, so concurrent creations cannot pass the limit together (a row lock on
        // PostgreSQL; SQLite runs one transaction at a time on its one connection).
        let id = TokenId::new();
        let secret = self
            .mint_secret(actor.tenant_id, owner_id, id, 1, new.kind, new.expires_at)
            .await?;
        // Resolved before the transaction: a custom set is read from storage, and on
        // SQLite the transaction holds the only connection.
        let snapshot = self.registry.current();
        let wanted =
            scope::resolve_strict(&snapshot, &self.sets, actor.tenant_id, &new.scope).await?;
        let txn = self.db.begin().await?;
        let owner = sigil_user::entity::Entity::find()
            .filter(sigil_user::entity::Column::TenantId.eq(actor.tenant_id))
            .filter(sigil_user::entity::Column::Id.eq(owner_id))
            .lock_exclusive()
            .one(&txn)
            .await?
            .as_ref()
            .map(User::try_from)
            .transpose()?
            .ok_or_else(|| {
                Error::invalid_field("unknown_owner", "owner_id", "the owner does not exist")
            })?;
        Self::check_owner(&owner, new.kind)?;
        let owner_rights = crate::rights::role_rights(&snapshot, actor.tenant_id.0, owner.role);
        let source_ceiling = copied_ceiling
            .as_ref()
            .map(|stored| ceiling::from_stored(&snapshot, actor.tenant_id, stored.as_deref()));
        let request = match &source_ceiling {
            None => ceiling::Request::Create {
                scope: &wanted,
                expires_at: new.expires_at,
            },
            Some(source) => ceiling::Request::Copy {
                source: ceiling::Existing {
                    scope: &wanted,
                    ceiling: source.as_ref(),
                    expires_at: new.expires_at,
                },
                expires_at: new.expires_at,
            },
        };
        let decision = ceiling::decide(actor, &owner, &owner_rights, request)?;
        self.insert_decided(
            txn, actor, &snapshot, &owner, new, ip_filter, id, secret, decision,
        )
        .await
    }

    /// Inserts a decided token under the owner's lock (within the per-user limit).
    #[allow(clippy::too_many_arguments)]
    async fn insert_decided(
        &self,
        txn: sea_orm::DatabaseTransaction,
        actor: &Principal,
        snapshot: &Snapshot,
        owner: &User,
        new: NewToken,
        ip_filter: Vec<String>,
        id: TokenId,
        secret: String,
        decision: ceiling::Decision,
    ) -> Result<Minted> {
        let limit = actor.policy.max_tokens_per_user;
        let stored_ceiling = ceiling::to_stored(snapshot, decision.ceiling.as_ref())?;
        let kind = new.kind;
        let model = Self::new_model(
            actor.tenant_id,
            owner,
            Some(actor.user_id),
            kind,
            new,
            ip_filter,
            id,
            &secret,
            stored_ceiling,
        )?;
        let Some(stored) =
            insert_within_limit(&txn, model, actor.tenant_id, owner.id, limit).await?
        else {
            return Err(Error::conflict(
                "token_limit_reached",
                format!("a user may own at most {limit} tokens"),
            ));
        };
        let minted = Minted {
            token: Token::try_from(&stored)?,
            secret,
        };
        crate::events::token_event(
            &txn,
            sigil_core::outbox::events::TOKEN_CREATED,
            &stored,
            serde_json::json!({ "created_by": actor.user_id.0 }),
        )
        .await?;
        txn.commit().await?;
        Ok(minted)
    }

    async fn insert(
        &self,
        tenant: TenantId,
        owner: &User,
        created_by: Option<UserId>,
        kind: TokenKind,
        new: NewToken,
        ip_filter: Vec<String>,
    ) -> Result<Minted> {
        let id = TokenId::new();
        let secret = self
            .mint_secret(tenant, owner.id, id, 1, kind, new.expires_at)
            .await?;
        let model = Self::new_model(
            tenant, owner, created_by, kind, new, ip_filter, id, &secret, None,
        )?
        .insert(&self.db)
        .await?;
        Ok(Minted {
            token: Token::try_from(&model)?,
            secret,
        })
    }

    /// The row of a new token (generation 1, never used).
    #[allow(clippy::too_many_arguments)]
    fn new_model(
        tenant: TenantId,
        owner: &User,
        created_by: Option<UserId>,
        kind: TokenKind,
        new: NewToken,
        ip_filter: Vec<String>,
        id: TokenId,
        secret: &str,
        ceiling: Option<String>,
    ) -> Result<entity::ActiveModel> {
        let now = sigil_core::now();
        let (scope_set, scope_methods) = match &new.scope {
            Scope::Set(s) => (Some(s.clone()), None),
            Scope::Methods(m) => (
                None,
                Some(serde_json::to_string(m).map_err(Error::internal)?),
            ),
            Scope::All => (None, None),
        };
        Ok(entity::ActiveModel {
            id: Set(id),
            tenant_id: Set(tenant),
            owner_id: Set(owner.id),
            kind: Set(kind.as_str().to_owned()),
            name: Set(new.name),
            description: Set(new.description),
            scope_set: Set(scope_set),
            scope_methods: Set(scope_methods),
            expires_at: Set(new.expires_at),
            ip_filter: Set(serde_json::to_string(&ip_filter).map_err(Error::internal)?),
            enabled: Set(new.enabled),
            generation: Set(1),
            secret_hash: Set(sha256_hex(secret.as_bytes())),
            prev_secret_hash: Set(None),
            prev_valid_until: Set(None),
            elevated_until: Set(None),
            created_at: Set(now),
            created_by: Set(created_by),
            updated_at: Set(now),
            use_count: Set(0),
            last_used_at: Set(None),
            last_used_ip: Set(None),
            revoked_at: Set(None),
            revoked_reason: Set(None),
            ceiling: Set(ceiling),
            self_rotated_from: Set(None),
        })
    }

    /// A login session for a user who just proved their password.
    pub async fn create_session(&self, user: &User, lifetime_secs: u32) -> Result<Minted> {
        let expires_at = ceiling::login(lifetime_secs).expires_at;
        let new = NewToken {
            kind: TokenKind::Session,
            owner: Some(user.id),
            name: "login session".to_owned(),
            description: String::new(),
            scope: Scope::All,
            expires_at,
            ip_filter: Vec::new(),
            enabled: true,
        };
        self.prune_sessions(user).await?;
        self.insert(
            user.tenant_id,
            user,
            Some(user.id),
            TokenKind::Session,
            new,
            Vec::new(),
        )
        .await
    }

    /// A login session that may call only `methods` (its stored ceiling), for a person
    /// who must enrol a second factor before anything else (tenant policy
    /// `require_two_factor`).
    pub async fn create_limited_session(
        &self,
        user: &User,
        lifetime_secs: u32,
        methods: &[&str],
    ) -> Result<Minted> {
        let expires_at = ceiling::login(lifetime_secs).expires_at;
        let new = NewToken {
            kind: TokenKind::Session,
            owner: Some(user.id),
            name: "login session (second factor enrolment)".to_owned(),
            description: String::new(),
            scope: Scope::All,
            expires_at,
            ip_filter: Vec::new(),
            enabled: true,
        };
        self.prune_sessions(user).await?;
        let id = TokenId::new();
        let secret = self
            .mint_secret(
                user.tenant_id,
                user.id,
                id,
                1,
                TokenKind::Session,
                expires_at,
            )
            .await?;
        let ceiling = serde_json::to_string(methods).map_err(Error::internal)?;
        let model = Self::new_model(
            user.tenant_id,
            user,
            Some(user.id),
            TokenKind::Session,
            new,
            Vec::new(),
            id,
            &secret,
            Some(ceiling),
        )?
        .insert(&self.db)
        .await?;
        Ok(Minted {
            token: Token::try_from(&model)?,
            secret,
        })
    }

    /// Lifts the ceiling of a limited login session (see
    /// [`TokenService::create_limited_session`]) once its person enrolled: the session
    /// then holds the user's rights like any other.
    pub async fn lift_session_ceiling(&self, actor: &Principal) -> Result<()> {
        if !actor.is_session() {
            return Ok(());
        }
        entity::Entity::update_many()
            .col_expr(entity::Column::Ceiling, Expr::value(Option::<String>::None))
            .filter(entity::Column::TenantId.eq(actor.tenant_id))
            .filter(entity::Column::Id.eq(actor.token_id))
            .filter(entity::Column::Kind.eq(TokenKind::Session.as_str()))
            .exec(&self.db)
            .await?;
        self.changes
            .publish(Change::Token {
                tenant: actor.tenant_id,
                token: actor.token_id,
            })
            .await;
        Ok(())
    }

    /// Removes a user's expired or revoked sessions so the table does not grow forever.
    async fn prune_sessions(&self, user: &User) -> Result<()> {
        entity::Entity::delete_many()
            .filter(entity::Column::TenantId.eq(user.tenant_id))
            .filter(entity::Column::OwnerId.eq(user.id))
            .filter(entity::Column::Kind.eq(TokenKind::Session.as_str()))
            .filter(
                Condition::any()
                    .add(entity::Column::ExpiresAt.lt(Utc::now()))
                    .add(entity::Column::RevokedAt.is_not_null()),
            )
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Marks the session as password-confirmed for the tenant's confirmation window.
    pub async fn confirm_session(&self, actor: &Principal) -> Result<DateTime<Utc>> {
        if !actor.is_session() {
            return Err(Error::forbidden(
                "not_a_session",
                "only a login session can be confirmed; tokens are not asked to confirm",
            ));
        }
        let until = sigil_core::now()
            + Duration::seconds(i64::from(actor.policy.password_confirmation_secs));
        entity::Entity::update_many()
            .col_expr(entity::Column::ElevatedUntil, Expr::value(Some(until)))
            .filter(entity::Column::TenantId.eq(actor.tenant_id))
            .filter(entity::Column::Id.eq(actor.token_id))
            .exec(&self.db)
            .await?;
        self.changes
            .publish(Change::Token {
                tenant: actor.tenant_id,
                token: actor.token_id,
            })
            .await;
        Ok(until)
    }

    /// Ends every login session of a user except `keep`.
    pub async fn revoke_sessions(
        &self,
        tenant: TenantId,
        user: UserId,
        keep: Option<TokenId>,
    ) -> Result<()> {
        let mut update = entity::Entity::update_many()
            .col_expr(
                entity::Column::RevokedAt,
                Expr::value(Some(sigil_core::now())),
            )
            .filter(entity::Column::TenantId.eq(tenant))
            .filter(entity::Column::OwnerId.eq(user))
            .filter(entity::Column::Kind.eq(TokenKind::Session.as_str()))
            .filter(entity::Column::RevokedAt.is_null());
        if let Some(keep) = keep {
            update = update.filter(entity::Column::Id.ne(keep));
        }
        update.exec(&self.db).await?;
        self.changes.publish(Change::User { tenant, user }).await;
        Ok(())
    }

    pub async fn get(&self, actor: &Principal, id: TokenId) -> Result<Token> {
        Token::try_from(&self.managed(actor, id).await?)
    }

    /// The last distinct client addresses of a token the actor may manage.
    pub async fn recent_addresses(
        &self,
        actor: &Principal,
        id: TokenId,
    ) -> Result<Vec<crate::addresses::RecentAddress>> {
        let model = self.managed(actor, id).await?;
        crate::addresses::recent(&self.db, model.tenant_id, model.id).await
    }

    pub async fn list(
        &self,
        actor: &Principal,
        filter: TokenFilter,
        page: PageRequest,
    ) -> Result<Page<Token>> {
        let mut query =
            in_tenant(actor.tenant_id).filter(entity::Column::Kind.ne(TokenKind::Session.as_str()));
        let owner = if actor.role.manages_all_tokens() {
            filter.owner
        } else {
            Some(actor.user_id)
        };
        if let Some(owner) = owner {
            query = query.filter(entity::Column::OwnerId.eq(owner));
        }
        if let Some(kind) = filter.kind {
            query = query.filter(entity::Column::Kind.eq(kind.as_str()));
        }
        if let Some(enabled) = filter.enabled {
            query = query.filter(entity::Column::Enabled.eq(enabled));
        }
        let now = sigil_core::now();
        match filter.expired {
            Some(true) => query = query.filter(entity::Column::ExpiresAt.lte(now)),
            Some(false) => {
                query = query.filter(
                    Condition::any()
                        .add(entity::Column::ExpiresAt.is_null())
                        .add(entity::Column::ExpiresAt.gt(now)),
                )
            }
            None => {}
        }
        if let Some(before) = filter.expiring_before {
            query = query
                .filter(entity::Column::ExpiresAt.gt(now))
                .filter(entity::Column::ExpiresAt.lte(before));
        }
        if let Some(since) = filter.unused_since {
            query = query.filter(
                Condition::any()
                    .add(entity::Column::LastUsedAt.lt(since))
                    .add(
                        Condition::all()
                            .add(entity::Column::LastUsedAt.is_null())
                            .add(entity::Column::CreatedAt.lt(since)),
                    ),
            );
        }
        if let Some(set) = filter.scope_set {
            query = query.filter(entity::Column::ScopeSet.eq(set));
        }
        if let Some(q) = filter.q.filter(|q| !q.is_empty()) {
            let pattern = sigil_core::page::contains_pattern(&q);
            query = query.filter(
                Condition::any()
                    .add(
                        Expr::expr(Func::lower(Expr::col(entity::Column::Name)))
                            .like(pattern.clone()),
                    )
                    .add(
                        Expr::expr(Func::lower(Expr::col(entity::Column::Description)))
                            .like(pattern),
                    ),
            );
        }
        let total = query.clone().count(&self.db).await?;
        query = match filter.sort {
            TokenSort::CreatedDesc => query.order_by_desc(entity::Column::CreatedAt),
            TokenSort::CreatedAsc => query.order_by_asc(entity::Column::CreatedAt),
            TokenSort::Name => query.order_by_asc(entity::Column::Name),
            TokenSort::ExpiresAt => query.order_by_asc(entity::Column::ExpiresAt),
            TokenSort::LastUsedDesc => query.order_by_desc(entity::Column::LastUsedAt),
        };
        let items = query
            .order_by_asc(entity::Column::Id)
            .offset(page.offset)
            .limit(page.limit)
            .all(&self.db)
            .await?
            .iter()
            .map(Token::try_from)
            .collect::<Result<Vec<_>>>()?;
        Ok(Page { items, total })
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

    pub async fn update(&self, actor: &Principal, id: TokenId, patch: TokenPatch) -> Result<Token> {
        let current = self.managed(actor, id).await?;
        let snapshot = self.registry.current();
        let (owner, owner_rights) = self.owner_of(&snapshot, actor, &current).await?;
        let current_scope =
            scope::resolve_lenient(&snapshot, &self.sets, actor.tenant_id, &scope_of(&current))
                .await?;
        let current_ceiling =
            ceiling::from_stored(&snapshot, actor.tenant_id, current.ceiling.as_deref());
        let new_scope = match &patch.scope {
            Some(Scope::All) => {
                return Err(Error::invalid_field(
                    "invalid_scope",
                    "scope_set",
                    "a scope is required",
                ))
            }
            Some(scope) => {
                Some(scope::resolve_strict(&snapshot, &self.sets, actor.tenant_id, scope).await?)
            }
            None => None,
        };
        // Expiring now is allowed: it is how a token is retired but kept for history.
        let expiring_now = matches!(patch.expires_at, Some(Some(t)) if t <= Utc::now());
        let expiry = match patch.expires_at {
            Some(t) if !expiring_now => Expiry::Set(t),
            _ => Expiry::Keep,
        };
        let decision = ceiling::decide(
            actor,
            &owner,
            &owner_rights,
            ceiling::Request::Update {
                token: ceiling::Existing {
                    scope: &current_scope,
                    ceiling: current_ceiling.as_ref(),
                    expires_at: current.expires_at,
                },
                scope: new_scope.as_ref(),
                expiry,
            },
        )?;
        let mut model: entity::ActiveModel = current.into();
        if let Some(name) = &patch.name {
            validate_text(name, patch.description.as_deref().unwrap_or(""))?;
            model.name = Set(name.clone());
        }
        if let Some(description) = &patch.description {
            validate_text(patch.name.as_deref().unwrap_or("x"), description)?;
            model.description = Set(description.clone());
        }
        match &patch.scope {
            Some(Scope::Set(s)) => {
                model.scope_set = Set(Some(s.clone()));
                model.scope_methods = Set(None);
            }
            Some(Scope::Methods(m)) => {
                model.scope_set = Set(None);
                model.scope_methods = Set(Some(serde_json::to_string(m).map_err(Error::internal)?));
            }
            _ => {}
        }
        if patch.scope.is_some() {
            model.ceiling = Set(ceiling::to_stored(&snapshot, decision.ceiling.as_ref())?);
        }
        if expiring_now {
            model.expires_at = Set(Some(sigil_core::now()));
        } else if patch.expires_at.is_some() {
            model.expires_at = Set(decision.expires_at);
        }
        if let Some(ip_filter) = &patch.ip_filter {
            let normalised = validate_ip_filter(ip_filter)?;
            model.ip_filter = Set(serde_json::to_string(&normalised).map_err(Error::internal)?);
        }
        if let Some(enabled) = patch.enabled {
            model.enabled = Set(enabled);
        }
        model.updated_at = Set(sigil_core::now());
        let txn = self.db.begin().await?;
        let updated = model.update(&txn).await?;
        crate::events::token_event(
            &txn,
            sigil_core::outbox::events::TOKEN_UPDATED,
            &updated,
            serde_json::json!({ "updated_by": actor.user_id.0, "enabled": updated.enabled }),
        )
        .await?;
        txn.commit().await?;
        self.changes
            .publish(Change::Token {
                tenant: actor.tenant_id,
                token: id,
            })
            .await;
        Token::try_from(&updated)
    }

    /// New secret, generation + 1. The old secret stops at once, or after `grace_secs`.
    /// `expiry` may give the token a new expiry (required when it has expired).
    pub async fn regenerate(
        &self,
        actor: &Principal,
        id: TokenId,
        grace_secs: u32,
        expiry: Expiry,
    ) -> Result<Minted> {
        if grace_secs > 86_400 {
            return Err(Error::invalid_field(
                "invalid_grace_period",
                "grace_period_secs",
                "grace_period_secs must be at most 86400",
            ));
        }
        let current = self.managed(actor, id).await?;
        self.renew(actor, current, grace_secs, expiry, false).await
    }

    /// The calling token rotates itself: a new secret for the same token (generation + 1),
    /// the old one valid for `grace_secs`. Only personal and application tokens rotate, and
    /// only with their newest secret. A secret replaced this way that comes back after its
    /// grace period revokes the token (reuse detection, crate::verifier).
    pub async fn rotate_current(&self, actor: &Principal, grace_secs: u32) -> Result<Minted> {
        if grace_secs > 86_400 {
            return Err(Error::invalid_field(
                "invalid_grace_period",
                "grace_period_secs",
                "grace_period_secs must be at most 86400",
            ));
        }
        if actor.is_session() {
            return Err(Error::forbidden(
                "session_not_rotatable",
                "a login session cannot rotate itself; log in again, or rotate a personal or application token",
            ));
        }
        if actor.grace_until.is_some() {
            return Err(Error::conflict(
                "token_replaced",
                "this secret was already replaced; rotate with the newest secret",
            ));
        }
        let current = self.model(actor.tenant_id, actor.token_id).await?;
        self.renew(actor, current, grace_secs, Expiry::Keep, true)
            .await
    }

    /// A new secret for `current` (regenerated by `actor`, or rotated by itself when
    /// `by_self`), through the one ceiling.
    async fn renew(
        &self,
        actor: &Principal,
        current: entity::Model,
        grace_secs: u32,
        expiry: Expiry,
        by_self: bool,
    ) -> Result<Minted> {
        let id = current.id;
        // A revoked (leaked) token stays revoked: a new secret for it would be refused too.
        if current.revoked_at.is_some() {
            return Err(Error::conflict(
                "token_revoked",
                "the token was revoked (it leaked); copy it (copyToken) or create a new one",
            ));
        }
        let snapshot = self.registry.current();
        let (owner, owner_rights) = self.owner_of(&snapshot, actor, &current).await?;
        let current_scope =
            scope::resolve_lenient(&snapshot, &self.sets, actor.tenant_id, &scope_of(&current))
                .await?;
        let current_ceiling =
            ceiling::from_stored(&snapshot, actor.tenant_id, current.ceiling.as_deref());
        let decision = ceiling::decide(
            actor,
            &owner,
            &owner_rights,
            ceiling::Request::Regenerate {
                token: ceiling::Existing {
                    scope: &current_scope,
                    ceiling: current_ceiling.as_ref(),
                    expires_at: current.expires_at,
                },
                expiry,
            },
        )?;
        let generation = current.generation + 1;
        let secret = self
            .mint_secret(
                actor.tenant_id,
                current.owner_id,
                id,
                generation,
                TokenKind::parse(&current.kind)?,
                decision.expires_at,
            )
            .await?;
        let now = sigil_core::now();
        // A grace period never outlives the token itself.
        let grace_until = (grace_secs > 0)
            .then(|| now + Duration::seconds(i64::from(grace_secs)))
            .map(|g| current.expires_at.map_or(g, |t| t.min(g)))
            .filter(|g| *g > now);
        // The replaced secret stays recognisable after its grace period (reuse detection);
        // `self_rotated_from` marks the generations replaced by self-rotation only.
        let self_rotated_from =
            by_self.then(|| current.self_rotated_from.unwrap_or(current.generation));
        let txn = self.db.begin().await?;
        let res = entity::Entity::update_many()
            .col_expr(entity::Column::Generation, Expr::value(generation))
            .col_expr(
                entity::Column::SecretHash,
                Expr::value(sha256_hex(secret.as_bytes())),
            )
            .col_expr(
                entity::Column::PrevSecretHash,
                Expr::value(Some(current.secret_hash.clone())),
            )
            .col_expr(entity::Column::PrevValidUntil, Expr::value(grace_until))
            .col_expr(
                entity::Column::SelfRotatedFrom,
                Expr::value(self_rotated_from),
            )
            .col_expr(entity::Column::ExpiresAt, Expr::value(decision.expires_at))
            .col_expr(entity::Column::UpdatedAt, Expr::value(now))
            .filter(entity::Column::TenantId.eq(actor.tenant_id))
            .filter(entity::Column::Id.eq(id))
            .filter(entity::Column::Generation.eq(current.generation))
            .exec(&txn)
            .await?;
        if res.rows_affected != 1 {
            return Err(Error::conflict(
                "concurrent_change",
                "the token changed meanwhile; retry",
            ));
        }
        let mut event_model = current;
        event_model.generation = generation;
        event_model.expires_at = decision.expires_at;
        crate::events::token_event(
            &txn,
            sigil_core::outbox::events::TOKEN_REGENERATED,
            &event_model,
            serde_json::json!({
                "by": if by_self { "rotation" } else { "regeneration" },
                "grace_until": grace_until,
            }),
        )
        .await?;
        txn.commit().await?;
        self.changes
            .publish(Change::Token {
                tenant: actor.tenant_id,
                token: id,
            })
            .await;
        let model = self.model(actor.tenant_id, id).await?;
        Ok(Minted {
            token: Token::try_from(&model)?,
            secret,
        })
    }

    /// A new, independent token with the same parameters and a new secret. It carries the
    /// source's ceiling, so a copy never holds more than the original.
    pub async fn copy(
        &self,
        actor: &Principal,
        id: TokenId,
        name: Option<String>,
    ) -> Result<Minted> {
        let model = self.managed(actor, id).await?;
        let stored_ceiling = model.ceiling.clone();
        let source = Token::try_from(&model)?;
        let new = NewToken {
            kind: source.kind,
            owner: Some(source.owner_id),
            name: name
                .unwrap_or_else(|| format!("{} (copy)", source.name))
                .chars()
                .take(200)
                .collect(),
            description: source.description,
            scope: source.scope,
            expires_at: source.expires_at.filter(|t| *t > Utc::now()),
            ip_filter: source.ip_filter,
            enabled: source.enabled,
        };
        self.mint(actor, new, Some(stored_ceiling)).await
    }

    pub async fn delete(&self, actor: &Principal, id: TokenId) -> Result<Token> {
        let current = self.managed(actor, id).await?;
        let token = Token::try_from(&current)?;
        let txn = self.db.begin().await?;
        let res = entity::Entity::delete_many()
            .filter(entity::Column::TenantId.eq(actor.tenant_id))
            .filter(entity::Column::Id.eq(id))
            .exec(&txn)
            .await?;
        // A concurrent delete got there first: only one of them reports the deletion.
        if res.rows_affected == 0 {
            return Err(Error::not_found("token"));
        }
        crate::events::token_event(
            &txn,
            sigil_core::outbox::events::TOKEN_DELETED,
            &current,
            serde_json::json!({ "deleted_by": actor.user_id.0 }),
        )
        .await?;
        txn.commit().await?;
        self.changes
            .publish(Change::Token {
                tenant: actor.tenant_id,
                token: id,
            })
            .await;
        Ok(token)
    }

    /// Deletes all the given tokens or none: an unknown or foreign id aborts the lot.
    pub async fn delete_many(&self, actor: &Principal, ids: &[TokenId]) -> Result<Vec<Token>> {
        if ids.is_empty() || ids.len() > 500 {
            return Err(Error::invalid_field(
                "invalid_ids",
                "ids",
                "give between 1 and 500 token ids",
            ));
        }
        let mut unique = ids.to_vec();
        unique.sort();
        unique.dedup();
        let txn = self.db.begin().await?;
        let mut query = in_tenant(actor.tenant_id)
            .filter(entity::Column::Id.is_in(unique.clone()))
            .filter(entity::Column::Kind.ne(TokenKind::Session.as_str()));
        if !actor.role.manages_all_tokens() {
            query = query.filter(entity::Column::OwnerId.eq(actor.user_id));
        }
        let found = query.lock_exclusive().all(&txn).await?;
        if found.len() != unique.len() {
            let missing: Vec<FieldError> = unique
                .iter()
                .filter(|id| !found.iter().any(|m| m.id == **id))
                .map(|id| FieldError::new("ids", format!("there is no token {id}")))
                .collect();
            return Err(Error::invalid_with(
                "unknown_tokens",
                "some tokens do not exist; nothing was removed",
                missing,
            ));
        }
        entity::Entity::delete_many()
            .filter(entity::Column::TenantId.eq(actor.tenant_id))
            .filter(entity::Column::Id.is_in(unique))
            .exec(&txn)
            .await?;
        for m in &found {
            crate::events::token_event(
                &txn,
                sigil_core::outbox::events::TOKEN_DELETED,
                m,
                serde_json::json!({ "deleted_by": actor.user_id.0, "bulk": true }),
            )
            .await?;
        }
        txn.commit().await?;
        for m in &found {
            self.changes
                .publish(Change::Token {
                    tenant: actor.tenant_id,
                    token: m.id,
                })
                .await;
        }
        found.iter().map(Token::try_from).collect()
    }

    /// Number of tokens whose scope names the given set (to refuse deleting a set in use).
    pub async fn count_using_set(&self, tenant: TenantId, set: &str) -> Result<u64> {
        Ok(in_tenant(tenant)
            .filter(entity::Column::ScopeSet.eq(set))
            .count(&self.db)
            .await?)
    }
}

impl TokenService {
    /// Removes every token of a user (when the user is deleted).
    pub async fn delete_owned_by(&self, tenant: TenantId, owner: UserId) -> Result<u64> {
        let res = entity::Entity::delete_many()
            .filter(entity::Column::TenantId.eq(tenant))
            .filter(entity::Column::OwnerId.eq(owner))
            .exec(&self.db)
            .await?;
        self.changes
            .publish(Change::User {
                tenant,
                user: owner,
            })
            .await;
        Ok(res.rows_affected)
    }
}

/// Inserts the token unless its owner already has `limit` API tokens, in one statement
/// (`INSERT ... SELECT ... WHERE (count) < limit`); `None` when the limit is reached.
/// Run it under the owner's row lock so that concurrent inserts cannot both pass.
async fn insert_within_limit(
    conn: &impl sea_orm::ConnectionTrait,
    model: entity::ActiveModel,
    tenant: TenantId,
    owner: UserId,
    limit: u32,
) -> Result<Option<entity::Model>> {
    use sea_orm::sea_query::{Query, SimpleExpr};
    use sea_orm::{ActiveValue, FromQueryResult, Iterable};
    let mut columns = Vec::new();
    let mut values = Vec::new();
    for column in entity::Column::iter() {
        if let ActiveValue::Set(value) = model.get(column) {
            columns.push(column);
            values.push(SimpleExpr::Value(value));
        }
    }
    let owned = Query::select()
        .expr(Expr::col(entity::Column::Id).count())
        .from(entity::Entity)
        .and_where(entity::Column::TenantId.eq(tenant))
        .and_where(entity::Column::OwnerId.eq(owner))
        .and_where(entity::Column::Kind.ne(TokenKind::Session.as_str()))
        .to_owned();
    let source = Query::select()
        .exprs(values)
        .and_where(
            Expr::expr(SimpleExpr::SubQuery(
                None,
                Box::new(owned.into_sub_query_statement()),
            ))
            .lt(i64::from(limit)),
        )
        .to_owned();
    let mut insert = Query::insert();
    insert
        .into_table(entity::Entity)
        .columns(columns)
        .select_from(source)
        .map_err(Error::internal)?
        .returning_all();
    let statement = conn.get_database_backend().build(&insert);
    Ok(entity::Model::find_by_statement(statement)
        .one(conn)
        .await?)
}
