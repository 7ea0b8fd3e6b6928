//! The creator ceiling of a token: the method ids it may never exceed, fixed when someone
//! other than its owner (or a credential narrower than the owner's login) made or
//! re-scoped it. NULL: no ceiling beyond the owner's current rights.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0006_token_ceiling"
    }
}

#[derive(Iden)]
enum Tokens {
    Table,
    Ceiling,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Tokens::Table)
                    .add_column(ColumnDef::new(Tokens::Ceiling).text().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Tokens::Table)
                    .drop_column(Tokens::Ceiling)
                    .to_owned(),
            )
            .await
    }
}
