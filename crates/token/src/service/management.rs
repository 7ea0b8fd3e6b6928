//! Reading, changing and deleting tokens (never their secrets: see `minting`).

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, PaginatorTrait, QuerySelect, Set, TransactionTrait};
use sigil_audit::Actor;
use sigil_core::outbox::events;
use sigil_core::page::{Page, PageRequest};
use sigil_core::{Error, FieldError, Result, TenantId, TokenId, UserId};
use sigil_limits::{Credits, RateLimit};

use super::store;
use super::validate::{validate_ip_filter, validate_limits, validate_text};
use super::TokenService;
use crate::ceiling::{self, Expiry};
use crate::types::{scope_of, Scope, Token, TokenKind};
use crate::{entity, scope, Principal};

/// The most tokens one bulk deletion takes.
const MAX_BULK: usize = 500;

#[derive(Clone, Debug, Default)]
pub struct TokenPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub scope: Option<Scope>,
    pub expires_at: Option<Option<DateTime<Utc>>>,
    pub ip_filter: Option<Vec<String>>,
    pub enabled: Option<bool>,
    /// New rate limits (an empty list removes them).
    pub rate_limits: Option<Vec<RateLimit>>,
    /// New credits; `Some(None)` removes them (unlimited). Setting them replaces the
    /// balance, whatever was spent from the old one.
    pub credits: Option<Option<Credits>>,
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

/// The distinct ids of a bulk deletion, or the refusal of an empty or oversized one.
fn bulk_ids(ids: &[TokenId]) -> Result<Vec<TokenId>> {
    if ids.is_empty() || ids.len() > MAX_BULK {
        return Err(Error::invalid_field(
            "invalid_ids",
            "ids",
            "give between 1 and 500 token ids",
        ));
    }
    let mut unique = ids.to_vec();
    unique.sort();
    unique.dedup();
    Ok(unique)
}

impl TokenService {
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
        // Members see their own tokens only, whatever owner they ask for.
        let owner = if actor.role.manages_all_tokens() {
            filter.owner
        } else {
            Some(actor.user_id)
        };
        let query = store::matching(actor.tenant_id, &filter, owner, sigil_core::now());
        let total = query.clone().count(&self.db).await?;
        let items = store::sorted(query, filter.sort)
            .offset(page.offset)
            .limit(page.limit)
            .all(&self.db)
            .await?
            .iter()
            .map(Token::try_from)
            .collect::<Result<Vec<_>>>()?;
        Ok(Page { items, total })
    }

    pub async fn update(
        &self,
        actor: &Principal,
        by: &Actor,
        id: TokenId,
        patch: TokenPatch,
    ) -> Result<Token> {
        validate_limits(
            patch.rate_limits.as_deref(),
            patch.credits.as_ref().map(Option::as_ref),
        )?;
        let current = self.managed(actor, id).await?;
        let before = crate::audit::view(&Token::try_from(&current)?);
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
        let credits_version = current.credits_version;
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
        if let Some(limits) = &patch.rate_limits {
            model.rate_limits = Set(crate::credits::limits_json(limits));
        }
        if let Some(credits) = &patch.credits {
            let (remaining, refill, refilled_at) =
                crate::credits::credit_columns(credits.as_ref(), sigil_core::now());
            model.credits_remaining = Set(remaining);
            model.credits_refill = Set(refill);
            model.credits_refilled_at = Set(refilled_at);
            // A new version replaces every live copy of the balance (in memory, in Redis).
            model.credits_version = Set(credits_version + 1);
        }
        model.updated_at = Set(sigil_core::now());
        let txn = self.db.begin().await?;
        // The row was read in the actor's tenant; its primary key now picks it.
        let updated = model.update(&txn).await?;
        crate::events::token_event(
            &txn,
            events::TOKEN_UPDATED,
            &updated,
            serde_json::json!({ "updated_by": actor.user_id.0, "enabled": updated.enabled }),
        )
        .await?;
        let token = Token::try_from(&updated)?;
        let event = crate::audit::event(by, "token.update", id)
            .before(before)
            .after(crate::audit::view(&token));
        sigil_audit::write(&txn, event).await?;
        txn.commit().await?;
        self.token_changed(actor.tenant_id, id).await;
        Ok(token)
    }

    pub async fn delete(&self, actor: &Principal, by: &Actor, id: TokenId) -> Result<Token> {
        let current = self.managed(actor, id).await?;
        let token = Token::try_from(&current)?;
        let txn = self.db.begin().await?;
        // A concurrent delete got there first: only one of them reports the deletion.
        if !store::delete(&txn, actor.tenant_id, id).await? {
            return Err(Error::not_found("token"));
        }
        crate::events::token_event(
            &txn,
            events::TOKEN_DELETED,
            &current,
            serde_json::json!({ "deleted_by": actor.user_id.0 }),
        )
        .await?;
        let event = crate::audit::event(by, "token.delete", id).before(crate::audit::view(&token));
        sigil_audit::write(&txn, event).await?;
        txn.commit().await?;
        self.token_changed(actor.tenant_id, id).await;
        Ok(token)
    }

    /// Deletes all the given tokens or none: an unknown or foreign id aborts the lot.
    /// One audit event per removed token, so each token's history (and its owner's view
    /// of the log) stays complete.
    pub async fn delete_many(
        &self,
        actor: &Principal,
        by: &Actor,
        ids: &[TokenId],
    ) -> Result<Vec<Token>> {
        let unique = bulk_ids(ids)?;
        let own_only = (!actor.role.manages_all_tokens()).then_some(actor.user_id);
        let txn = self.db.begin().await?;
        let found = store::lock_api_tokens(&txn, actor.tenant_id, &unique, own_only).await?;
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
        store::delete_all(&txn, actor.tenant_id, &unique).await?;
        let removed = found
            .iter()
            .map(Token::try_from)
            .collect::<Result<Vec<_>>>()?;
        for (m, token) in found.iter().zip(&removed) {
            crate::events::token_event(
                &txn,
                events::TOKEN_DELETED,
                m,
                serde_json::json!({ "deleted_by": actor.user_id.0, "bulk": true }),
            )
            .await?;
            let mut before = crate::audit::view(token);
            before["bulk"] = serde_json::Value::Bool(true);
            let event = crate::audit::event(by, "token.delete", m.id).before(before);
            sigil_audit::write(&txn, event).await?;
        }
        txn.commit().await?;
        for m in &found {
            self.token_changed(actor.tenant_id, m.id).await;
        }
        Ok(removed)
    }

    /// Number of tokens whose scope names the given set (to refuse deleting a set in use).
    pub async fn count_using_set(&self, tenant: TenantId, set: &str) -> Result<u64> {
        store::count_using_set(&self.db, tenant, set).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bulk_deletion_takes_one_to_five_hundred_distinct_ids() {
        let a = TokenId::new();
        let b = TokenId::new();
        let unique = bulk_ids(&[b, a, b]).unwrap();
        assert_eq!(unique.len(), 2);
        assert!(unique.contains(&a) && unique.contains(&b));
        assert!(bulk_ids(&[]).is_err());
        assert!(bulk_ids(&vec![a; MAX_BULK]).is_ok());
        assert!(bulk_ids(&vec![a; MAX_BULK + 1]).is_err());
    }
}
