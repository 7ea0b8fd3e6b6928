//! Leaked secrets: a secret reported exposed (by a secret scanner or by a person who
//! pasted it somewhere) revokes its token at once. Only a real secret counts: one signed
//! by a key of its tenant that is the token's current secret (or its previous one during
//! a regeneration grace period). Anything else is ignored, and callers answer the same
//! way for both, so a report never tells whether a secret exists. Reporting twice changes
//! nothing the second time.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr};
use sea_orm::{ColumnTrait, Condition, QueryFilter};
use sigil_audit::Actor;
use sigil_core::crypto::sha256_hex;
use sigil_core::db::Db;
use sigil_core::{Result, TenantId, TenantOwned, TokenId, UserId};
use sigil_tenant::KeyRing;

use crate::changes::{Change, ChangeFeed};
use crate::types::TokenKind;
use crate::{entity, jwt};

/// The column (migration m0008_token_leaks) that says why a token was revoked.
pub const REASON_COLUMN: &str = "revoked_reason";
/// The revocation reason of a leaked secret.
pub const LEAKED: &str = "leaked";
/// The revocation reason of reuse detection: a secret replaced by rotation came back
/// after its grace period (crate::verifier).
pub const REUSE_DETECTED: &str = "reuse_detected";
/// Most secrets in one report.
pub const MAX_SECRETS: usize = 100;

/// A token revoked (now or by an earlier report) because its secret was reported.
#[derive(Clone, Debug)]
pub struct Revocation {
    pub tenant: TenantId,
    pub token: TokenId,
    pub owner: UserId,
    pub kind: TokenKind,
    pub name: String,
    /// The token's generation whose secret was reported.
    pub generation: i32,
    /// True when this report revoked it; false when an earlier report already had.
    pub first: bool,
}

/// A report of one secret: where it was found and who said so.
#[derive(Clone, Debug)]
pub struct LeakReport {
    /// `{"url", "source", "reported_via"}`, carried by the `token.revoked` event and the
    /// audit log.
    pub found: serde_json::Value,
    /// The secret type a scanner named.
    pub secret_type: Option<String>,
    /// Who reports, from where. A user of the token's tenant is named in its audit log;
    /// anyone else (another tenant's user, a scanner) is `system_label` there, since
    /// tenants never see each other's users.
    pub by: Actor,
    pub system_label: &'static str,
}

impl LeakReport {
    /// Who the token's tenant sees as the reporter.
    fn actor_in(&self, tenant: TenantId) -> Actor {
        if self.by.tenant == Some(tenant) {
            return self.by.clone();
        }
        Actor::system(self.system_label, tenant)
            .from_client(self.by.client_ip.clone(), self.by.user_agent.clone())
    }
}

#[derive(Clone)]
pub struct Leaks {
    db: Db,
    keys: KeyRing,
    changes: Arc<ChangeFeed>,
}

impl Leaks {
    pub fn new(db: Db, keys: KeyRing, changes: Arc<ChangeFeed>) -> Self {
        Self { db, keys, changes }
    }

    /// Revokes the token whose secret `secret` is, and files the `token.leaked` audit
    /// event with the revocation. `None` when `secret` is not a real secret (malformed,
    /// forged, unknown, deleted, replaced): nothing happens then.
    pub async fn report(&self, secret: &str, report: &LeakReport) -> Result<Option<Revocation>> {
        use sea_orm::TransactionTrait;
        let secret = secret.trim();
        let Some((tenant, token, generation)) = self.signed(secret).await? else {
            return Ok(None);
        };
        let Some(row) = entity::Entity::find_by_id_in(tenant, token)
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        if !is_live_secret(&row, generation, &sha256_hex(secret.as_bytes()), Utc::now()) {
            return Ok(None);
        }
        let now = sigil_core::now();
        // One statement decides who revokes: concurrent reports of the same secret revoke
        // it once. A token revoked for another reason (a logout) keeps its time.
        let reason = || Expr::col(Alias::new(REASON_COLUMN));
        let txn = self.db.begin().await?;
        let res = entity::Entity::update_many_in(tenant)
            .col_expr(
                entity::Column::RevokedAt,
                Expr::col(entity::Column::RevokedAt).if_null(now),
            )
            .col_expr(Alias::new(REASON_COLUMN), Expr::value(LEAKED))
            .col_expr(entity::Column::UpdatedAt, Expr::value(now))
            .filter(entity::Column::Id.eq(token))
            .filter(
                Condition::any()
                    .add(reason().is_null())
                    .add(reason().ne(LEAKED)),
            )
            .exec(&txn)
            .await?;
        let first = res.rows_affected == 1;
        if first {
            crate::events::revoked(&txn, &row, LEAKED, report.found.clone()).await?;
            let mut after = serde_json::json!({
                "name": row.name,
                "kind": row.kind,
                "owner_id": row.owner_id.0,
                "generation": generation,
                "revoked": true,
                "reason": LEAKED,
                "secret_type": report.secret_type,
            });
            if let (Some(after), Some(found)) = (after.as_object_mut(), report.found.as_object()) {
                after.extend(found.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            let event = report
                .actor_in(tenant)
                .event("token.leaked", "token")
                .target(token)
                .after(after);
            sigil_audit::write(&txn, event).await?;
        }
        txn.commit().await?;
        if first {
            self.changes.publish(Change::Token { tenant, token }).await;
        }
        Ok(Some(Revocation {
            tenant,
            token,
            owner: row.owner_id,
            kind: TokenKind::parse(&row.kind)?,
            name: row.name,
            generation,
            first,
        }))
    }

    /// Tenant, token and generation of a secret whose signature verifies with a key of
    /// the tenant it names; `None` for anything else (the operator's token included).
    async fn signed(&self, secret: &str) -> Result<Option<(TenantId, TokenId, i32)>> {
        let Ok(unverified) = jwt::inspect(secret) else {
            return Ok(None);
        };
        let Some(tenant) = unverified.tenant else {
            return Ok(None);
        };
        if unverified.kid.starts_with("op-") {
            return Ok(None);
        }
        let Some(key) = self.keys.verification_key(tenant, &unverified.kid).await? else {
            return Ok(None);
        };
        let Ok(claims) = jwt::verify(secret, &key, tenant) else {
            return Ok(None);
        };
        Ok(jwt::parse_jti(&claims.jti).map(|(token, generation)| (tenant, token, generation)))
    }

    /// When the token was revoked as leaked, if it was.
    pub async fn leaked_at(
        &self,
        tenant: TenantId,
        token: TokenId,
    ) -> Result<Option<DateTime<Utc>>> {
        use sea_orm::QuerySelect;
        let row: Option<Option<DateTime<Utc>>> = entity::Entity::find_by_id_in(tenant, token)
            .select_only()
            .column(entity::Column::RevokedAt)
            .filter(Expr::col(Alias::new(REASON_COLUMN)).eq(LEAKED))
            .into_tuple()
            .one(&self.db)
            .await?;
        Ok(row.flatten())
    }
}

/// Revokes a token whose replaced secret came back (reuse detection), and files
/// `token.reuse_detected` by `by` (Sigil, with the client that presented the secret) with
/// the revocation. One statement decides: true only for the call that revoked it (a token
/// already revoked, for any reason, is left as it is). The caller publishes the change.
pub(crate) async fn revoke_for_reuse(
    db: &Db,
    tenant: TenantId,
    token: TokenId,
    by: &Actor,
) -> Result<bool> {
    use sea_orm::TransactionTrait;
    let now = sigil_core::now();
    let txn = db.begin().await?;
    let res = entity::Entity::update_many_in(tenant)
        .col_expr(entity::Column::RevokedAt, Expr::value(now))
        .col_expr(Alias::new(REASON_COLUMN), Expr::value(REUSE_DETECTED))
        .col_expr(entity::Column::UpdatedAt, Expr::value(now))
        .filter(entity::Column::Id.eq(token))
        .filter(entity::Column::RevokedAt.is_null())
        .exec(&txn)
        .await?;
    let first = res.rows_affected == 1;
    if first {
        let row = entity::Entity::find_by_id_in(tenant, token)
            .one(&txn)
            .await?;
        if let Some(row) = row {
            crate::events::revoked(&txn, &row, REUSE_DETECTED, serde_json::json!({})).await?;
            let event = by
                .event("token.reuse_detected", "token")
                .target(token)
                .after(serde_json::json!({
                    "owner_id": row.owner_id.0,
                    "revoked": true,
                    "reason": REUSE_DETECTED,
                }));
            sigil_audit::write(&txn, event).await?;
        }
    }
    txn.commit().await?;
    Ok(first)
}

/// Whether the secret with hash `hash` and generation `generation` is the token's
/// current secret, or its previous one still within the regeneration grace period.
fn is_live_secret(row: &entity::Model, generation: i32, hash: &str, now: DateTime<Utc>) -> bool {
    let current = generation == row.generation && row.secret_hash == hash;
    let in_grace = generation + 1 == row.generation
        && row.prev_valid_until.is_some_and(|t| t > now)
        && row.prev_secret_hash.as_deref() == Some(hash);
    current || in_grace
}
