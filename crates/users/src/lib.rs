//! The users service: accounts with argon2id passwords and case-insensitively unique
//! emails. Library plus a thin `main` (the `notesuite users` subcommand).

pub mod config;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod password;
pub mod service;
pub mod store;

use std::sync::Arc;

use proto::users::users_service_server::UsersServiceServer;
use shell::ServiceDefinition;
use tonic::codec::CompressionEncoding;
use tonic::service::Routes;

pub use config::UsersConfig;
pub use error::Error;

use crate::grpc::UsersGrpc;
use crate::password::PasswordHasher;
use crate::service::Users;
use crate::store::{PostgresUserStore, SqliteUserStore, UserStore};
use database::DatabaseUrl;

/// Full name of the service: its health name and its reflection name.
pub const SERVICE_NAME: &str = "notesuite.users.v1.UsersService";

/// Largest request accepted: accounts are small.
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Opens the database (running migrations) and assembles the service, ready for
/// [`shell::serve`]. Everything that can fail on bad configuration fails here, before any
/// port is bound.
pub async fn build(
    config: &UsersConfig,
    token_keys: impl Into<token::VerifyingKeys>,
) -> Result<ServiceDefinition, Error> {
    let passwords = PasswordHasher::new(config.password_hash_concurrency as usize);
    let definition = match &config.database_url {
        DatabaseUrl::Sqlite(url) => definition(
            SqliteUserStore::open(url, &config.database_pool).await?,
            passwords,
            token_keys,
        ),
        DatabaseUrl::Postgres(url) => definition(
            PostgresUserStore::open(url, &config.database_pool).await?,
            passwords,
            token_keys,
        ),
    };
    Ok(ServiceDefinition {
        capacity: Some(config.database_pool.max_connections),
        ..definition
    })
}

/// The service over any store (tests use it to run the same suite on every backend).
pub fn definition<S: UserStore>(
    store: S,
    passwords: PasswordHasher,
    token_keys: impl Into<token::VerifyingKeys>,
) -> ServiceDefinition {
    let probe_store = store.clone();
    let revocations = token::Revocations::new();
    let verifier = Arc::new(token::Verifier::new(token_keys).with_revocations(revocations.clone()));
    // Accounts deleted through other replicas: their tokens are refused here within a second.
    let deletions = store.clone();
    let refresh = token::revocations::spawn_refresh(revocations.clone(), move |since, limit| {
        let deletions = deletions.clone();
        async move {
            let found = deletions
                .deletions(Some(since), false, limit)
                .await
                .map_err(|error| error.to_string())?;
            Ok(found
                .into_iter()
                .map(|deletion| (deletion.user_id.to_string(), deletion.delete_time))
                .collect())
        }
    });
    let grpc = UsersGrpc::new(Users::new(store, passwords, revocations)).with_refresh(refresh);
    let server = UsersServiceServer::new(grpc)
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
