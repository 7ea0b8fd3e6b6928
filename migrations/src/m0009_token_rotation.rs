//! Self-rotation and reuse detection: `self_rotated_from` is the oldest generation of the
//! token whose secret was replaced by the token rotating itself (`rotateCurrentToken`),
//! with only self-rotations since; NULL when the latest replacement was a regeneration by
//! someone (or there was none). A signed secret of a generation from there on, presented
//! after its grace period, is a stolen copy (reuse detection). The hash of the previous
//! secret (`prev_secret_hash`) is now kept after the grace period ends.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0009_token_rotation"
    }
}

#[derive(Iden)]
enum Tokens {
    Table,
    SelfRotatedFrom,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Tokens::Table)
                    .add_column(ColumnDef::new(Tokens::SelfRotatedFrom).integer().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Tokens::Table)
                    .drop_column(Tokens::SelfRotatedFrom)
                    .to_owned(),
            )
            .await
    }
}
