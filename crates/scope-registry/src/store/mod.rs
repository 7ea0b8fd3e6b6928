//! Storage of registered plugins and custom scope sets (sea-orm). The compiled snapshot is
//! rebuilt from here whenever the registry version moves.

pub mod entity;
mod plugins;
mod sets;

pub use plugins::{PluginRecord, PluginStore};
pub use sets::{CustomSet, CustomSetInput, ScopeSetStore};
