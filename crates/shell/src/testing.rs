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

/// Decodes `bytes` as `T` the way tonic's codec does, for request fuzz targets; a message that
/// decodes also survives encode → decode unchanged (nothing a handler sees depends on how the
/// client encoded it).
pub fn decode_stable<T: prost::Message + Default + PartialEq>(bytes: &[u8]) -> Option<T> {
    let message = T::decode(bytes).ok()?;
    let again = T::decode(message.encode_to_vec().as_slice()).expect("re-encoded message decodes");
    assert!(
        again == message,
        "decode → encode → decode changed the message"
    );
    Some(message)
}

/// What a fuzzed call may answer: INVALID_ARGUMENT naming only fields the request has (an
/// index, `[3]`, stands for any) each with a description, or one of `allowed`; nothing a
/// client sends is an internal error.
#[track_caller]
pub fn check_fuzzed_status(status: &Status, fields: &[&str], allowed: &[Code]) {
    if status.code() != Code::InvalidArgument {
        assert!(
            allowed.contains(&status.code()),
            "a request answered {status:?}"
        );
        return;
    }
    let violations = status
        .get_error_details()
        .bad_request()
        .map(|bad| bad.field_violations.clone())
        .unwrap_or_default();
    assert!(!violations.is_empty(), "no field named: {status:?}");
    for violation in violations {
        let field = without_indexes(&violation.field);
        assert!(
            fields.contains(&field.as_str()),
            "{:?} is not a field of the request: {status:?}",
            violation.field
        );
        assert!(!violation.description.is_empty(), "{status:?}");
    }
}

/// `note.tags[3]` → `note.tags`.
fn without_indexes(field: &str) -> String {
    let mut plain = String::with_capacity(field.len());
    let mut in_index = false;
    for character in field.chars() {
        match character {
            '[' => in_index = true,
            ']' => in_index = false,
            _ if !in_index => plain.push(character),
            _ => {}
        }
    }
    plain
}
