//! The gateway's one error type, and the one place it becomes a `tonic::Status`.

use shell::{FieldViolation, error_status, internal_error, invalid_fields};
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid request fields")]
    InvalidFields(Vec<FieldViolation>),
    /// A backend answered with an error; ours carry their own details and pass through.
    #[error("{service} answered {}: {}", status.code(), status.message())]
    Backend {
        service: &'static str,
        status: Status,
    },
    #[error("the call's deadline passed before the backends answered")]
    DeadlineExceeded,
    #[error("this method acts for a user: call it with a user's access token")]
    UserCredentialRequired,
    #[error("the call carries no authenticated caller")]
    Unauthenticated,
    #[error(transparent)]
    Sign(#[from] token::SignError),
    #[error("{flag} is not a valid backend URL: {url}")]
    BackendUrl { flag: &'static str, url: String },
    #[error("{flag} names an https:// backend ({url}), but no --backend-ca says which CA to trust")]
    BackendCaMissing { flag: &'static str, url: String },
    #[error("--backend-ca, --backend-cert, --backend-key: {0}")]
    BackendTls(#[from] tls::TlsError),
    #[error("the contracts' descriptor set does not decode: {0}")]
    Descriptor(String),
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidFields(violations) => invalid_fields(violations),
            Error::Backend { service, status } => backend_status(service, status),
            Error::DeadlineExceeded => error_status(
                Code::DeadlineExceeded,
                "DEADLINE_EXCEEDED",
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
            Error::Sign(_)
            | Error::BackendUrl { .. }
            | Error::BackendCaMissing { .. }
            | Error::BackendTls(_)
            | Error::Descriptor(_) => internal_error(&error),
        }
    }
}

/// Errors from our backends carry details and reach the client unchanged: the backend
/// knows best. A bare UNAVAILABLE or UNKNOWN comes from the transport (connection refused,
/// reset) and says so in our own terms.
fn backend_status(service: &'static str, status: Status) -> Status {
    // The gateway's own client gave up when the call's deadline passed (tonic's client says
    // CANCELLED "Timeout expired"): the caller's deadline answered, not a cancellation.
    if status.code() == Code::Cancelled && status.details().is_empty() {
        return error_status(
            Code::DeadlineExceeded,
            "DEADLINE_EXCEEDED",
            format!("{service} did not answer before the call's deadline"),
        );
    }
    let from_transport =
        status.details().is_empty() && matches!(status.code(), Code::Unavailable | Code::Unknown);
    if !from_transport {
        return status;
    }
    tracing::warn!(backend = service, code = ?status.code(), message = status.message(), "backend unreachable");
    error_status(
        Code::Unavailable,
        "BACKEND_UNAVAILABLE",
        format!("{service} is unavailable; retry shortly"),
    )
}
