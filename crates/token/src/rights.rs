//! What a role may call: every method the tenant can see, less Sigil's own methods that
//! the role may not call (the audience of each is in [`crate::methods`]). A token's
//! effective rights are its scope ∩ these ∩ its ceiling.

use sigil_scope_registry::{MethodSet, Snapshot};
use sigil_user::Role;
use uuid::Uuid;

use crate::methods::SigilMethod;

/// Sigil's methods a tenant user of `role` may not call.
pub fn denied_for(role: Role) -> impl Iterator<Item = SigilMethod> {
    SigilMethod::ALL
        .iter()
        .copied()
        .filter(move |m| !m.allows_role(role))
}

/// The methods a user of `role` in `tenant` may call under the given snapshot.
pub fn role_rights(snapshot: &Snapshot, tenant: Uuid, role: Role) -> MethodSet {
    let mut set = snapshot.visible(Some(tenant)).clone();
    for method in denied_for(role) {
        if let Some(idx) = snapshot.lookup(Some(tenant), method.id()) {
            set.remove(idx);
        }
    }
    set
}
