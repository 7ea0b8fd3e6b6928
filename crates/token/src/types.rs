use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sigil_core::{Error, Result, TenantId, TokenId, UserId};

use crate::entity;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    Personal,
    Application,
    Session,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Personal => "personal",
            TokenKind::Application => "application",
            TokenKind::Session => "session",
        }
    }

    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "personal" => Ok(TokenKind::Personal),
            "application" => Ok(TokenKind::Application),
            "session" => Ok(TokenKind::Session),
            _ => Err(Error::invalid_field(
                "invalid_kind",
                "kind",
                "kind must be personal or application",
            )),
        }
    }
}

/// What a token may call: a predefined or custom scope set by id, or a custom method list.
/// A session token has `All` (everything its user may do).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Set(String),
    Methods(Vec<String>),
    All,
}

#[derive(Clone, Debug)]
pub struct Token {
    pub id: TokenId,
    pub tenant_id: TenantId,
    pub owner_id: UserId,
    pub kind: TokenKind,
    pub name: String,
    pub description: String,
    pub scope: Scope,
    pub expires_at: Option<DateTime<Utc>>,
    pub ip_filter: Vec<String>,
    pub enabled: bool,
    pub generation: i32,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<UserId>,
    pub updated_at: DateTime<Utc>,
    pub use_count: i64,
    pub last_used_at: Option<DateTime<Utc>>,
    pub last_used_ip: Option<String>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// When the secret was reported exposed (the token is revoked, `token_leaked`).
    pub leaked_at: Option<DateTime<Utc>>,
    /// The method ids the token can never exceed (its creator ceiling), when set.
    pub ceiling: Option<Vec<String>>,
    /// The token's own rate limits (the tenant's defaults apply when it has none).
    pub rate_limits: Vec<sigil_limits::RateLimit>,
    /// The token's credits as stored; `None` when it has none (unlimited).
    pub credits: Option<sigil_limits::CreditState>,
}

impl Token {
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
}

pub(crate) fn scope_of(m: &entity::Model) -> Scope {
    scope_from(&m.kind, &m.scope_set, &m.scope_methods)
}

/// A token's scope from its stored columns: kind, set id, custom method list (JSON).
pub(crate) fn scope_from(kind: &str, set: &Option<String>, methods: &Option<String>) -> Scope {
    if kind == TokenKind::Session.as_str() {
        return Scope::All;
    }
    match (set, methods) {
        (Some(set), _) => Scope::Set(set.clone()),
        (None, Some(json)) => Scope::Methods(serde_json::from_str(json).unwrap_or_default()),
        (None, None) => Scope::Methods(Vec::new()),
    }
}

impl TryFrom<&entity::Model> for Token {
    type Error = Error;
    fn try_from(m: &entity::Model) -> Result<Self> {
        Ok(Self {
            id: m.id,
            tenant_id: m.tenant_id,
            owner_id: m.owner_id,
            kind: TokenKind::parse(&m.kind)?,
            name: m.name.clone(),
            description: m.description.clone(),
            scope: scope_of(m),
            expires_at: m.expires_at,
            ip_filter: serde_json::from_str(&m.ip_filter).unwrap_or_default(),
            enabled: m.enabled,
            generation: m.generation,
            created_at: m.created_at,
            created_by: m.created_by,
            updated_at: m.updated_at,
            use_count: m.use_count,
            last_used_at: m.last_used_at,
            last_used_ip: m.last_used_ip.clone(),
            revoked_at: m.revoked_at,
            leaked_at: m
                .revoked_at
                .filter(|_| m.revoked_reason.as_deref() == Some(crate::leaks::LEAKED)),
            ceiling: crate::ceiling::stored_ids(m.ceiling.as_deref()),
            rate_limits: crate::credits::stored_limits(m.rate_limits.as_deref()),
            credits: crate::credits::stored_state(
                m.credits_remaining,
                m.credits_refill.as_deref(),
                m.credits_refilled_at,
                m.credits_version,
                m.created_at,
            ),
        })
    }
}

/// A token together with its secret, returned once at creation, copy or regeneration.
#[derive(Clone, Debug)]
pub struct Minted {
    pub token: Token,
    pub secret: String,
}
