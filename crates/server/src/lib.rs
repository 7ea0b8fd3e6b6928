//! Sigil's HTTP server: configuration, the REST API (poem + poem-openapi), the console,
//! background work and graceful shutdown. The only crate that knows HTTP; it knows no SQL.

// Handlers return poem-openapi's `ApiError` response enum directly; it is large by design.
#![allow(clippy::result_large_err)]

pub mod api;
pub mod app;
pub mod auth;
pub mod config;
pub mod conn;
pub mod console;
pub mod metrics;
pub mod problem;
pub mod refusals;
pub mod request_check;
pub mod run;
pub mod schema_check;
pub mod scope_text;
pub mod spec;
pub mod state;
pub mod telemetry;
pub mod usage_headers;
pub mod webhook_sender;

pub use config::{Config, ConfigError};
pub use run::{open_database, prepare, serve, spawn, Prepared, Running};
