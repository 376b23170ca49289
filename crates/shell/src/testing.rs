//! Assertions on the shape of notesuite's answers, for tests of any service (feature
//! `testing`, for dev-dependencies only).

use tonic::{Code, Request, Status};
use tonic_types::StatusExt as _;

use crate::{ERROR_DOMAIN, INVALID_FIELDS};

/// `message` with `authorization: Bearer <token>`.
pub fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    let value = format!("Bearer {token}")
        .parse()
        .unwrap_or_else(|_| panic!("a token is ASCII: {token:?}"));
    request.metadata_mut().insert("authorization", value);
    request
}

/// Asserts the status's code and its `ErrorInfo` reason in the notesuite domain.
#[track_caller]
pub fn assert_error(status: &Status, code: Code, reason: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    let details = status.get_error_details();
    let info = details
        .error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.reason, reason, "{status:?}");
    assert_eq!(info.domain, ERROR_DOMAIN, "{status:?}");
}

/// Asserts an INVALID_ARGUMENT for bad fields and returns the fields its `BadRequest` names,
/// in order.
#[track_caller]
pub fn bad_fields(status: &Status) -> Vec<String> {
    assert_error(status, Code::InvalidArgument, INVALID_FIELDS);
    status
        .get_error_details()
        .bad_request()
        .map(|bad_request| {
            bad_request
                .field_violations
                .iter()
                .map(|violation| violation.field.clone())
                .collect()
        })
        .unwrap_or_default()
}
