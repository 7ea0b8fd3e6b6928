//! Tenants (organisations), their policy, and the Ed25519 signing keys that sign their
//! tokens; plus the platform's own operator key.

pub mod entity;
pub mod keys;
pub mod platform;
pub mod policy;
pub mod policy_effects;
pub mod service;
#[cfg(test)]
mod test_db;

pub use keys::{Jwk, Jwks, KeyRing, KeyState, SigningKeyInfo, SigningKeyService, TenantKey};
pub use policy::TenantPolicy;
pub use policy_effects::{NoEffects, PolicyEffects};
pub use service::{NewTenant, Tenant, TenantChange, TenantPatch, TenantService};
