//! Users of a tenant: people and API service accounts, their roles, passwords and login.

pub mod challenge;
pub mod entity;
pub mod onboard;
pub mod password;
pub mod recovery;
pub mod service;
pub mod throttle;
pub mod totp;
pub mod two_factor;
pub mod two_factor_entity;
pub mod types;

pub use onboard::{onboard_tenant, Onboarded};
pub use password::{PasswordHasher, PasswordParams};
pub use service::{NewUser, UserFilter, UserPatch, UserService};
pub use throttle::{LoginAttempt, LoginThrottle};
pub use two_factor::{CodeRefused, SecondFactor, TwoFactorService, Verified};
pub use types::{Role, User, UserKind, SYSTEM_USERNAME};
