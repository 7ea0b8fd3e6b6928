//! Users of a tenant: people and API service accounts, their roles, passwords and login.

pub mod entity;
pub mod onboard;
pub mod password;
pub mod service;
pub mod throttle;
pub mod types;

pub use onboard::{onboard_tenant, Onboarded};
pub use password::{PasswordHasher, PasswordParams};
pub use service::{NewUser, UserFilter, UserPatch, UserService};
pub use throttle::{LoginAttempt, LoginThrottle};
pub use types::{Role, User, UserKind, SYSTEM_USERNAME};
