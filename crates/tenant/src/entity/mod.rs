pub mod platform_secret;
pub mod signing_key;
pub mod tenant;
