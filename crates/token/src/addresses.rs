//! The recent client addresses of each token: the last [`KEEP`] distinct addresses with
//! when each was first and last seen. Written by the usage flush (never per request), in
//! its transaction; an address not among the token's recent ones raises `token.new_ip`.

use std::collections::HashMap;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use sigil_core::{Result, TenantId, TenantOwned, TokenId};

use crate::entity as tokens;

/// Distinct addresses kept per token.
pub const KEEP: usize = 5;

pub mod entity {
    use sea_orm::entity::prelude::*;
    use sigil_core::{TenantId, TokenId};

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "token_addresses")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub token_id: TokenId,
        #[sea_orm(primary_key, auto_increment = false)]
        pub ip: String,
        pub tenant_id: TenantId,
        pub first_seen: DateTimeUtc,
        pub last_seen: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl sigil_core::TenantOwned for Entity {
        fn tenant_column() -> Column {
            Column::TenantId
        }
    }
}

/// One recent address of a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecentAddress {
    pub ip: String,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

/// Uses of one address counted since the last flush.
#[derive(Clone, Copy, Debug)]
pub struct Seen {
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
}

/// The token's recent addresses, most recently seen first.
pub async fn recent(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    token: TokenId,
) -> Result<Vec<RecentAddress>> {
    Ok(entity::Entity::find_in(tenant)
        .filter(entity::Column::TokenId.eq(token))
        .order_by_desc(entity::Column::LastSeen)
        .all(conn)
        .await?
        .into_iter()
        .take(KEEP)
        .map(|m| RecentAddress {
            ip: m.ip,
            first_seen: m.first_seen,
            last_seen: m.last_seen,
        })
        .collect())
}

/// Folds the addresses of one flush into the stored ones, raises `token.new_ip` for each
/// address new to its token, and keeps the [`KEEP`] most recent per token.
pub(crate) async fn record(
    conn: &impl ConnectionTrait,
    seen: &HashMap<TokenId, HashMap<IpAddr, Seen>>,
) -> Result<()> {
    let ids: Vec<TokenId> = seen
        .iter()
        .filter(|(_, ips)| !ips.is_empty())
        .map(|(id, _)| *id)
        .collect();
    for chunk in ids.chunks(100) {
        // The usage flush spans every tenant; token ids are unique across them.
        let rows = tokens::Entity::find()
            .filter(tokens::Column::Id.is_in(chunk.iter().copied()))
            .all(conn)
            .await?;
        let mut stored: HashMap<TokenId, Vec<entity::Model>> = HashMap::new();
        for a in entity::Entity::find()
            .filter(entity::Column::TokenId.is_in(chunk.iter().copied()))
            .all(conn)
            .await?
        {
            stored.entry(a.token_id).or_default().push(a);
        }
        for row in rows {
            let Some(ips) = seen.get(&row.id) else {
                continue;
            };
            let known = stored.remove(&row.id).unwrap_or_default();
            fold_token(conn, &row, ips, known).await?;
        }
    }
    Ok(())
}

async fn fold_token(
    conn: &impl ConnectionTrait,
    row: &tokens::Model,
    ips: &HashMap<IpAddr, Seen>,
    known: Vec<entity::Model>,
) -> Result<()> {
    let known_ips: Vec<String> = known.iter().map(|k| k.ip.clone()).collect();
    let mut all: Vec<(String, DateTime<Utc>)> =
        known.iter().map(|k| (k.ip.clone(), k.last_seen)).collect();
    // Oldest first, so the events come in the order the addresses appeared.
    let mut fresh: Vec<(&IpAddr, &Seen)> = ips.iter().collect();
    fresh.sort_by_key(|(_, s)| s.first);
    for (ip, s) in fresh {
        let text = ip.to_string();
        if let Some(k) = known.iter().find(|k| k.ip == text) {
            if s.last > k.last_seen {
                entity::Entity::update_many_in(row.tenant_id)
                    .col_expr(entity::Column::LastSeen, Expr::value(s.last))
                    .filter(entity::Column::TokenId.eq(row.id))
                    .filter(entity::Column::Ip.eq(text.clone()))
                    .filter(entity::Column::LastSeen.lt(s.last))
                    .exec(conn)
                    .await?;
            }
            if let Some(slot) = all.iter_mut().find(|(i, _)| *i == text) {
                slot.1 = slot.1.max(s.last);
            }
            continue;
        }
        // Another replica may add the same address at the same time: only the insert
        // that lands raises the event.
        let inserted = entity::Entity::insert(entity::ActiveModel {
            token_id: Set(row.id),
            ip: Set(text.clone()),
            tenant_id: Set(row.tenant_id),
            first_seen: Set(s.first),
            last_seen: Set(s.last),
        })
        .on_conflict(
            OnConflict::columns([entity::Column::TokenId, entity::Column::Ip])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
        if inserted == 1 {
            crate::events::token_event(
                conn,
                sigil_core::outbox::events::TOKEN_NEW_IP,
                row,
                serde_json::json!({
                    "ip": text,
                    "first_seen": s.first,
                    "recent_addresses": known_ips,
                }),
            )
            .await?;
        }
        all.push((text, s.last));
    }
    if all.len() > KEEP {
        all.sort_by_key(|a| std::cmp::Reverse(a.1));
        let dropped: Vec<String> = all.split_off(KEEP).into_iter().map(|(ip, _)| ip).collect();
        entity::Entity::delete_many_in(row.tenant_id)
            .filter(entity::Column::TokenId.eq(row.id))
            .filter(entity::Column::Ip.is_in(dropped))
            .exec(conn)
            .await?;
    }
    Ok(())
}

/// Removes the addresses of tokens that no longer exist (maintenance, over every tenant).
pub async fn prune(conn: &impl ConnectionTrait) -> Result<u64> {
    use sea_orm::sea_query::Query;
    let live = Query::select()
        .column(tokens::Column::Id)
        .from(tokens::Entity)
        .to_owned();
    let res = entity::Entity::delete_many()
        .filter(entity::Column::TokenId.not_in_subquery(live))
        .exec(conn)
        .await?;
    Ok(res.rows_affected)
}
