use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proto::users::users_service_client::UsersServiceClient;
use proto::users::{CreateUserRequest, User};
use shell::ServeConfig;
use tempfile::TempDir;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt as _;
use users::password::PasswordHasher;
use users::store::SqliteUserStore;

pub(crate) struct TestUsers {
    pub(crate) client: UsersServiceClient<Channel>,
    pub(crate) issuer: token::Issuer,
    pub(crate) database_url: String,
    _server: shell::Spawned,
    _dir: TempDir,
}

/// A users service on its own fresh SQLite database and signing key.
pub(crate) async fn spawn_users() -> TestUsers {
    let dir = tempfile::tempdir().expect("temp dir");
    let database_url = format!("sqlite://{}", dir.path().join("users.db").display());
    let key = token::SigningKey::generate().expect("key");
    let store = SqliteUserStore::connect(&database_url, 4)
        .await
        .expect("database");
    let passwords = PasswordHasher::new(2).await.expect("hasher");
    let definition = users::definition(store, passwords, &key.verifying_key());
    let server = shell::spawn(
        definition,
        ServeConfig {
            drain_delay: Duration::ZERO,
            ..ServeConfig::default()
        },
    )
    .await
    .expect("serve");
    let client = UsersServiceClient::connect(server.url())
        .await
        .expect("connect");
    TestUsers {
        client,
        issuer: token::Issuer::new(&key, Duration::from_secs(900)),
        database_url,
        _server: server,
        _dir: dir,
    }
}

impl TestUsers {
    pub(crate) fn client(&self) -> UsersServiceClient<Channel> {
        self.client.clone()
    }

    /// A request carrying the gateway's service credential.
    pub(crate) fn as_service<T>(&self, message: T) -> Request<T> {
        let token = self.issuer.service_token("gateway").expect("sign").token;
        with_token(message, &token)
    }

    /// A request carrying `user_id`'s access token.
    pub(crate) fn as_user<T>(&self, user_id: &str, message: T) -> Request<T> {
        let token = self.issuer.user_token(user_id).expect("sign").token;
        with_token(message, &token)
    }

    /// A request carrying a user token that expired an hour ago.
    pub(crate) fn as_expired_user<T>(&self, user_id: &str, message: T) -> Request<T> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let token = self
            .issuer
            .sign(&token::Claims {
                iss: token::ISSUER.into(),
                aud: token::USER_AUDIENCE.into(),
                sub: user_id.into(),
                iat: now - 7200,
                exp: now - 3600,
            })
            .expect("sign");
        with_token(message, &token)
    }

    pub(crate) async fn create(&self, email: &str, password: &str) -> User {
        self.client()
            .create_user(self.as_service(CreateUserRequest {
                email: email.into(),
                display_name: "Test User".into(),
                password: password.into(),
            }))
            .await
            .expect("create user")
            .into_inner()
            .user
            .expect("user")
    }
}

pub(crate) fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    request
}

/// A unique, valid email address.
pub(crate) fn email() -> String {
    format!("user-{}@example.com", uuid_like())
}

fn uuid_like() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("randomness");
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Asserts the status's code and `ErrorInfo` reason.
#[track_caller]
pub(crate) fn assert_error(status: &Status, code: Code, reason: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    let details = status.get_error_details();
    let info = details
        .error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.reason, reason, "{status:?}");
    assert_eq!(info.domain, "notesuite");
}

/// The fields a `BadRequest` detail names, in order.
pub(crate) fn bad_fields(status: &Status) -> Vec<String> {
    assert_error(status, Code::InvalidArgument, "INVALID_FIELDS");
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
