//! Storage of second factors (see migrations/src/m0010_two_factor.rs).

/// A user's TOTP enrolment, confirmed or pending.
pub mod totp {
    use sea_orm::entity::prelude::*;
    use sigil_core::{TenantId, UserId};

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "user_totp")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: UserId,
        pub tenant_id: TenantId,
        /// The secret sealed with the master key, bound to the user id.
        pub secret_sealed: String,
        /// NULL while the enrolment waits for its first code.
        pub confirmed_at: Option<DateTimeUtc>,
        /// The last time step a code was accepted for.
        pub last_used_step: Option<i64>,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl sigil_core::TenantOwned for Entity {
        fn tenant_column() -> Column {
            Column::TenantId
        }
    }
}

/// One recovery code, by its keyed hash.
pub mod recovery_code {
    use sea_orm::entity::prelude::*;
    use sigil_core::{TenantId, UserId};

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "user_recovery_codes")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: TenantId,
        pub user_id: UserId,
        pub code_hash: String,
        pub used_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl sigil_core::TenantOwned for Entity {
        fn tenant_column() -> Column {
            Column::TenantId
        }
    }
}
