//! What a role may call: every method the tenant can see, less the ones reserved to
//! higher roles. A token's effective rights are its scope intersected with these.

use sigil_scope_registry::{MethodSet, Snapshot};
use sigil_user::Role;
use uuid::Uuid;

/// Methods only the platform operator may call.
pub const OPERATOR_METHODS: &[&str] = &[
    "tenants.create",
    "tenants.list",
    "tenants.get",
    "tenants.update",
    "tenants.disable",
];

/// Administration a token manager may not do.
const ADMIN_ONLY: &[&str] = &[
    "users.create",
    "users.update",
    "users.deactivate",
    "users.delete",
    "tenant.update_policy",
    "signing_keys.rotate",
    "plugins.register",
    "plugins.delete",
    "scope_sets.create",
    "scope_sets.update",
    "scope_sets.delete",
];

/// Reading the tenant's people and keys, which a member may not do.
const MANAGER_ONLY: &[&str] = &["users.list", "users.get", "signing_keys.list"];

pub fn denied_for(role: Role) -> impl Iterator<Item = &'static str> {
    let admin_only = if role == Role::Admin {
        &[][..]
    } else {
        ADMIN_ONLY
    };
    let manager_only = if role == Role::Member {
        MANAGER_ONLY
    } else {
        &[][..]
    };
    OPERATOR_METHODS
        .iter()
        .chain(admin_only)
        .chain(manager_only)
        .copied()
}

/// The methods a user of `role` in `tenant` may call under the given snapshot.
pub fn role_rights(snapshot: &Snapshot, tenant: Uuid, role: Role) -> MethodSet {
    let mut set = snapshot.visible(Some(tenant)).clone();
    for id in denied_for(role) {
        if let Some(idx) = snapshot.lookup(Some(tenant), id) {
            set.remove(idx);
        }
    }
    set
}
