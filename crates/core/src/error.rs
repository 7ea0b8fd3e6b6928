//! The small set of error kinds a domain operation can end with. The server maps each kind
//! to an HTTP status and problem JSON in one place; the `code` strings are stable.

use std::borrow::Cow;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One refused request value: the field it is in and what is wrong with it, in words a
/// client can show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what} not found")]
    NotFound { what: &'static str },
    #[error("{detail}")]
    Conflict {
        code: &'static str,
        detail: Cow<'static, str>,
    },
    #[error("{detail}")]
    Invalid {
        code: &'static str,
        detail: Cow<'static, str>,
        errors: Vec<FieldError>,
    },
    #[error("{detail}")]
    Unauthorized {
        code: &'static str,
        detail: Cow<'static, str>,
    },
    #[error("{detail}")]
    Forbidden {
        code: &'static str,
        detail: Cow<'static, str>,
    },
    #[error("{detail}")]
    TooMany {
        code: &'static str,
        detail: Cow<'static, str>,
        retry_after_secs: u64,
    },
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn not_found(what: &'static str) -> Self {
        Self::NotFound { what }
    }
    pub fn conflict(code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::Conflict {
            code,
            detail: detail.into(),
        }
    }
    pub fn invalid(code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::Invalid {
            code,
            detail: detail.into(),
            errors: Vec::new(),
        }
    }
    /// A refused value of one request field (`field` as the client wrote it: `expires_at`,
    /// `scope.methods[2]`); the detail is also the field's message.
    pub fn invalid_field(
        code: &'static str,
        field: impl Into<String>,
        detail: impl Into<Cow<'static, str>>,
    ) -> Self {
        let detail = detail.into();
        Self::Invalid {
            code,
            errors: vec![FieldError::new(field, detail.clone())],
            detail,
        }
    }
    /// Several refused values at once (each entry of a list, say).
    pub fn invalid_with(
        code: &'static str,
        detail: impl Into<Cow<'static, str>>,
        errors: Vec<FieldError>,
    ) -> Self {
        Self::Invalid {
            code,
            detail: detail.into(),
            errors,
        }
    }
    pub fn unauthorized(code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::Unauthorized {
            code,
            detail: detail.into(),
        }
    }
    pub fn forbidden(code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::Forbidden {
            code,
            detail: detail.into(),
        }
    }
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::Internal(detail.to_string())
    }
}

impl From<sea_orm::DbErr> for Error {
    fn from(e: sea_orm::DbErr) -> Self {
        use sea_orm::DbErr;
        match &e {
            DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => Error::Unavailable(e.to_string()),
            _ => {
                let text = e.to_string();
                if is_unavailable_text(&text) {
                    Error::Unavailable(text)
                } else if is_unique_violation(&text) {
                    Error::conflict("conflict", "a record with the same unique value exists")
                } else {
                    Error::Internal(text)
                }
            }
        }
    }
}

impl From<sea_orm::TransactionError<Error>> for Error {
    fn from(e: sea_orm::TransactionError<Error>) -> Self {
        match e {
            sea_orm::TransactionError::Connection(db) => db.into(),
            sea_orm::TransactionError::Transaction(inner) => inner,
        }
    }
}

fn is_unavailable_text(text: &str) -> bool {
    const MARKERS: &[&str] = &[
        "Connection refused",
        "connection closed",
        "PoolTimedOut",
        "pool timed out",
        "database is locked",
        "terminating connection",
        "Broken pipe",
        // sqlx's I/O errors (a connection cut mid-query, TLS or not).
        "error communicating with database",
        "Connection reset",
        "connection reset",
        "unexpected end of file",
        "attempted to acquire a connection on a closed pool",
        // PostgreSQL shutting down or starting up.
        "the database system is",
    ];
    MARKERS.iter().any(|m| text.contains(m))
}

fn is_unique_violation(text: &str) -> bool {
    text.contains("UNIQUE constraint failed") || text.contains("duplicate key value")
}
