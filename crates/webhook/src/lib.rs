//! Signed webhooks per tenant (Standard Webhooks): the endpoints a tenant's admins
//! register, the fan-out of outbox events (`sigil_core::outbox`) into one delivery per
//! subscribed endpoint, and the delivery worker (signing, retries with a configurable
//! backoff, leases so replicas never send the same attempt twice). Outbound HTTP is behind
//! [`Transport`]: this crate decides what to send, where and when; the server sends it.

pub mod address;
pub mod dispatch;
pub mod endpoints;
pub mod entity;
pub mod schedule;
pub mod signing;

pub use dispatch::{Attempt, Dispatcher, Transport};
pub use endpoints::{
    Delivery, DeliveryStatus, Endpoint, EndpointChange, EndpointPatch, NewEndpoint, WebhookService,
};
pub use schedule::RetrySchedule;
pub use signing::WebhookSecret;
