//! Tenants (organisations), their policy, and the Ed25519 signing keys that sign their
//! tokens; plus the platform's own operator key.

pub mod entity;
pub mod keys;
pub mod platform;
pub mod policy;
pub mod service;

pub use keys::{Jwk, Jwks, KeyRing, KeyState, SigningKeyInfo, TenantKey};
pub use policy::TenantPolicy;
pub use service::{NewTenant, Tenant, TenantPatch, TenantService};
