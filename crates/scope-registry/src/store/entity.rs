pub mod plugin {
    use sea_orm::entity::prelude::*;
    use sigil_core::TenantId;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "plugins")]
    pub struct Model {
        /// `global/{id}` or `{tenant}/{id}`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub uid: String,
        pub plugin_id: String,
        pub tenant_id: Option<TenantId>,
        pub name: String,
        pub version: String,
        pub manifest: String,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod scope_set {
    use sea_orm::entity::prelude::*;
    use sigil_core::{ScopeSetId, TenantId};

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "scope_sets")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: ScopeSetId,
        pub tenant_id: TenantId,
        pub slug: String,
        pub name: String,
        pub description: String,
        /// JSON array of method ids and globs.
        pub entries: String,
        pub access: Option<String>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
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

pub mod registry_version {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "registry_version")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i32,
        pub version: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
