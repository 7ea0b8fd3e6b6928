//! Integration tests: one binary, the real server over HTTP, on SQLite by default and on
//! PostgreSQL when SIGIL_TEST_DATABASE_URL is set.

// Test support code may panic on setup failures, and not every helper is used by every module.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

mod harness;

mod authz_matrix;
mod authz_model;
mod ceiling;
mod cli;
mod client;
mod conformance;
mod contract;
mod foundation;
mod holes;
mod leaks;
mod limits;
mod limits_shared;
mod namespaces;
mod nginx;
mod observability;
mod registry;
mod replicas;
mod rotation;
mod secret_format;
mod security;
mod tenants_users;
mod throttle;
mod tokens;
mod two_factor;
mod verification;
mod webhooks;
