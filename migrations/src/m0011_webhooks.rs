//! Webhooks and what feeds them: the event outbox (written in the transaction of each
//! change), the tenants' endpoints (secret sealed with the master key), the delivery log
//! (one row per event and endpoint, with its retry state and lease), the recent client
//! addresses of each token (written by the usage flush), and the expiry notices already
//! sent (so each fires once per token and expiry).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0011_webhooks"
    }
}

#[derive(Iden)]
enum WebhookEvents {
    Table,
    Id,
    TenantId,
    EventType,
    Payload,
    EndpointId,
    CreatedAt,
    DispatchedAt,
}

#[derive(Iden)]
enum WebhookEndpoints {
    Table,
    Id,
    TenantId,
    Url,
    Description,
    EventTypes,
    SecretSealed,
    Enabled,
    CreatedAt,
    UpdatedAt,
}

#[derive(Iden)]
enum WebhookDeliveries {
    Table,
    Id,
    TenantId,
    EndpointId,
    EventId,
    EventType,
    Status,
    Attempts,
    NextAttemptAt,
    LastAttemptAt,
    LastStatusCode,
    LastError,
    LeaseUntil,
    CreatedAt,
    UpdatedAt,
}

#[derive(Iden)]
enum TokenAddresses {
    Table,
    TokenId,
    TenantId,
    Ip,
    FirstSeen,
    LastSeen,
}

#[derive(Iden)]
enum TokenNotices {
    Table,
    TokenId,
    Notice,
    ExpiresAt,
    CreatedAt,
}

fn ts(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

fn ts_null(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c)
        .timestamp_with_time_zone()
        .null()
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(WebhookEvents::Table)
                .col(
                    ColumnDef::new(WebhookEvents::Id)
                        .uuid()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(WebhookEvents::TenantId).uuid().not_null())
                .col(
                    ColumnDef::new(WebhookEvents::EventType)
                        .string_len(64)
                        .not_null(),
                )
                .col(ColumnDef::new(WebhookEvents::Payload).text().not_null())
                .col(ColumnDef::new(WebhookEvents::EndpointId).uuid().null())
                .col(ts(WebhookEvents::CreatedAt))
                .col(ts_null(WebhookEvents::DispatchedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_webhook_events_dispatched")
                .table(WebhookEvents::Table)
                .col(WebhookEvents::DispatchedAt)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(WebhookEndpoints::Table)
                .col(
                    ColumnDef::new(WebhookEndpoints::Id)
                        .uuid()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(WebhookEndpoints::TenantId).uuid().not_null())
                .col(
                    ColumnDef::new(WebhookEndpoints::Url)
                        .string_len(2000)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(WebhookEndpoints::Description)
                        .text()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(WebhookEndpoints::EventTypes)
                        .text()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(WebhookEndpoints::SecretSealed)
                        .text()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(WebhookEndpoints::Enabled)
                        .boolean()
                        .not_null(),
                )
                .col(ts(WebhookEndpoints::CreatedAt))
                .col(ts(WebhookEndpoints::UpdatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_webhook_endpoints_tenant")
                .table(WebhookEndpoints::Table)
                .col(WebhookEndpoints::TenantId)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(WebhookDeliveries::Table)
                .col(
                    ColumnDef::new(WebhookDeliveries::Id)
                        .uuid()
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(WebhookDeliveries::TenantId)
                        .uuid()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(WebhookDeliveries::EndpointId)
                        .uuid()
                        .not_null(),
                )
                .col(ColumnDef::new(WebhookDeliveries::EventId).uuid().not_null())
                .col(
                    ColumnDef::new(WebhookDeliveries::EventType)
                        .string_len(64)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(WebhookDeliveries::Status)
                        .string_len(16)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(WebhookDeliveries::Attempts)
                        .integer()
                        .not_null(),
                )
                .col(ts_null(WebhookDeliveries::NextAttemptAt))
                .col(ts_null(WebhookDeliveries::LastAttemptAt))
                .col(
                    ColumnDef::new(WebhookDeliveries::LastStatusCode)
                        .integer()
                        .null(),
                )
                .col(
                    ColumnDef::new(WebhookDeliveries::LastError)
                        .string_len(500)
                        .null(),
                )
                .col(ts_null(WebhookDeliveries::LeaseUntil))
                .col(ts(WebhookDeliveries::CreatedAt))
                .col(ts(WebhookDeliveries::UpdatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_webhook_deliveries_due")
                .table(WebhookDeliveries::Table)
                .col(WebhookDeliveries::Status)
                .col(WebhookDeliveries::NextAttemptAt)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_webhook_deliveries_endpoint")
                .table(WebhookDeliveries::Table)
                .col(WebhookDeliveries::EndpointId)
                .col(WebhookDeliveries::CreatedAt)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(TokenAddresses::Table)
                .col(ColumnDef::new(TokenAddresses::TokenId).uuid().not_null())
                .col(ColumnDef::new(TokenAddresses::TenantId).uuid().not_null())
                .col(ColumnDef::new(TokenAddresses::Ip).string_len(64).not_null())
                .col(ts(TokenAddresses::FirstSeen))
                .col(ts(TokenAddresses::LastSeen))
                .primary_key(
                    Index::create()
                        .col(TokenAddresses::TokenId)
                        .col(TokenAddresses::Ip),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(TokenNotices::Table)
                .col(ColumnDef::new(TokenNotices::TokenId).uuid().not_null())
                .col(
                    ColumnDef::new(TokenNotices::Notice)
                        .string_len(32)
                        .not_null(),
                )
                .col(ts(TokenNotices::ExpiresAt))
                .col(ts(TokenNotices::CreatedAt))
                .primary_key(
                    Index::create()
                        .col(TokenNotices::TokenId)
                        .col(TokenNotices::Notice)
                        .col(TokenNotices::ExpiresAt),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            TokenNotices::Table.into_iden(),
            TokenAddresses::Table.into_iden(),
            WebhookDeliveries::Table.into_iden(),
            WebhookEndpoints::Table.into_iden(),
            WebhookEvents::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
