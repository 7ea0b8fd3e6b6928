//! Integration tests: one binary, the real server over HTTP, on SQLite by default and on
//! PostgreSQL when SIGIL_TEST_DATABASE_URL is set.

// Test support code may panic on setup failures, and not every helper is used by every module.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

mod harness;

mod client;
mod conformance;
mod foundation;
mod nginx;
mod observability;
mod registry;
mod replicas;
mod security;
mod tenants_users;
mod tokens;
mod verification;
