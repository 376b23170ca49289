//! Building statuses the way every notesuite error looks on the wire: a code, a message and
//! an `ErrorInfo` with a stable machine-readable reason in the `notesuite` domain.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// `ErrorInfo.domain` of every notesuite error.
pub const ERROR_DOMAIN: &str = "notesuite";

/// `ErrorInfo.reason` of every INVALID_ARGUMENT caused by request fields.
pub const INVALID_FIELDS: &str = "INVALID_FIELDS";

/// A status with an `ErrorInfo` whose reason clients can branch on.
pub fn error_status(code: Code, reason: &str, message: impl Into<String>) -> Status {
    Status::with_error_details(
        code,
        message,
        ErrorDetails::with_error_info(reason, ERROR_DOMAIN, []),
    )
}

/// A status a client should retry after `retry_after`: an `ErrorInfo` plus a `RetryInfo`.
pub fn retryable_status(
    code: Code,
    reason: &str,
    message: impl Into<String>,
    retry_after: std::time::Duration,
) -> Status {
    let mut details = ErrorDetails::with_retry_info(Some(retry_after));
    details.set_error_info(reason, ERROR_DOMAIN, []);
    Status::with_error_details(code, message, details)
}

/// UNAVAILABLE, reason `DATABASE_UNAVAILABLE`: the service's database cannot serve the call
/// right now (down, busy, read-only, disk full); `RetryInfo` says about when a pool notices it
/// is back.
pub fn database_unavailable() -> Status {
    retryable_status(
        Code::Unavailable,
        "DATABASE_UNAVAILABLE",
        "the database is unavailable; retry after the given delay",
        std::time::Duration::from_secs(1),
    )
}

/// INVALID_ARGUMENT naming every bad field in a `BadRequest`.
pub fn invalid_fields(violations: Vec<FieldViolation>) -> Status {
    let message = match violations.as_slice() {
        [only] => format!("invalid {}: {}", only.field, only.description),
        many => format!(
            "invalid fields: {}",
            many.iter()
                .map(|violation| violation.field.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut details = ErrorDetails::with_bad_request(violations);
    details.set_error_info(INVALID_FIELDS, ERROR_DOMAIN, []);
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// Collects field violations while a request is parsed, so that one answer names every bad
/// field instead of only the first.
///
/// ```
/// # use shell::Violations;
/// let mut violations = Violations::default();
/// let page_size = violations.check("page_size", u32::try_from(-1).map_err(|_| "must not be negative"));
/// assert!(page_size.is_none());
/// assert_eq!(violations.into_vec()[0].field, "page_size");
/// ```
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    /// The parsed value, or `None` after recording why `field` is invalid.
    pub fn check<T, E: std::fmt::Display>(
        &mut self,
        field: impl Into<String>,
        parsed: Result<T, E>,
    ) -> Option<T> {
        match parsed {
            Ok(value) => Some(value),
            Err(error) => {
                self.add(field, error);
                None
            }
        }
    }

    pub fn add(&mut self, field: impl Into<String>, description: impl std::fmt::Display) {
        self.0
            .push(FieldViolation::new(field, description.to_string()));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_vec(self) -> Vec<FieldViolation> {
        self.0
    }
}
