//! Storage of registered plugins and custom scope sets (sea-orm). The compiled snapshot is
//! rebuilt from here whenever the registry version moves. The stores read; the use cases
//! change plugins and sets through this module's functions that take a connection, in
//! their own transaction, where they also write their audit events.

pub mod entity;
pub(crate) mod plugins;
pub(crate) mod sets;

pub use plugins::{PluginRecord, PluginStore};
pub use sets::{CustomSet, CustomSetInput, ScopeSetStore};
