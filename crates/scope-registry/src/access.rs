//! Whether a method only reads state or changes it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Access class of a method. A scope restricted to `Read` only grants read methods;
/// `Change` grants both (a change scope is a superset of the read scope).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Read,
    Change,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Change => "change",
        }
    }

    /// The default access class of an HTTP verb: GET and HEAD read, everything else changes.
    pub fn for_http_method(method: &str) -> Access {
        if method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("HEAD") {
            Access::Read
        } else {
            Access::Change
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error returned when a string is neither `read` nor `change`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown access '{0}' (expected 'read' or 'change')")]
pub struct ParseAccessError(pub String);

impl FromStr for Access {
    type Err = ParseAccessError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("read") {
            Ok(Access::Read)
        } else if t.eq_ignore_ascii_case("change") {
            Ok(Access::Change)
        } else {
            Err(ParseAccessError(s.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print() {
        assert_eq!("read".parse::<Access>().unwrap(), Access::Read);
        assert_eq!("Change".parse::<Access>().unwrap(), Access::Change);
        assert!("write".parse::<Access>().is_err());
        assert_eq!(Access::Read.as_str(), "read");
        assert_eq!(Access::Change.to_string(), "change");
    }

    #[test]
    fn serde_lowercase() {
        assert_eq!(serde_json::to_string(&Access::Read).unwrap(), "\"read\"");
        let a: Access = serde_json::from_str("\"change\"").unwrap();
        assert_eq!(a, Access::Change);
    }

    #[test]
    fn verb_defaults() {
        assert_eq!(Access::for_http_method("get"), Access::Read);
        assert_eq!(Access::for_http_method("HEAD"), Access::Read);
        assert_eq!(Access::for_http_method("POST"), Access::Change);
        assert_eq!(Access::for_http_method("delete"), Access::Change);
    }
}
