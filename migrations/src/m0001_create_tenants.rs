use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0001_create_tenants"
    }
}

#[derive(Iden)]
enum Tenants {
    Table,
    Id,
    Slug,
    Name,
    Enabled,
    Policy,
    CreatedAt,
    UpdatedAt,
}

#[derive(Iden)]
enum SigningKeys {
    Table,
    Kid,
    TenantId,
    PublicKey,
    PrivateKeySealed,
    State,
    CreatedAt,
    RetiringAt,
    RetireAfter,
}

#[derive(Iden)]
enum PlatformSecrets {
    Table,
    Name,
    Value,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Tenants::Table)
                .col(ColumnDef::new(Tenants::Id).uuid().not_null().primary_key())
                .col(
                    ColumnDef::new(Tenants::Slug)
                        .string_len(64)
                        .not_null()
                        .unique_key(),
                )
                .col(ColumnDef::new(Tenants::Name).string_len(200).not_null())
                .col(ColumnDef::new(Tenants::Enabled).boolean().not_null())
                .col(ColumnDef::new(Tenants::Policy).text().not_null())
                .col(
                    ColumnDef::new(Tenants::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Tenants::UpdatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(SigningKeys::Table)
                .col(
                    ColumnDef::new(SigningKeys::Kid)
                        .string_len(64)
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(SigningKeys::TenantId).uuid().not_null())
                .col(
                    ColumnDef::new(SigningKeys::PublicKey)
                        .string_len(64)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(SigningKeys::PrivateKeySealed)
                        .text()
                        .not_null(),
                )
                .col(ColumnDef::new(SigningKeys::State).string_len(16).not_null())
                .col(
                    ColumnDef::new(SigningKeys::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(SigningKeys::RetiringAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .col(
                    ColumnDef::new(SigningKeys::RetireAfter)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(SigningKeys::Table, SigningKeys::TenantId)
                        .to(Tenants::Table, Tenants::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_signing_keys_tenant")
                .table(SigningKeys::Table)
                .col(SigningKeys::TenantId)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(PlatformSecrets::Table)
                .col(
                    ColumnDef::new(PlatformSecrets::Name)
                        .string_len(64)
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(PlatformSecrets::Value).text().not_null())
                .col(
                    ColumnDef::new(PlatformSecrets::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(PlatformSecrets::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(SigningKeys::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(Tenants::Table).to_owned())
            .await
    }
}
