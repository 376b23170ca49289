use std::time::{Duration, SystemTime, UNIX_EPOCH};

use database::PoolConfig;
use database::testing::{Backend, TestDatabase};
use proto::users::users_service_client::UsersServiceClient;
use proto::users::{CreateUserRequest, User};
use shell::ServeConfig;
use tonic::Request;
use tonic::transport::Channel;
use users::password::PasswordHasher;
use users::store::{PostgresUserStore, SqliteUserStore};

pub(crate) struct TestUsers {
    pub(crate) client: UsersServiceClient<Channel>,
    pub(crate) issuer: token::Issuer,
    backend: Backend,
    _server: shell::Spawned,
    database: TestDatabase,
}

/// A users service on its own fresh database on `backend`, with its own signing key.
pub(crate) async fn spawn_users(backend: Backend) -> TestUsers {
    let database = TestDatabase::new(backend).await;
    let key = token::SigningKey::generate().expect("key");
    let pool = PoolConfig {
        max_connections: 4,
        ..PoolConfig::default()
    };
    let passwords = PasswordHasher::new(2);
    let definition = match backend {
        Backend::Sqlite => users::definition(
            SqliteUserStore::open(database.url(), &pool)
                .await
                .expect("database"),
            passwords,
            &key.verifying_key(),
        ),
        Backend::Postgres => users::definition(
            PostgresUserStore::open(database.url(), &pool)
                .await
                .expect("database"),
            passwords,
            &key.verifying_key(),
        ),
    };
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
        backend,
        _server: server,
        database,
    }
}

impl TestUsers {
    /// The password hash stored for `user_id`, read straight from the database.
    pub(crate) async fn stored_password_hash(&self, user_id: &str) -> String {
        let url = self.database.url();
        match self.backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(url).await.expect("open database");
                sqlx::query_scalar("SELECT password_hash FROM users WHERE id = ?")
                    .bind(user_id)
                    .fetch_one(&pool)
                    .await
                    .expect("row")
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(url).await.expect("open database");
                sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1::uuid")
                    .bind(user_id)
                    .fetch_one(&pool)
                    .await
                    .expect("row")
            }
        }
    }

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

/// A unique, valid email address.
pub(crate) fn email() -> String {
    format!("user-{}@example.com", uuid_like())
}

fn uuid_like() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("randomness");
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

pub(crate) use shell::testing::{assert_error, bad_fields, with_token};
