//! The users service's one error type, and the one place it becomes a `tonic::Status`.

use std::time::Duration;

use shell::{FieldViolation, database_unavailable, error_status, internal_error, invalid_fields};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid request fields")]
    InvalidFields(Vec<FieldViolation>),
    #[error("user not found")]
    UserNotFound,
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("the account changed since it was read: fetch it again and retry with the new etag")]
    EtagMismatch,
    #[error("wrong email or password")]
    InvalidCredentials,
    #[error("this method needs a service credential")]
    ServiceCredentialRequired,
    #[error("the call carries no authenticated caller")]
    Unauthenticated,
    #[error("too many password checks in progress; retry shortly")]
    PasswordHashingBusy { retry_after: Duration },
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("cannot open the database")]
    Open(#[from] database::OpenError),
    #[error("password hashing failed: {0}")]
    PasswordHash(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("background task failed")]
    Task(#[from] tokio::task::JoinError),
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidFields(violations) => invalid_fields(violations),
            Error::UserNotFound => {
                error_status(Code::NotFound, "USER_NOT_FOUND", error.to_string())
            }
            Error::EmailTaken => {
                error_status(Code::AlreadyExists, "EMAIL_TAKEN", error.to_string())
            }
            Error::EtagMismatch => error_status(Code::Aborted, "ETAG_MISMATCH", error.to_string()),
            Error::InvalidCredentials => error_status(
                Code::Unauthenticated,
                "INVALID_CREDENTIALS",
                error.to_string(),
            ),
            Error::ServiceCredentialRequired => error_status(
                Code::PermissionDenied,
                "SERVICE_CREDENTIAL_REQUIRED",
                error.to_string(),
            ),
            Error::Unauthenticated => {
                error_status(Code::Unauthenticated, "TOKEN_MISSING", error.to_string())
            }
            Error::PasswordHashingBusy { retry_after } => {
                let mut details = ErrorDetails::with_retry_info(Some(retry_after));
                details.set_error_info("PASSWORD_HASHING_BUSY", shell::ERROR_DOMAIN, []);
                Status::with_error_details(Code::ResourceExhausted, error.to_string(), details)
            }
            Error::Database(ref cause) => match database::classify(cause) {
                database::Failure::Unavailable => {
                    tracing::warn!(error = %cause, "database unavailable");
                    database_unavailable()
                }
                database::Failure::UniqueViolation | database::Failure::Other => {
                    internal_error(&error)
                }
            },
            Error::Open(_) | Error::PasswordHash(_) | Error::Corrupt(_) | Error::Task(_) => {
                internal_error(&error)
            }
        }
    }
}
