//! Users of a tenant: people and API service accounts, their roles, passwords and login.

pub mod challenge;
pub(crate) mod entity;
pub mod login;
pub mod onboard;
pub mod owners;
pub mod password;
pub mod profiles;
pub mod recovery;
pub mod service;
pub mod sessions;
#[cfg(test)]
mod testing;
pub mod throttle;
pub mod totp;
pub mod two_factor;
pub(crate) mod two_factor_entity;
pub mod two_factor_policy;
pub mod types;
mod validate;

pub use login::{Account, Completion, Credentials, FactorNote, Login, LoginService, SignedIn};
pub use onboard::{onboard_tenant, Onboarded};
pub use password::{PasswordHasher, PasswordParams};
pub use profiles::{Profile, Profiles};
pub use service::{NewUser, ProfilePatch, UserFilter, UserPatch, UserService};
pub use sessions::SessionEnder;
pub use throttle::{LoginAttempt, LoginThrottle};
pub use two_factor::{CodeRefused, SecondFactor, TwoFactorService, Verified};
pub use two_factor_policy::TwoFactorRequirement;
pub use types::{Role, User, UserKind, SYSTEM_USERNAME};
