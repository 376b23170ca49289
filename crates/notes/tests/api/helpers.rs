use std::time::Duration;

use database::PoolConfig;
use database::testing::{Backend, TestDatabase};
use notes::store::{PostgresNoteStore, SqliteNoteStore};
use notes::watch::WatchConfig;
use proto::notes::notes_service_client::NotesServiceClient;
use proto::notes::{CreateNoteRequest, Note};
use shell::ServeConfig;
use tonic::Request;
use tonic::transport::Channel;

pub(crate) struct TestNotes {
    pub(crate) client: NotesServiceClient<Channel>,
    pub(crate) issuer: token::Issuer,
    _server: shell::Spawned,
    pub(crate) database: TestDatabase,
    pub(crate) key: token::SigningKey,
}

/// A notes service on its own fresh database on `backend`, with its own signing key.
pub(crate) async fn spawn_notes(backend: Backend) -> TestNotes {
    spawn_notes_with(
        backend,
        PoolConfig {
            max_connections: 4,
            ..PoolConfig::default()
        },
    )
    .await
}

/// [`spawn_notes`] with these pool settings.
pub(crate) async fn spawn_notes_with(backend: Backend, pool: PoolConfig) -> TestNotes {
    spawn_notes_watching(backend, pool, WatchConfig::default()).await
}

/// [`spawn_notes`] with these pool and watch settings.
pub(crate) async fn spawn_notes_watching(
    backend: Backend,
    pool: PoolConfig,
    watch: WatchConfig,
) -> TestNotes {
    let database = TestDatabase::new(backend).await;
    let key = token::SigningKey::generate().expect("key");
    let server = serve(&database, &pool, &watch, &key).await;
    let client = NotesServiceClient::connect(server.url())
        .await
        .expect("connect")
        .max_encoding_message_size(4 * 1024 * 1024);
    TestNotes {
        client,
        issuer: token::Issuer::new(&key, Duration::from_secs(900)),
        _server: server,
        database,
        key,
    }
}

/// A second notes server (a replica) on the same database and key as `notes`.
pub(crate) async fn spawn_replica(notes: &TestNotes) -> shell::Spawned {
    serve(
        &notes.database,
        &PoolConfig {
            max_connections: 4,
            ..PoolConfig::default()
        },
        &WatchConfig::default(),
        &notes.key,
    )
    .await
}

async fn serve(
    database: &TestDatabase,
    pool: &PoolConfig,
    watch: &WatchConfig,
    key: &token::SigningKey,
) -> shell::Spawned {
    let definition = match database.backend() {
        Backend::Sqlite => notes::definition_with(
            SqliteNoteStore::open(database.url(), pool)
                .await
                .expect("database")
                .with_log_retention(watch.watch_log_retention),
            &key.verifying_key(),
            watch,
        ),
        Backend::Postgres => notes::definition_with(
            PostgresNoteStore::open(database.url(), pool)
                .await
                .expect("database")
                .with_log_retention(watch.watch_log_retention),
            &key.verifying_key(),
            watch,
        ),
    };
    shell::spawn(
        definition,
        ServeConfig {
            drain_delay: Duration::ZERO,
            ..ServeConfig::default()
        },
    )
    .await
    .expect("serve")
}

/// A caller of the notes service: a user id with its token.
#[derive(Clone)]
pub(crate) struct Caller {
    pub(crate) user_id: String,
    token: String,
}

impl TestNotes {
    pub(crate) fn client(&self) -> NotesServiceClient<Channel> {
        self.client.clone()
    }

    /// A new user, never seen before.
    pub(crate) fn new_user(&self) -> Caller {
        let user_id = uuid::Uuid::now_v7().to_string();
        let token = self.issuer.user_token(&user_id).expect("sign").token;
        Caller { user_id, token }
    }

    pub(crate) fn service_token(&self) -> String {
        self.issuer.service_token("gateway").expect("sign").token
    }

    /// `message` with the gateway's service credential.
    pub(crate) fn request<T>(&self, message: T) -> Request<T> {
        with_token(message, &self.service_token())
    }

    pub(crate) async fn create(&self, caller: &Caller, title: &str, tags: &[&str]) -> Note {
        self.client()
            .create_note(caller.request(CreateNoteRequest {
                note: Some(draft(title, "some content", tags)),
                request_id: String::new(),
            }))
            .await
            .expect("create note")
            .into_inner()
            .note
            .expect("note")
    }
}

impl Caller {
    pub(crate) fn request<T>(&self, message: T) -> Request<T> {
        with_token(message, &self.token)
    }
}

pub(crate) fn draft(title: &str, content: &str, tags: &[&str]) -> Note {
    Note {
        title: title.into(),
        content: content.into(),
        tags: tags.iter().map(|tag| tag.to_string()).collect(),
        ..Note::default()
    }
}

pub(crate) fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|path| path.to_string()).collect(),
    })
}

pub(crate) use shell::testing::{assert_error, bad_fields, with_token};
