use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0003_create_registry"
    }
}

#[derive(Iden)]
enum Plugins {
    Table,
    Uid,
    PluginId,
    TenantId,
    Name,
    Version,
    Manifest,
    CreatedAt,
    UpdatedAt,
}

#[derive(Iden)]
enum ScopeSets {
    Table,
    Id,
    TenantId,
    Slug,
    Name,
    Description,
    Entries,
    Access,
    CreatedAt,
    UpdatedAt,
}

#[derive(Iden)]
enum RegistryVersion {
    Table,
    Id,
    Version,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Plugins::Table)
                .col(
                    ColumnDef::new(Plugins::Uid)
                        .string_len(128)
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(Plugins::PluginId).string_len(64).not_null())
                .col(ColumnDef::new(Plugins::TenantId).uuid().null())
                .col(ColumnDef::new(Plugins::Name).string_len(200).not_null())
                .col(ColumnDef::new(Plugins::Version).string_len(64).not_null())
                .col(ColumnDef::new(Plugins::Manifest).text().not_null())
                .col(
                    ColumnDef::new(Plugins::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Plugins::UpdatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(ScopeSets::Table)
                .col(
                    ColumnDef::new(ScopeSets::Id)
                        .uuid()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(ScopeSets::TenantId).uuid().not_null())
                .col(ColumnDef::new(ScopeSets::Slug).string_len(64).not_null())
                .col(ColumnDef::new(ScopeSets::Name).string_len(200).not_null())
                .col(ColumnDef::new(ScopeSets::Description).text().not_null())
                .col(ColumnDef::new(ScopeSets::Entries).text().not_null())
                .col(ColumnDef::new(ScopeSets::Access).string_len(16).null())
                .col(
                    ColumnDef::new(ScopeSets::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(ScopeSets::UpdatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_scope_sets_tenant_slug")
                .table(ScopeSets::Table)
                .col(ScopeSets::TenantId)
                .col(ScopeSets::Slug)
                .unique()
                .to_owned(),
        )
        .await?;
        // One row whose counter is bumped by every registry change, so replicas can tell
        // their compiled snapshot is stale.
        m.create_table(
            Table::create()
                .table(RegistryVersion::Table)
                .col(
                    ColumnDef::new(RegistryVersion::Id)
                        .integer()
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(RegistryVersion::Version)
                        .big_integer()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        m.exec_stmt(
            Query::insert()
                .into_table(RegistryVersion::Table)
                .columns([RegistryVersion::Id, RegistryVersion::Version])
                .values_panic([1.into(), 1i64.into()])
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(RegistryVersion::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(ScopeSets::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(Plugins::Table).to_owned())
            .await
    }
}
