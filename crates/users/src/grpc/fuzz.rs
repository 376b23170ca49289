//! Fuzz targets and properties for the users API's edge: every request type, as a client
//! could send its bytes, decoded and handed to its handler over a real (SQLite) store. They
//! run as ordinary tests (the committed corpus, then random inputs for a second) and under
//! libFuzzer with `cargo bolero test` (docs/fuzzing.md).

use bolero::check;
use proto::users::users_service_server::UsersService as _;
use shell::testing::decode_stable;
use tonic::{Code, Status};

use super::*;
use crate::password::PasswordHasher;
use crate::store::SqliteUserStore;

/// A users service over a SQLite database of its own, with a runtime to call it on.
struct Harness {
    runtime: tokio::runtime::Runtime,
    grpc: UsersGrpc<SqliteUserStore>,
    _directory: tempfile::TempDir,
}

impl Harness {
    fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the fuzz harness");
        let directory = tempfile::tempdir().expect("a directory for the fuzz database");
        let url = format!("sqlite://{}", directory.path().join("users.db").display());
        let store = runtime
            .block_on(SqliteUserStore::open(
                &url,
                &database::PoolConfig::default(),
            ))
            .expect("open the fuzz database");
        Self {
            runtime,
            grpc: UsersGrpc::new(Users::new(
                store,
                PasswordHasher::new(1),
                token::Revocations::new(),
            )),
            _directory: directory,
        }
    }
}

thread_local! {
    static HARNESS: Harness = Harness::new();
}

/// A user's own credential: what every client of users through the gateway holds. (Creating
/// accounts and checking passwords are the gateway's, so valid requests for them end at
/// PERMISSION_DENIED, after validation and before any password hashing.)
fn as_user<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.extensions_mut().insert(Principal::User {
        user_id: "00000000-0000-7000-8000-000000000001".into(),
    });
    request
}

/// What a users call may answer besides INVALID_ARGUMENT.
const ALLOWED: &[Code] = &[
    Code::NotFound,
    Code::PermissionDenied,
    Code::Aborted,
    Code::Unauthenticated,
];

fn check_status(status: &Status, fields: &[&str]) {
    shell::testing::check_fuzzed_status(status, fields, ALLOWED);
}

/// Every request type of UsersService: the first byte picks the method, the rest is the
/// message as it would arrive in a gRPC frame.
#[test]
fn users_requests() {
    check!().for_each(|input: &[u8]| {
        let Some((&method, message)) = input.split_first() else {
            return;
        };
        HARNESS.with(|harness| {
            let grpc = &harness.grpc;
            harness.runtime.block_on(async {
                let (outcome, fields): (Result<(), Status>, &[&str]) = match method % 9 {
                    0 => match decode_stable::<CreateUserRequest>(message) {
                        Some(request) => (
                            grpc.create_user(as_user(request)).await.map(drop),
                            &["email", "display_name", "password"],
                        ),
                        None => return,
                    },
                    1 => match decode_stable::<GetUserRequest>(message) {
                        Some(request) => (grpc.get_user(as_user(request)).await.map(drop), &["id"]),
                        None => return,
                    },
                    2 => match decode_stable::<BatchGetUsersRequest>(message) {
                        Some(request) => (
                            grpc.batch_get_users(as_user(request)).await.map(drop),
                            &["ids"],
                        ),
                        None => return,
                    },
                    3 => match decode_stable::<ListUsersRequest>(message) {
                        Some(request) => (
                            grpc.list_users(as_user(request)).await.map(drop),
                            &["page_size", "page_token"],
                        ),
                        None => return,
                    },
                    4 => match decode_stable::<UpdateUserRequest>(message) {
                        Some(request) => (
                            grpc.update_user(as_user(request)).await.map(drop),
                            &[
                                "user",
                                "user.id",
                                "user.etag",
                                "user.email",
                                "user.display_name",
                                "update_mask",
                                "update_mask.paths",
                            ],
                        ),
                        None => return,
                    },
                    5 => match decode_stable::<DeleteUserRequest>(message) {
                        Some(request) => (
                            grpc.delete_user(as_user(request)).await.map(drop),
                            &["id", "etag"],
                        ),
                        None => return,
                    },
                    6 => match decode_stable::<ListAccountDeletionsRequest>(message) {
                        Some(request) => (
                            grpc.list_account_deletions(as_user(request))
                                .await
                                .map(drop),
                            &["since", "page_size"],
                        ),
                        None => return,
                    },
                    7 => match decode_stable::<ConfirmAccountPurgedRequest>(message) {
                        Some(request) => (
                            grpc.confirm_account_purged(as_user(request))
                                .await
                                .map(drop),
                            &["user_id"],
                        ),
                        None => return,
                    },
                    _ => match decode_stable::<VerifyCredentialsRequest>(message) {
                        Some(request) => (
                            grpc.verify_credentials(as_user(request)).await.map(drop),
                            &["email", "password"],
                        ),
                        None => return,
                    },
                };
                if let Err(status) = outcome {
                    check_status(&status, fields);
                }
            });
        });
    });
}

/// An etag a client sends is either refused or names a version whose own etag reads back as
/// the same version.
#[test]
fn user_etag_parse() {
    check!().with_type::<String>().for_each(|etag| {
        if let Ok(version) = Version::parse_etag(etag) {
            assert_eq!(Version::parse_etag(&version.etag()), Ok(version));
        }
    });
}

/// Every version the store can hold (from 1) round-trips through its etag.
#[test]
fn user_etag_round_trip() {
    check!().with_type::<i64>().for_each(|&stored| {
        let version = Version::from_stored(stored);
        let parsed = Version::parse_etag(&version.etag());
        if stored > 0 {
            assert_eq!(parsed, Ok(version));
        } else {
            assert!(parsed.is_err(), "{stored} is no version a store hands out");
        }
    });
}
