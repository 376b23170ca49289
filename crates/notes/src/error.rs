//! The notes service's one error type, and the one place it becomes a `tonic::Status`.

use shell::{FieldViolation, error_status, internal_error, invalid_fields};
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid request fields")]
    InvalidFields(Vec<FieldViolation>),
    #[error("note not found")]
    NoteNotFound,
    #[error("the note changed since it was read: fetch it again and retry with the new etag")]
    EtagMismatch,
    #[error("this request_id was already used for a different note: use a new request_id")]
    RequestIdReused,
    #[error("notes belong to users: call with a user's access token")]
    UserCredentialRequired,
    #[error("the call carries no authenticated caller")]
    Unauthenticated,
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidFields(violations) => invalid_fields(violations),
            Error::NoteNotFound => {
                error_status(Code::NotFound, "NOTE_NOT_FOUND", error.to_string())
            }
            Error::EtagMismatch => error_status(Code::Aborted, "ETAG_MISMATCH", error.to_string()),
            Error::RequestIdReused => error_status(
                Code::FailedPrecondition,
                "REQUEST_ID_REUSED",
                error.to_string(),
            ),
            Error::UserCredentialRequired => error_status(
                Code::PermissionDenied,
                "USER_CREDENTIAL_REQUIRED",
                error.to_string(),
            ),
            Error::Unauthenticated => {
                error_status(Code::Unauthenticated, "TOKEN_MISSING", error.to_string())
            }
            Error::Database(ref cause) if database_unreachable(cause) => {
                tracing::warn!(error = %cause, "database unreachable");
                error_status(
                    Code::Unavailable,
                    "DATABASE_UNAVAILABLE",
                    "the database is unreachable; retry shortly",
                )
            }
            Error::Database(_) | Error::Migration(_) | Error::Corrupt(_) => internal_error(&error),
        }
    }
}

/// Errors that mean "cannot reach the database right now" rather than "this query is wrong":
/// clients may retry those elsewhere or later.
fn database_unreachable(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)
    )
}
