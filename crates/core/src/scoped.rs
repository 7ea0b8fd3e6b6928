//! Tenant scoping by construction: every query of a tenant-owned table starts from one of
//! these constructors, so the tenant filter cannot be forgotten in a find, an update or
//! a delete. `Entity::find()` on such a table is the exception that needs a reason.

use sea_orm::{
    ColumnTrait, DeleteMany, EntityTrait, PrimaryKeyTrait, QueryFilter, Select, UpdateMany,
};

use crate::TenantId;

/// A table whose rows each belong to one tenant.
pub trait TenantOwned: EntityTrait {
    /// The column holding the owning tenant.
    fn tenant_column() -> Self::Column;

    /// Rows of `tenant` only.
    fn find_in(tenant: TenantId) -> Select<Self> {
        Self::find().filter(Self::tenant_column().eq(tenant))
    }

    /// One row of `tenant` by its primary key; another tenant's row is not found.
    fn find_by_id_in<K>(tenant: TenantId, id: K) -> Select<Self>
    where
        K: Into<<Self::PrimaryKey as PrimaryKeyTrait>::ValueType>,
    {
        Self::find_by_id(id).filter(Self::tenant_column().eq(tenant))
    }

    /// An update of `tenant`'s rows only; add the filters that pick the rows.
    fn update_many_in(tenant: TenantId) -> UpdateMany<Self> {
        Self::update_many().filter(Self::tenant_column().eq(tenant))
    }

    /// A delete of `tenant`'s rows only; add the filters that pick the rows.
    fn delete_many_in(tenant: TenantId) -> DeleteMany<Self> {
        Self::delete_many().filter(Self::tenant_column().eq(tenant))
    }
}
