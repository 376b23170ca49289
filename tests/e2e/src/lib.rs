//! Helpers for end-to-end tests: the whole suite, in process, on ports picked by the OS.

use std::net::SocketAddr;
use std::time::Duration;

use database::DatabaseUrl;
use database::testing::{Backend, TestDatabase};
use proto::gateway::gateway_service_client::GatewayServiceClient;
use proto::gateway::{LoginRequest, SignUpRequest, SignUpResponse};
use proto::notes::notes_service_client::NotesServiceClient;
use proto::users::users_service_client::UsersServiceClient;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Request, Status};

/// The running suite; dropping it shuts it down.
#[derive(Debug)]
pub struct TestSuite {
    pub gateway_addr: SocketAddr,
    pub users_addr: SocketAddr,
    pub notes_addr: SocketAddr,
    gateway: Channel,
    shutdown: CancellationToken,
    _data_dir: tempfile::TempDir,
    _databases: Option<TestDatabase>,
}

/// Starts users, notes and the gateway exactly as `notesuite up` does, on fresh databases
/// (SQLite files in a new data directory, or new PostgreSQL databases) and ports 0.
pub async fn spawn_suite(backend: Backend) -> TestSuite {
    spawn_suite_signed_with(backend, None).await
}

/// [`spawn_suite`] with tokens signed by the PKCS#8 PEM key at `jwt_private_key` (so that a
/// test can run another gateway beside the suite's).
pub async fn spawn_suite_signed_with(
    backend: Backend,
    jwt_private_key: Option<std::path::PathBuf>,
) -> TestSuite {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let databases = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(TestDatabase::postgres_names_for(&["users", "notes"])),
    };
    let config = notesuite::cli::UpConfig {
        data_dir: data_dir.path().to_owned(),
        database_url: databases
            .as_ref()
            .map(|databases| DatabaseUrl::Postgres(databases.url().to_owned())),
        host: [127, 0, 0, 1].into(),
        gateway_port: 0,
        users_port: 0,
        notes_port: 0,
        jwt_private_key,
        drain_delay: Duration::ZERO,
        shutdown_grace: Duration::from_secs(5),
        max_connections: shell::ServeConfig::default().connection_limit,
        handshake_timeout: shell::ServeConfig::default().handshake_timeout,
        // Tests sign up many accounts from one address; the limits have tests of their own.
        rate_limits: gateway::RateLimitConfig::off(),
        gateway_tls: Default::default(),
    };
    let suite = notesuite::up::Suite::build(&config)
        .await
        .expect("suite builds");
    let (gateway_addr, users_addr, notes_addr) =
        (suite.gateway_addr, suite.users_addr, suite.notes_addr);
    let shutdown = CancellationToken::new();
    tokio::spawn(suite.serve(shutdown.clone()));
    let gateway = channel(gateway_addr).await;
    TestSuite {
        gateway_addr,
        users_addr,
        notes_addr,
        gateway,
        shutdown,
        _data_dir: data_dir,
        _databases: databases,
    }
}

impl Drop for TestSuite {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A signed-up user with their access token.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub email: String,
    pub password: String,
    pub token: String,
}

impl User {
    /// `message` with this user's `authorization` header.
    pub fn request<T>(&self, message: T) -> Request<T> {
        with_token(message, &self.token)
    }
}

impl TestSuite {
    /// A channel to the gateway, the public entry point.
    pub fn gateway_channel(&self) -> Channel {
        self.gateway.clone()
    }

    pub fn gateway(&self) -> GatewayServiceClient<Channel> {
        GatewayServiceClient::new(self.gateway.clone())
    }

    /// The notes stub, pointed at the gateway.
    pub fn notes(&self) -> NotesServiceClient<Channel> {
        NotesServiceClient::new(self.gateway.clone())
    }

    /// The users stub, pointed at the gateway.
    pub fn users(&self) -> UsersServiceClient<Channel> {
        UsersServiceClient::new(self.gateway.clone())
    }

    pub async fn sign_up(&self) -> User {
        let email = unique_email();
        let password = "correct horse battery staple".to_owned();
        let SignUpResponse {
            user, access_token, ..
        } = self
            .gateway()
            .sign_up(SignUpRequest {
                email: email.clone(),
                display_name: "E2E".into(),
                password: password.clone(),
            })
            .await
            .expect("sign up")
            .into_inner();
        User {
            id: user.expect("user").id,
            email,
            password,
            token: access_token,
        }
    }

    pub async fn login(&self, email: &str, password: &str) -> Result<String, Status> {
        Ok(self
            .gateway()
            .login(LoginRequest {
                email: email.into(),
                password: password.into(),
            })
            .await?
            .into_inner()
            .access_token)
    }
}

pub async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("valid uri")
        .connect()
        .await
        .expect("connect")
}

pub fn unique_email() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("user{}-{count}@example.com", std::process::id())
}

pub use shell::testing::{assert_error, with_token};

/// Settings of a gateway in front of `users` and `notes` (`http://HOST:PORT` lists): the
/// defaults of `notesuite gateway`, on a free port, rate limits off. A test changes the one
/// setting it is about.
pub fn gateway_config(users_url: String, notes_url: String) -> gateway::GatewayConfig {
    gateway::GatewayConfig {
        listen: "127.0.0.1:0".parse().expect("address"),
        users_url,
        notes_url,
        jwt_private_key: Default::default(),
        jwt_public_key: None,
        access_token_ttl: Duration::from_secs(900),
        default_deadline: Duration::from_secs(10),
        stream_stall_timeout: Duration::from_secs(10),
        backends: Default::default(),
        rate_limits: gateway::RateLimitConfig::off(),
        serve: shell::ServeConfig::default(),
    }
}

/// A gateway serving `config`, signing with `key`.
pub async fn spawn_gateway(
    config: &gateway::GatewayConfig,
    key: &token::SigningKey,
) -> shell::Spawned {
    let definition = gateway::build(config, key).expect("gateway builds");
    shell::spawn(definition, shell::ServeConfig::default())
        .await
        .expect("serve")
}

/// A suite whose gateway signs with a key the test holds too (to run a second gateway
/// beside it), with the temporary directory the key file lives in.
pub async fn spawn_suite_with_key(
    backend: Backend,
) -> (TestSuite, token::SigningKey, tempfile::TempDir) {
    let keys = tempfile::tempdir().expect("temp dir");
    let key = token::SigningKey::generate().expect("key");
    let key_path = keys.path().join("jwt.pem");
    std::fs::write(&key_path, key.to_pkcs8_pem().expect("pem")).expect("write key");
    let suite = spawn_suite_signed_with(backend, Some(key_path)).await;
    (suite, key, keys)
}
