//! Tokens belong to their owner: a foreign key from `tokens (tenant_id, owner_id)` to
//! `users (tenant_id, id)`, ON DELETE CASCADE, so deleting a user deletes their tokens in
//! the same statement and a token can never name an owner of another tenant. The key
//! points at a new unique index on `users (tenant_id, id)`, and the cascade finds the
//! tokens through the existing `ix_tokens_tenant_owner`.
//!
//! Tokens whose owner no longer exists (left behind when a user deletion and the deletion
//! of its tokens were two transactions) are dropped first: no verification could accept
//! them anyway. PostgreSQL adds the constraint; SQLite cannot, so the table is rebuilt
//! (create, copy, drop, rename, index) in one transaction. Nothing references `tokens`.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend, TransactionTrait};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0012_token_owner_fk"
    }
}

#[derive(Iden)]
enum Users {
    Table,
    Id,
    TenantId,
}

/// The token table as of m0004, m0006, m0008 and m0009, in that column order.
#[derive(Iden, Clone, Copy)]
enum Tokens {
    Table,
    Id,
    TenantId,
    OwnerId,
    Kind,
    Name,
    Description,
    ScopeSet,
    ScopeMethods,
    ExpiresAt,
    IpFilter,
    Enabled,
    Generation,
    SecretHash,
    PrevSecretHash,
    PrevValidUntil,
    ElevatedUntil,
    CreatedAt,
    CreatedBy,
    UpdatedAt,
    UseCount,
    LastUsedAt,
    LastUsedIp,
    RevokedAt,
    Ceiling,
    RevokedReason,
    SelfRotatedFrom,
}

/// The table SQLite builds before it replaces `tokens`.
#[derive(Iden)]
enum Rebuilt {
    #[iden = "tokens_rebuilt"]
    Table,
}

const COLUMNS: [Tokens; 26] = [
    Tokens::Id,
    Tokens::TenantId,
    Tokens::OwnerId,
    Tokens::Kind,
    Tokens::Name,
    Tokens::Description,
    Tokens::ScopeSet,
    Tokens::ScopeMethods,
    Tokens::ExpiresAt,
    Tokens::IpFilter,
    Tokens::Enabled,
    Tokens::Generation,
    Tokens::SecretHash,
    Tokens::PrevSecretHash,
    Tokens::PrevValidUntil,
    Tokens::ElevatedUntil,
    Tokens::CreatedAt,
    Tokens::CreatedBy,
    Tokens::UpdatedAt,
    Tokens::UseCount,
    Tokens::LastUsedAt,
    Tokens::LastUsedIp,
    Tokens::RevokedAt,
    Tokens::Ceiling,
    Tokens::RevokedReason,
    Tokens::SelfRotatedFrom,
];

const FK_NAME: &str = "fk_tokens_owner";
const OWNER_KEY: &str = "ux_users_tenant_id";
const TENANT_OWNER_INDEX: &str = "ix_tokens_tenant_owner";

fn ts(column: Tokens) -> ColumnDef {
    ColumnDef::new(column)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

fn ts_null(column: Tokens) -> ColumnDef {
    ColumnDef::new(column)
        .timestamp_with_time_zone()
        .null()
        .to_owned()
}

fn owner_key() -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(FK_NAME)
        .from(Tokens::Table, (Tokens::TenantId, Tokens::OwnerId))
        .to(Users::Table, (Users::TenantId, Users::Id))
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

/// The token table named `table`, with the owner key or without it.
fn token_table(table: impl IntoIden + 'static, with_owner_key: bool) -> TableCreateStatement {
    let mut t = Table::create();
    t.table(table)
        .col(ColumnDef::new(Tokens::Id).uuid().not_null().primary_key())
        .col(ColumnDef::new(Tokens::TenantId).uuid().not_null())
        .col(ColumnDef::new(Tokens::OwnerId).uuid().not_null())
        .col(ColumnDef::new(Tokens::Kind).string_len(16).not_null())
        .col(ColumnDef::new(Tokens::Name).string_len(200).not_null())
        .col(ColumnDef::new(Tokens::Description).text().not_null())
        .col(ColumnDef::new(Tokens::ScopeSet).string_len(200).null())
        .col(ColumnDef::new(Tokens::ScopeMethods).text().null())
        .col(ts_null(Tokens::ExpiresAt))
        .col(ColumnDef::new(Tokens::IpFilter).text().not_null())
        .col(ColumnDef::new(Tokens::Enabled).boolean().not_null())
        .col(ColumnDef::new(Tokens::Generation).integer().not_null())
        .col(ColumnDef::new(Tokens::SecretHash).string_len(64).not_null())
        .col(ColumnDef::new(Tokens::PrevSecretHash).string_len(64).null())
        .col(ts_null(Tokens::PrevValidUntil))
        .col(ts_null(Tokens::ElevatedUntil))
        .col(ts(Tokens::CreatedAt))
        .col(ColumnDef::new(Tokens::CreatedBy).uuid().null())
        .col(ts(Tokens::UpdatedAt))
        .col(ColumnDef::new(Tokens::UseCount).big_integer().not_null())
        .col(ts_null(Tokens::LastUsedAt))
        .col(ColumnDef::new(Tokens::LastUsedIp).string_len(64).null())
        .col(ts_null(Tokens::RevokedAt))
        .col(ColumnDef::new(Tokens::Ceiling).text().null())
        .col(ColumnDef::new(Tokens::RevokedReason).string_len(32).null())
        .col(ColumnDef::new(Tokens::SelfRotatedFrom).integer().null());
    if with_owner_key {
        t.foreign_key(&mut owner_key());
    }
    t.to_owned()
}

fn tenant_owner_index() -> IndexCreateStatement {
    Index::create()
        .name(TENANT_OWNER_INDEX)
        .table(Tokens::Table)
        .col(Tokens::TenantId)
        .col(Tokens::OwnerId)
        .to_owned()
}

/// Tokens whose owner exists in the token's tenant.
fn owned() -> SimpleExpr {
    Expr::exists(
        Query::select()
            .expr(Expr::val(1))
            .from(Users::Table)
            .and_where(
                Expr::col((Users::Table, Users::Id)).equals((Tokens::Table, Tokens::OwnerId)),
            )
            .and_where(
                Expr::col((Users::Table, Users::TenantId))
                    .equals((Tokens::Table, Tokens::TenantId)),
            )
            .to_owned(),
    )
}

/// SQLite: replaces `tokens` by a copy of its rows (`keep` picks them) in a table built
/// with or without the owner key, in one transaction.
async fn rebuild(
    m: &SchemaManager<'_>,
    with_owner_key: bool,
    keep: Option<SimpleExpr>,
) -> Result<(), DbErr> {
    let backend = m.get_database_backend();
    let txn = m.get_connection().begin().await?;
    txn.execute(backend.build(&token_table(Rebuilt::Table, with_owner_key)))
        .await?;
    let mut rows = Query::select();
    rows.columns(COLUMNS).from(Tokens::Table);
    if let Some(keep) = keep {
        rows.and_where(keep);
    }
    let copy = Query::insert()
        .into_table(Rebuilt::Table)
        .columns(COLUMNS)
        .select_from(rows)
        .map_err(|e| DbErr::Migration(e.to_string()))?
        .to_owned();
    txn.execute(backend.build(&copy)).await?;
    txn.execute(backend.build(&Table::drop().table(Tokens::Table).to_owned()))
        .await?;
    txn.execute(
        backend.build(
            &Table::rename()
                .table(Rebuilt::Table, Tokens::Table)
                .to_owned(),
        ),
    )
    .await?;
    txn.execute(backend.build(&tenant_owner_index())).await?;
    txn.commit().await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name(OWNER_KEY)
                .table(Users::Table)
                .col(Users::TenantId)
                .col(Users::Id)
                .unique()
                .to_owned(),
        )
        .await?;
        if m.get_database_backend() == DatabaseBackend::Sqlite {
            return rebuild(m, true, Some(owned())).await;
        }
        m.exec_stmt(
            Query::delete()
                .from_table(Tokens::Table)
                .and_where(owned().not())
                .to_owned(),
        )
        .await?;
        m.create_foreign_key(owner_key()).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() == DatabaseBackend::Sqlite {
            rebuild(m, false, None).await?;
        } else {
            m.drop_foreign_key(
                ForeignKey::drop()
                    .name(FK_NAME)
                    .table(Tokens::Table)
                    .to_owned(),
            )
            .await?;
        }
        m.drop_index(Index::drop().name(OWNER_KEY).table(Users::Table).to_owned())
            .await
    }
}
