use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0004_create_tokens"
    }
}

#[derive(Iden)]
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
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Tokens::Table)
                .col(ColumnDef::new(Tokens::Id).uuid().not_null().primary_key())
                .col(ColumnDef::new(Tokens::TenantId).uuid().not_null())
                .col(ColumnDef::new(Tokens::OwnerId).uuid().not_null())
                .col(ColumnDef::new(Tokens::Kind).string_len(16).not_null())
                .col(ColumnDef::new(Tokens::Name).string_len(200).not_null())
                .col(ColumnDef::new(Tokens::Description).text().not_null())
                .col(ColumnDef::new(Tokens::ScopeSet).string_len(200).null())
                .col(ColumnDef::new(Tokens::ScopeMethods).text().null())
                .col(
                    ColumnDef::new(Tokens::ExpiresAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .col(ColumnDef::new(Tokens::IpFilter).text().not_null())
                .col(ColumnDef::new(Tokens::Enabled).boolean().not_null())
                .col(ColumnDef::new(Tokens::Generation).integer().not_null())
                .col(ColumnDef::new(Tokens::SecretHash).string_len(64).not_null())
                .col(ColumnDef::new(Tokens::PrevSecretHash).string_len(64).null())
                .col(
                    ColumnDef::new(Tokens::PrevValidUntil)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .col(
                    ColumnDef::new(Tokens::ElevatedUntil)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .col(
                    ColumnDef::new(Tokens::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(ColumnDef::new(Tokens::CreatedBy).uuid().null())
                .col(
                    ColumnDef::new(Tokens::UpdatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(ColumnDef::new(Tokens::UseCount).big_integer().not_null())
                .col(
                    ColumnDef::new(Tokens::LastUsedAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .col(ColumnDef::new(Tokens::LastUsedIp).string_len(64).null())
                .col(
                    ColumnDef::new(Tokens::RevokedAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_tokens_tenant_owner")
                .table(Tokens::Table)
                .col(Tokens::TenantId)
                .col(Tokens::OwnerId)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Tokens::Table).to_owned())
            .await
    }
}
