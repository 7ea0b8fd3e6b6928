//! Usage limits. A token may carry named rate limits (`rate_limits`, JSON) and credits:
//! `credits_remaining` uses left (NULL: unlimited), an optional refill (`credits_refill`,
//! JSON) last applied at `credits_refilled_at`. `credits_version` changes whenever someone
//! sets the credits, so spends counted against an earlier value are not subtracted from
//! the new one. A user may carry rate limits shared by all of their tokens.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0013_usage_limits"
    }
}

#[derive(Iden)]
enum Tokens {
    Table,
    RateLimits,
    CreditsRemaining,
    CreditsRefill,
    CreditsRefilledAt,
    CreditsVersion,
}

#[derive(Iden)]
enum Users {
    Table,
    RateLimits,
}

fn token_columns() -> Vec<ColumnDef> {
    vec![
        ColumnDef::new(Tokens::RateLimits).text().null().to_owned(),
        ColumnDef::new(Tokens::CreditsRemaining)
            .big_integer()
            .null()
            .to_owned(),
        ColumnDef::new(Tokens::CreditsRefill)
            .text()
            .null()
            .to_owned(),
        ColumnDef::new(Tokens::CreditsRefilledAt)
            .timestamp_with_time_zone()
            .null()
            .to_owned(),
        ColumnDef::new(Tokens::CreditsVersion)
            .big_integer()
            .not_null()
            .default(0)
            .to_owned(),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite alters one column per statement.
        for mut column in token_columns() {
            manager
                .alter_table(
                    Table::alter()
                        .table(Tokens::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(ColumnDef::new(Users::RateLimits).text().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .drop_column(Users::RateLimits)
                    .to_owned(),
            )
            .await?;
        for column in [
            Tokens::CreditsVersion,
            Tokens::CreditsRefilledAt,
            Tokens::CreditsRefill,
            Tokens::CreditsRemaining,
            Tokens::RateLimits,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Tokens::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
