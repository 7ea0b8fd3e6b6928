//! The audit log: who changed what, with which credential, from where. Refused
//! verifications are aggregated per token, reason and minute so a flood cannot fill the
//! disk.

pub mod entity;
mod event;
mod service;

pub use event::NewEvent;
pub use service::{AuditEvent, AuditFilter, AuditLog, MemberScope};
