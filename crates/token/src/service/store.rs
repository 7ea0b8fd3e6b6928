//! The statements behind the token use cases: every read and write of the `tokens` rows,
//! each scoped to one tenant by construction ([`TenantOwned`]). Use cases decide; these
//! only read and write, with the connection or transaction they are given.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Asterisk, Expr, Func, Query, SimpleExpr};
use sea_orm::{
    ActiveModelTrait, ActiveValue, ColumnTrait, Condition, ConnectionTrait, FromQueryResult,
    Iterable, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Select, Set,
};
use sigil_core::crypto::sha256_hex;
use sigil_core::{Error, Result, TenantId, TenantOwned, TokenId, UserId};

use super::management::{TokenFilter, TokenSort};
use super::minting::NewToken;
use crate::entity::{self, Column, Entity};
use crate::types::{Scope, TokenKind};

/// A personal or application token of `tenant` (login sessions are not managed as tokens).
pub(super) async fn api_token(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    id: TokenId,
) -> Result<entity::Model> {
    Entity::find_by_id_in(tenant, id)
        .filter(Column::Kind.ne(TokenKind::Session.as_str()))
        .one(conn)
        .await?
        .ok_or_else(|| Error::not_found("token"))
}

/// What a new row holds besides the defaults of a fresh token.
pub(super) struct NewRow<'a> {
    pub id: TokenId,
    pub tenant: TenantId,
    pub owner: UserId,
    pub created_by: Option<UserId>,
    pub kind: TokenKind,
    pub new: NewToken,
    pub ip_filter: Vec<String>,
    pub secret: &'a str,
    /// The stored ceiling (JSON method ids), if any.
    pub ceiling: Option<String>,
}

/// The row of a new token (generation 1, never used).
pub(super) fn new_row(row: NewRow<'_>) -> Result<entity::ActiveModel> {
    let now = sigil_core::now();
    let new = row.new;
    let (scope_set, scope_methods) = match &new.scope {
        Scope::Set(s) => (Some(s.clone()), None),
        Scope::Methods(m) => (
            None,
            Some(serde_json::to_string(m).map_err(Error::internal)?),
        ),
        Scope::All => (None, None),
    };
    let (credits_remaining, credits_refill, credits_refilled_at) =
        crate::credits::credit_columns(new.credits.as_ref(), now);
    Ok(entity::ActiveModel {
        id: Set(row.id),
        tenant_id: Set(row.tenant),
        owner_id: Set(row.owner),
        kind: Set(row.kind.as_str().to_owned()),
        name: Set(new.name),
        description: Set(new.description),
        scope_set: Set(scope_set),
        scope_methods: Set(scope_methods),
        expires_at: Set(new.expires_at),
        ip_filter: Set(serde_json::to_string(&row.ip_filter).map_err(Error::internal)?),
        enabled: Set(new.enabled),
        generation: Set(1),
        secret_hash: Set(sha256_hex(row.secret.as_bytes())),
        prev_secret_hash: Set(None),
        prev_valid_until: Set(None),
        elevated_until: Set(None),
        created_at: Set(now),
        created_by: Set(row.created_by),
        updated_at: Set(now),
        use_count: Set(0),
        last_used_at: Set(None),
        last_used_ip: Set(None),
        revoked_at: Set(None),
        revoked_reason: Set(None),
        ceiling: Set(row.ceiling),
        self_rotated_from: Set(None),
        rate_limits: Set(crate::credits::limits_json(&new.rate_limits)),
        credits_remaining: Set(credits_remaining),
        credits_refill: Set(credits_refill),
        credits_refilled_at: Set(credits_refilled_at),
        credits_version: Set(0),
    })
}

/// Inserts the token unless its owner already has `limit` API tokens, in one statement
/// (`INSERT ... SELECT ... WHERE (count) < limit`); `None` when the limit is reached.
/// Run it under the owner's row lock so that concurrent inserts cannot both pass.
pub(super) async fn insert_within_limit(
    conn: &impl ConnectionTrait,
    mut model: entity::ActiveModel,
    tenant: TenantId,
    owner: UserId,
    limit: u32,
) -> Result<Option<entity::Model>> {
    let mut columns = Vec::new();
    let mut values = Vec::new();
    for column in Column::iter() {
        // Taken, not copied: the row is built once and moved into the statement.
        if let ActiveValue::Set(value) = model.take(column) {
            columns.push(column);
            values.push(SimpleExpr::Value(value));
        }
    }
    // `COUNT(*)`, not `COUNT(id)`: the owner-and-kind index answers it alone. The
    // statements are built in place (no `to_owned` copies of them).
    let mut owned = Query::select();
    owned
        .expr(Expr::col(Asterisk).count())
        .from(Entity)
        .and_where(Column::TenantId.eq(tenant))
        .and_where(Column::OwnerId.eq(owner))
        .and_where(Column::Kind.ne(TokenKind::Session.as_str()));
    let mut source = Query::select();
    source.exprs(values).and_where(
        Expr::expr(SimpleExpr::SubQuery(
            None,
            Box::new(owned.into_sub_query_statement()),
        ))
        .lt(i64::from(limit)),
    );
    let mut insert = Query::insert();
    insert
        .into_table(Entity)
        .columns(columns)
        .select_from(source)
        .map_err(Error::internal)?
        .returning_all();
    let statement = conn.get_database_backend().build(&insert);
    Ok(entity::Model::find_by_statement(statement)
        .one(conn)
        .await?)
}

/// A new secret for a token, replacing the one of generation `generation - 1`.
pub(super) struct NewSecret<'a> {
    pub generation: i32,
    pub secret: &'a str,
    /// Until when the replaced secret still works (its grace period).
    pub grace_until: Option<DateTime<Utc>>,
    pub self_rotated_from: Option<i32>,
    pub expires_at: Option<DateTime<Utc>>,
    pub at: DateTime<Utc>,
}

/// Stores `new` for `current`, unless the token changed meanwhile (its generation moved
/// on): false then.
pub(super) async fn replace_secret(
    conn: &impl ConnectionTrait,
    current: &entity::Model,
    new: NewSecret<'_>,
) -> Result<bool> {
    let res = Entity::update_many_in(current.tenant_id)
        .col_expr(Column::Generation, Expr::value(new.generation))
        .col_expr(
            Column::SecretHash,
            Expr::value(sha256_hex(new.secret.as_bytes())),
        )
        .col_expr(
            Column::PrevSecretHash,
            Expr::value(Some(current.secret_hash.clone())),
        )
        .col_expr(Column::PrevValidUntil, Expr::value(new.grace_until))
        .col_expr(Column::SelfRotatedFrom, Expr::value(new.self_rotated_from))
        .col_expr(Column::ExpiresAt, Expr::value(new.expires_at))
        .col_expr(Column::UpdatedAt, Expr::value(new.at))
        .filter(Column::Id.eq(current.id))
        .filter(Column::Generation.eq(current.generation))
        .exec(conn)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Deletes one token; false when it was already gone.
pub(super) async fn delete(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    id: TokenId,
) -> Result<bool> {
    let res = Entity::delete_many_in(tenant)
        .filter(Column::Id.eq(id))
        .exec(conn)
        .await?;
    Ok(res.rows_affected > 0)
}

/// Locks the API tokens among `ids` (of `owner` only, when given) for deletion.
pub(super) async fn lock_api_tokens(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    ids: &[TokenId],
    owner: Option<UserId>,
) -> Result<Vec<entity::Model>> {
    let mut query = Entity::find_in(tenant)
        .filter(Column::Id.is_in(ids.iter().copied()))
        .filter(Column::Kind.ne(TokenKind::Session.as_str()));
    if let Some(owner) = owner {
        query = query.filter(Column::OwnerId.eq(owner));
    }
    Ok(query.lock_exclusive().all(conn).await?)
}

pub(super) async fn delete_all(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    ids: &[TokenId],
) -> Result<()> {
    Entity::delete_many_in(tenant)
        .filter(Column::Id.is_in(ids.iter().copied()))
        .exec(conn)
        .await?;
    Ok(())
}

/// The API tokens of `tenant` matching `filter` (of `owner` only, when given), unordered.
pub(super) fn matching(
    tenant: TenantId,
    filter: &TokenFilter,
    owner: Option<UserId>,
    now: DateTime<Utc>,
) -> Select<Entity> {
    let mut query = Entity::find_in(tenant).filter(Column::Kind.ne(TokenKind::Session.as_str()));
    if let Some(owner) = owner {
        query = query.filter(Column::OwnerId.eq(owner));
    }
    if let Some(kind) = filter.kind {
        query = query.filter(Column::Kind.eq(kind.as_str()));
    }
    if let Some(enabled) = filter.enabled {
        query = query.filter(Column::Enabled.eq(enabled));
    }
    match filter.expired {
        Some(true) => query = query.filter(Column::ExpiresAt.lte(now)),
        Some(false) => {
            query = query.filter(
                Condition::any()
                    .add(Column::ExpiresAt.is_null())
                    .add(Column::ExpiresAt.gt(now)),
            )
        }
        None => {}
    }
    if let Some(before) = filter.expiring_before {
        query = query
            .filter(Column::ExpiresAt.gt(now))
            .filter(Column::ExpiresAt.lte(before));
    }
    if let Some(since) = filter.unused_since {
        query = query.filter(
            Condition::any().add(Column::LastUsedAt.lt(since)).add(
                Condition::all()
                    .add(Column::LastUsedAt.is_null())
                    .add(Column::CreatedAt.lt(since)),
            ),
        );
    }
    if let Some(set) = &filter.scope_set {
        query = query.filter(Column::ScopeSet.eq(set.as_str()));
    }
    if let Some(q) = filter.q.as_deref().filter(|q| !q.is_empty()) {
        let pattern = sigil_core::page::contains_pattern(q);
        query = query.filter(
            Condition::any()
                .add(Expr::expr(Func::lower(Expr::col(Column::Name))).like(pattern.clone()))
                .add(Expr::expr(Func::lower(Expr::col(Column::Description))).like(pattern)),
        );
    }
    query
}

/// `query` in the order a listing asks for (ties broken by id, so pages are stable).
pub(super) fn sorted(query: Select<Entity>, sort: TokenSort) -> Select<Entity> {
    let query = match sort {
        TokenSort::CreatedDesc => query.order_by_desc(Column::CreatedAt),
        TokenSort::CreatedAsc => query.order_by_asc(Column::CreatedAt),
        TokenSort::Name => query.order_by_asc(Column::Name),
        TokenSort::ExpiresAt => query.order_by_asc(Column::ExpiresAt),
        TokenSort::LastUsedDesc => query.order_by_desc(Column::LastUsedAt),
    };
    query.order_by_asc(Column::Id)
}

pub(super) async fn count_using_set(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    set: &str,
) -> Result<u64> {
    Ok(Entity::find_in(tenant)
        .filter(Column::ScopeSet.eq(set))
        .count(conn)
        .await?)
}

/// Removes a user's expired or revoked login sessions.
pub(super) async fn prune_sessions(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    user: UserId,
) -> Result<()> {
    Entity::delete_many_in(tenant)
        .filter(Column::OwnerId.eq(user))
        .filter(Column::Kind.eq(TokenKind::Session.as_str()))
        .filter(
            Condition::any()
                .add(Column::ExpiresAt.lt(Utc::now()))
                .add(Column::RevokedAt.is_not_null()),
        )
        .exec(conn)
        .await?;
    Ok(())
}

/// Revokes every live login session of a user except `keep`.
pub(super) async fn revoke_sessions(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    user: UserId,
    keep: Option<TokenId>,
) -> Result<()> {
    let mut update = Entity::update_many_in(tenant)
        .col_expr(Column::RevokedAt, Expr::value(Some(sigil_core::now())))
        .filter(Column::OwnerId.eq(user))
        .filter(Column::Kind.eq(TokenKind::Session.as_str()))
        .filter(Column::RevokedAt.is_null());
    if let Some(keep) = keep {
        update = update.filter(Column::Id.ne(keep));
    }
    update.exec(conn).await?;
    Ok(())
}

/// Drops the ceiling of a login session.
pub(super) async fn lift_session_ceiling(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    session: TokenId,
) -> Result<()> {
    Entity::update_many_in(tenant)
        .col_expr(Column::Ceiling, Expr::value(Option::<String>::None))
        .filter(Column::Id.eq(session))
        .filter(Column::Kind.eq(TokenKind::Session.as_str()))
        .exec(conn)
        .await?;
    Ok(())
}

/// Records that the credential's password was confirmed, valid until `until`.
pub(super) async fn confirm_until(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    token: TokenId,
    until: DateTime<Utc>,
) -> Result<()> {
    Entity::update_many_in(tenant)
        .col_expr(Column::ElevatedUntil, Expr::value(Some(until)))
        .filter(Column::Id.eq(token))
        .exec(conn)
        .await?;
    Ok(())
}
