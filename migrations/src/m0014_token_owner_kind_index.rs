//! The per-user token limit counts an owner's API tokens (`kind <> 'session'`) on every
//! creation. `ix_tokens_tenant_owner (tenant_id, owner_id)` found the owner's rows but
//! left `kind` in the table, one row lookup per token; `ix_tokens_tenant_owner_kind
//! (tenant_id, owner_id, kind)` answers the count from the index alone. It replaces the
//! old index, whose columns it starts with (the owner key's cascade uses it the same way).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0014_token_owner_kind_index"
    }
}

#[derive(Iden)]
enum Tokens {
    Table,
    TenantId,
    OwnerId,
    Kind,
}

const OLD_INDEX: &str = "ix_tokens_tenant_owner";
const NEW_INDEX: &str = "ix_tokens_tenant_owner_kind";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(NEW_INDEX)
                    .table(Tokens::Table)
                    .col(Tokens::TenantId)
                    .col(Tokens::OwnerId)
                    .col(Tokens::Kind)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name(OLD_INDEX)
                    .table(Tokens::Table)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(OLD_INDEX)
                    .table(Tokens::Table)
                    .col(Tokens::TenantId)
                    .col(Tokens::OwnerId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name(NEW_INDEX)
                    .table(Tokens::Table)
                    .to_owned(),
            )
            .await
    }
}
