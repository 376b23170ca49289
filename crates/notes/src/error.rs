//! The notes service's one error type, and the one place it becomes a `tonic::Status`.

use shell::{FieldViolation, database_unavailable, error_status, internal_error, invalid_fields};
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
    #[error("account deleted: its tokens no longer work")]
    AccountDeleted,
    #[error("this method needs a service credential")]
    ServiceCredentialRequired,
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("cannot open the database")]
    Open(#[from] database::OpenError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error(
        "the change log no longer holds the changes after revision {}: list the notes again, then watch from the listing's revision",
        .0.get()
    )]
    WatchCursorExpired(crate::domain::Revision),
    #[error(
        "the client stopped reading this watch while changes waited: watch again with after_revision = {}",
        .0.get()
    )]
    WatchTooSlow(crate::domain::Revision),
    #[error("{} watch streams are open already, the most allowed {}", .limit, if *.per_user { "for one user" } else { "on this server" })]
    TooManyWatches { limit: u32, per_user: bool },
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
            Error::AccountDeleted => {
                error_status(Code::Unauthenticated, "ACCOUNT_DELETED", error.to_string())
            }
            Error::ServiceCredentialRequired => error_status(
                Code::PermissionDenied,
                "SERVICE_CREDENTIAL_REQUIRED",
                error.to_string(),
            ),
            Error::Database(ref cause) => match database::classify(cause) {
                database::Failure::Unavailable => {
                    tracing::warn!(error = %cause, "database unavailable");
                    database_unavailable()
                }
                database::Failure::UniqueViolation | database::Failure::Other => {
                    internal_error(&error)
                }
            },
            Error::WatchCursorExpired(_) => error_status(
                Code::FailedPrecondition,
                "WATCH_CURSOR_EXPIRED",
                error.to_string(),
            ),
            Error::WatchTooSlow(_) => {
                error_status(Code::ResourceExhausted, "WATCH_TOO_SLOW", error.to_string())
            }
            Error::TooManyWatches { .. } => shell::retryable_status(
                Code::ResourceExhausted,
                "TOO_MANY_WATCHES",
                error.to_string(),
                std::time::Duration::from_secs(1),
            ),
            Error::Open(_) | Error::Corrupt(_) => internal_error(&error),
        }
    }
}
