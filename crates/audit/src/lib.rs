//! The audit log: who changed what, with which credential, from where. Refused
//! verifications are aggregated per token, reason and minute so a flood cannot fill the
//! disk.

mod actor;
pub mod entity;
mod event;
mod service;

pub use actor::Actor;
pub use event::NewEvent;
pub use service::{write, AuditEvent, AuditFilter, AuditLog, MemberScope};
