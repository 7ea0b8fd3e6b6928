use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0005_create_audit"
    }
}

#[derive(Iden)]
enum AuditEvents {
    Table,
    Id,
    TenantId,
    ActorId,
    ActorLabel,
    CredentialId,
    Action,
    TargetType,
    TargetId,
    Before,
    After,
    ClientIp,
    UserAgent,
    Occurrences,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(AuditEvents::Table)
                .col(
                    ColumnDef::new(AuditEvents::Id)
                        .uuid()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(AuditEvents::TenantId).uuid().null())
                .col(ColumnDef::new(AuditEvents::ActorId).uuid().null())
                .col(
                    ColumnDef::new(AuditEvents::ActorLabel)
                        .string_len(200)
                        .not_null(),
                )
                .col(ColumnDef::new(AuditEvents::CredentialId).uuid().null())
                .col(
                    ColumnDef::new(AuditEvents::Action)
                        .string_len(64)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(AuditEvents::TargetType)
                        .string_len(32)
                        .not_null(),
                )
                .col(ColumnDef::new(AuditEvents::TargetId).string_len(200).null())
                .col(ColumnDef::new(AuditEvents::Before).text().null())
                .col(ColumnDef::new(AuditEvents::After).text().null())
                .col(ColumnDef::new(AuditEvents::ClientIp).string_len(64).null())
                .col(
                    ColumnDef::new(AuditEvents::UserAgent)
                        .string_len(400)
                        .null(),
                )
                .col(
                    ColumnDef::new(AuditEvents::Occurrences)
                        .integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(AuditEvents::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_audit_tenant_time")
                .table(AuditEvents::Table)
                .col(AuditEvents::TenantId)
                .col(AuditEvents::CreatedAt)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(AuditEvents::Table).to_owned())
            .await
    }
}
