//! Making tokens and secrets: create, copy, regenerate and self-rotation. Every right and
//! every expiry is decided by the one ceiling (crate::ceiling).

use chrono::{DateTime, Duration, Utc};
use sea_orm::TransactionTrait;
use sigil_audit::{Actor, NewEvent};
use sigil_core::outbox::events;
use sigil_core::{Error, Result, TokenId, UserId};
use sigil_limits::{Credits, RateLimit};
use sigil_user::{User, UserKind};

use super::store::{self, NewRow, NewSecret};
use super::validate::{validate_ip_filter, validate_limits, validate_text};
use super::TokenService;
use crate::ceiling::{self, Expiry};
use crate::types::{scope_of, Minted, Scope, Token, TokenKind};
use crate::{entity, scope, Principal};

/// The longest grace period a replaced secret may keep working.
const MAX_GRACE_SECS: u32 = 86_400;

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
    /// The token's own rate limits (none: the tenant's defaults apply).
    pub rate_limits: Vec<RateLimit>,
    /// Credits (none: unlimited).
    pub credits: Option<Credits>,
}

/// Who will own a new token: the actor, or (for admins and token managers) the user they
/// name.
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

fn check_grace(grace_secs: u32) -> Result<()> {
    if grace_secs > MAX_GRACE_SECS {
        return Err(Error::invalid_field(
            "invalid_grace_period",
            "grace_period_secs",
            "grace_period_secs must be at most 86400",
        ));
    }
    Ok(())
}

/// When a replaced secret stops working: after `grace_secs`, never after the token
/// itself expires; `None` when it stops at once.
fn grace_until(
    now: DateTime<Utc>,
    grace_secs: u32,
    expires_at: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    (grace_secs > 0)
        .then(|| now + Duration::seconds(i64::from(grace_secs)))
        .map(|g| expires_at.map_or(g, |t| t.min(g)))
        .filter(|g| *g > now)
}

impl TokenService {
    /// Creates a token; `by` is the actor as the audit log names it (with its client).
    pub async fn create(&self, actor: &Principal, by: &Actor, new: NewToken) -> Result<Minted> {
        let event = by.event("token.create", "token");
        self.mint(actor, new, None, event).await
    }

    /// Creates a token (a copy when `copied_ceiling` is given: the source's stored
    /// ceiling, carried over). Every right and the expiry are decided by the one ceiling.
    /// `event` is the audit event, completed with the new token and written with it.
    async fn mint(
        &self,
        actor: &Principal,
        new: NewToken,
        copied_ceiling: Option<Option<String>>,
        event: NewEvent,
    ) -> Result<Minted> {
        validate_text(&new.name, &new.description)?;
        let ip_filter = validate_ip_filter(&new.ip_filter)?;
        validate_limits(Some(&new.rate_limits), new.credits.as_ref().map(Some))?;
        let owner_id = owner_id_for(actor, &new)?;
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
        let owner = sigil_user::owners::lock(&txn, actor.tenant_id, owner_id)
            .await?
            .ok_or_else(|| {
                Error::invalid_field("unknown_owner", "owner_id", "the owner does not exist")
            })?;
        check_owner(&owner, new.kind)?;
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
        let stored_ceiling = ceiling::to_stored(&snapshot, decision.ceiling.as_ref())?;
        let row = store::new_row(NewRow {
            id,
            tenant: actor.tenant_id,
            owner: owner.id,
            created_by: Some(actor.user_id),
            kind: new.kind,
            new,
            ip_filter,
            secret: &secret,
            ceiling: stored_ceiling,
        })?;
        self.insert_decided(txn, actor, &owner, row, secret, event)
            .await
    }

    /// Inserts a decided token under the owner's lock (within the per-user limit).
    async fn insert_decided(
        &self,
        txn: sea_orm::DatabaseTransaction,
        actor: &Principal,
        owner: &User,
        row: entity::ActiveModel,
        secret: String,
        event: NewEvent,
    ) -> Result<Minted> {
        let limit = actor.policy.max_tokens_per_user;
        let Some(stored) =
            store::insert_within_limit(&txn, row, actor.tenant_id, owner.id, limit).await?
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
            events::TOKEN_CREATED,
            &stored,
            serde_json::json!({ "created_by": actor.user_id.0 }),
        )
        .await?;
        let event = event
            .target(minted.token.id)
            .after(crate::audit::view(&minted.token));
        sigil_audit::write(&txn, event).await?;
        txn.commit().await?;
        Ok(minted)
    }

    /// New secret, generation + 1. The old secret stops at once, or after `grace_secs`.
    /// `expiry` may give the token a new expiry (required when it has expired).
    pub async fn regenerate(
        &self,
        actor: &Principal,
        by: &Actor,
        id: TokenId,
        grace_secs: u32,
        expiry: Expiry,
    ) -> Result<Minted> {
        check_grace(grace_secs)?;
        let current = self.managed(actor, id).await?;
        self.renew(actor, by, current, grace_secs, expiry, false)
            .await
    }

    /// The calling token rotates itself: a new secret for the same token (generation + 1),
    /// the old one valid for `grace_secs`. Only personal and application tokens rotate, and
    /// only with their newest secret. A secret replaced this way that comes back after its
    /// grace period revokes the token (reuse detection, crate::verifier).
    pub async fn rotate_current(
        &self,
        actor: &Principal,
        by: &Actor,
        grace_secs: u32,
    ) -> Result<Minted> {
        check_grace(grace_secs)?;
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
        let current = store::api_token(&self.db, actor.tenant_id, actor.token_id).await?;
        self.renew(actor, by, current, grace_secs, Expiry::Keep, true)
            .await
    }

    /// A new secret for `current` (regenerated by `actor`, or rotated by itself when
    /// `by_self`), through the one ceiling.
    async fn renew(
        &self,
        actor: &Principal,
        by: &Actor,
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
        let grace_until = grace_until(now, grace_secs, current.expires_at);
        // The replaced secret stays recognisable after its grace period (reuse detection);
        // `self_rotated_from` marks the generations replaced by self-rotation only.
        let self_rotated_from =
            by_self.then(|| current.self_rotated_from.unwrap_or(current.generation));
        let txn = self.db.begin().await?;
        let replaced = store::replace_secret(
            &txn,
            &current,
            NewSecret {
                generation,
                secret: &secret,
                grace_until,
                self_rotated_from,
                expires_at: decision.expires_at,
                at: now,
            },
        )
        .await?;
        if !replaced {
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
            events::TOKEN_REGENERATED,
            &event_model,
            serde_json::json!({
                "by": if by_self { "rotation" } else { "regeneration" },
                "grace_until": grace_until,
            }),
        )
        .await?;
        let action = if by_self {
            "token.rotate"
        } else {
            "token.regenerate"
        };
        let event = crate::audit::event(by, action, id).after(serde_json::json!({
            "generation": generation,
            "grace_period_secs": grace_secs,
            "expires_at": decision.expires_at,
        }));
        sigil_audit::write(&txn, event).await?;
        txn.commit().await?;
        self.token_changed(actor.tenant_id, id).await;
        let model = store::api_token(&self.db, actor.tenant_id, id).await?;
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
        by: &Actor,
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
            rate_limits: source.rate_limits,
            credits: source.credits.map(|c| Credits {
                remaining: c.remaining,
                refill: c.refill,
            }),
        };
        let event = by
            .event("token.copy", "token")
            .before(serde_json::json!({ "source": id.0 }));
        self.mint(actor, new, Some(stored_ceiling), event).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grace_period_never_outlives_the_token() {
        let now = Utc::now();
        let hour = Duration::hours(1);
        assert_eq!(grace_until(now, 0, None), None);
        assert_eq!(grace_until(now, 3600, None), Some(now + hour));
        assert_eq!(
            grace_until(now, 3600, Some(now + Duration::minutes(5))),
            Some(now + Duration::minutes(5))
        );
        // An expired token's old secret gets no grace at all.
        assert_eq!(grace_until(now, 3600, Some(now - hour)), None);
    }

    #[test]
    fn grace_periods_are_at_most_a_day() {
        assert!(check_grace(0).is_ok());
        assert!(check_grace(MAX_GRACE_SECS).is_ok());
        assert!(matches!(
            check_grace(MAX_GRACE_SECS + 1),
            Err(Error::Invalid {
                code: "invalid_grace_period",
                ..
            })
        ));
    }

    fn user(kind: UserKind) -> User {
        let now = Utc::now();
        User {
            id: UserId::new(),
            tenant_id: sigil_core::TenantId::new(),
            username: "bob".to_owned(),
            display_name: "Bob".to_owned(),
            email: None,
            kind,
            role: sigil_user::Role::Member,
            api_access: true,
            active: true,
            is_system: false,
            has_password: true,
            created_at: now,
            updated_at: now,
            two_factor_enabled_at: None,
            rate_limits: Vec::new(),
        }
    }

    fn refusal(r: Result<()>) -> &'static str {
        match r {
            Err(Error::Invalid { code, .. }) => code,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn who_may_own_which_token() {
        let person = user(UserKind::Person);
        let api = user(UserKind::Api);
        assert!(check_owner(&person, TokenKind::Personal).is_ok());
        assert!(check_owner(&api, TokenKind::Personal).is_ok());
        assert!(check_owner(&api, TokenKind::Application).is_ok());
        assert_eq!(
            refusal(check_owner(&person, TokenKind::Application)),
            "owner_not_api_user"
        );
        assert_eq!(
            refusal(check_owner(&person, TokenKind::Session)),
            "invalid_kind"
        );
        let gone = User {
            active: false,
            ..api.clone()
        };
        assert_eq!(
            refusal(check_owner(&gone, TokenKind::Application)),
            "owner_deactivated"
        );
        let system = User {
            is_system: true,
            ..api
        };
        assert_eq!(
            refusal(check_owner(&system, TokenKind::Personal)),
            "system_user"
        );
    }
}
