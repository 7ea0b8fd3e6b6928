//! Two-factor sign-in (TOTP, RFC 6238) for people.
//!
//! - `users.two_factor_enabled_at`: when the user's TOTP was turned on (NULL: off), so
//!   lists and the login path read it with the user.
//! - `user_totp`: one row per user with an enrolment, confirmed or pending: the secret
//!   sealed with the master key (bound to the user id), when it was confirmed, and the
//!   last time step a code was accepted for (a code works once).
//! - `user_recovery_codes`: ten single-use codes per user, stored as a keyed SHA-256
//!   (HMAC) only; `used_at` marks a spent one.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0010_two_factor"
    }
}

#[derive(Iden)]
enum Tenants {
    Table,
    Id,
}

#[derive(Iden)]
enum Users {
    Table,
    Id,
    TwoFactorEnabledAt,
}

#[derive(Iden)]
enum UserTotp {
    Table,
    UserId,
    TenantId,
    SecretSealed,
    ConfirmedAt,
    LastUsedStep,
    CreatedAt,
}

#[derive(Iden)]
enum UserRecoveryCodes {
    Table,
    Id,
    TenantId,
    UserId,
    CodeHash,
    UsedAt,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Users::Table)
                .add_column(
                    ColumnDef::new(Users::TwoFactorEnabledAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(UserTotp::Table)
                .col(
                    ColumnDef::new(UserTotp::UserId)
                        .uuid()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(UserTotp::TenantId).uuid().not_null())
                .col(ColumnDef::new(UserTotp::SecretSealed).text().not_null())
                .col(
                    ColumnDef::new(UserTotp::ConfirmedAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .col(ColumnDef::new(UserTotp::LastUsedStep).big_integer().null())
                .col(
                    ColumnDef::new(UserTotp::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(UserTotp::Table, UserTotp::UserId)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(UserTotp::Table, UserTotp::TenantId)
                        .to(Tenants::Table, Tenants::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(UserRecoveryCodes::Table)
                .col(
                    ColumnDef::new(UserRecoveryCodes::Id)
                        .uuid()
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(UserRecoveryCodes::TenantId)
                        .uuid()
                        .not_null(),
                )
                .col(ColumnDef::new(UserRecoveryCodes::UserId).uuid().not_null())
                .col(
                    ColumnDef::new(UserRecoveryCodes::CodeHash)
                        .string_len(64)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(UserRecoveryCodes::UsedAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .col(
                    ColumnDef::new(UserRecoveryCodes::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(UserRecoveryCodes::Table, UserRecoveryCodes::UserId)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(UserRecoveryCodes::Table, UserRecoveryCodes::TenantId)
                        .to(Tenants::Table, Tenants::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_user_recovery_codes_user_hash")
                .table(UserRecoveryCodes::Table)
                .col(UserRecoveryCodes::UserId)
                .col(UserRecoveryCodes::CodeHash)
                .unique()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(UserRecoveryCodes::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(UserTotp::Table).to_owned())
            .await?;
        m.alter_table(
            Table::alter()
                .table(Users::Table)
                .drop_column(Users::TwoFactorEnabledAt)
                .to_owned(),
        )
        .await
    }
}
