//! Storage of endpoints and deliveries (migration m0011_webhooks). The outbox itself is
//! `sigil_core::outbox::entity`.

pub mod endpoint {
    use sea_orm::entity::prelude::*;
    use sigil_core::{TenantId, TenantOwned};

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhook_endpoints")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: TenantId,
        pub url: String,
        pub description: String,
        /// JSON array of event types; empty: every event.
        pub event_types: String,
        /// The signing secret, sealed with the master key (context `webhook:<id>`).
        pub secret_sealed: String,
        pub enabled: bool,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl TenantOwned for Entity {
        fn tenant_column() -> Column {
            Column::TenantId
        }
    }
}

pub mod delivery {
    use sea_orm::entity::prelude::*;
    use sigil_core::{TenantId, TenantOwned};

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhook_deliveries")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: TenantId,
        pub endpoint_id: Uuid,
        pub event_id: Uuid,
        pub event_type: String,
        /// `pending`, `succeeded` or `failed`.
        pub status: String,
        pub attempts: i32,
        pub next_attempt_at: Option<DateTimeUtc>,
        pub last_attempt_at: Option<DateTimeUtc>,
        pub last_status_code: Option<i32>,
        pub last_error: Option<String>,
        /// A worker holds the delivery until then (an attempt is under way).
        pub lease_until: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl TenantOwned for Entity {
        fn tenant_column() -> Column {
            Column::TenantId
        }
    }
}
