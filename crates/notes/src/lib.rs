//! The notes service: each user's notes, with idempotent creates, etags, update masks and
//! keyset pagination. Library plus a thin `main` (the `notesuite notes` subcommand).

pub mod config;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod service;
pub mod store;
pub mod watch;

use std::sync::Arc;

use proto::notes::notes_service_server::NotesServiceServer;
use shell::ServiceDefinition;
use tonic::codec::CompressionEncoding;
use tonic::service::Routes;

pub use config::NotesConfig;
pub use error::Error;

use crate::grpc::NotesGrpc;
use crate::service::Notes;
use crate::store::{NoteStore, PostgresNoteStore, SqliteNoteStore};
use crate::watch::{ChangeHub, WatchConfig, Watches};
use database::DatabaseUrl;

/// Full name of the service: its health name and its reflection name.
pub const SERVICE_NAME: &str = "notesuite.notes.v1.NotesService";

/// Largest request accepted: a note's 256 KiB of content plus its other fields, with room
/// to spare so that oversized content gets a field violation rather than a codec error.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// Opens the database (running migrations) and assembles the service, ready for
/// [`shell::serve`]. Everything that can fail on bad configuration fails here, before any
/// port is bound.
pub async fn build(
    config: &NotesConfig,
    token_keys: impl Into<token::VerifyingKeys>,
) -> Result<ServiceDefinition, Error> {
    let definition = match &config.database_url {
        DatabaseUrl::Sqlite(url) => definition_with(
            SqliteNoteStore::open(url, &config.database_pool)
                .await?
                .with_log_retention(config.watch.watch_log_retention),
            token_keys,
            &config.watch,
        ),
        DatabaseUrl::Postgres(url) => definition_with(
            PostgresNoteStore::open(url, &config.database_pool)
                .await?
                .with_log_retention(config.watch.watch_log_retention),
            token_keys,
            &config.watch,
        ),
    };
    Ok(ServiceDefinition {
        capacity: Some(config.database_pool.max_connections),
        ..definition
    })
}

/// The service over any store with default watch settings (tests use it to run the same
/// suite on every backend).
pub fn definition<S: NoteStore>(
    store: S,
    token_keys: impl Into<token::VerifyingKeys>,
) -> ServiceDefinition {
    definition_with(store, token_keys, &WatchConfig::default())
}

/// The service over any store. On PostgreSQL it also starts the change feed between
/// replicas, which stops when the service is dropped.
pub fn definition_with<S: NoteStore>(
    store: S,
    token_keys: impl Into<token::VerifyingKeys>,
    watch: &WatchConfig,
) -> ServiceDefinition {
    let probe_store = store.clone();
    let revocations = token::Revocations::new();
    let verifier = Arc::new(token::Verifier::new(token_keys).with_revocations(revocations.clone()));
    let hub = ChangeHub::new(watch.max_watches, watch.max_watches_per_user);
    let feed = tokio_util::sync::CancellationToken::new();
    store.start_change_feed(&hub, &feed);
    // Accounts purged through other replicas: their tokens are refused here within a second.
    let purges = store.clone();
    let refresh = token::revocations::spawn_refresh(revocations.clone(), move |since, limit| {
        let purges = purges.clone();
        async move {
            let purged = purges
                .purged_since(since, limit)
                .await
                .map_err(|error| error.to_string())?;
            Ok(purged
                .into_iter()
                .map(|(owner, at)| (owner.as_str().to_owned(), at))
                .collect())
        }
    });
    let watches = Watches {
        hub: hub.clone(),
        config: Arc::new(watch.clone()),
        revocations: revocations.clone(),
        _feed: Arc::new(feed.drop_guard()),
        _revocation_refresh: Arc::new(refresh),
    };
    let notes = Notes::new(store, hub, revocations);
    let server = NotesServiceServer::new(NotesGrpc::new(notes, watches))
        .max_decoding_message_size(MAX_REQUEST_BYTES)
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Deflate);
    ServiceDefinition {
        name: SERVICE_NAME,
        routes: Routes::new(token::authenticated(server, verifier, &[])),
        advertised_services: vec![SERVICE_NAME],
        descriptor_sets: vec![proto::FILE_DESCRIPTOR_SET],
        readiness: Some(Box::new(move || {
            let store = probe_store.clone();
            Box::pin(async move { store.check_writable().await })
        })),
        capacity: None,
    }
}
