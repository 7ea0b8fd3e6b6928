//! Why a token was revoked: `leaked` when someone reported its secret as exposed (a
//! secret scanner or a person), NULL for every other revocation (a logout). The time is
//! the existing `revoked_at`.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0008_token_leaks"
    }
}

#[derive(Iden)]
enum Tokens {
    Table,
    RevokedReason,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Tokens::Table)
                    .add_column(ColumnDef::new(Tokens::RevokedReason).string_len(32).null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Tokens::Table)
                    .drop_column(Tokens::RevokedReason)
                    .to_owned(),
            )
            .await
    }
}
