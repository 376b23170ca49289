use sqlx::migrate::{Migrate, MigrateError, Migrator};

/// Why a database could not be opened. Every variant names the database (password masked).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot connect to {url}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot connect to {url}: no answer within {timeout:?} (--database-connect-timeout)")]
    ConnectTimeout {
        url: String,
        timeout: std::time::Duration,
    },
    #[error(
        "the schema of {url} is newer than this binary: migration {applied} is applied there, \
         and this binary knows migrations up to {known}; run the notesuite version that migrated \
         it (or a newer one)"
    )]
    SchemaNewer {
        url: String,
        applied: i64,
        known: i64,
    },
    #[error("cannot migrate the schema of {url}")]
    Migrate {
        url: String,
        #[source]
        source: MigrateError,
    },
}

/// Applies `migrator` on `connection`, which the caller closes (or drops) afterwards whatever
/// the outcome: the migrator's lock (PostgreSQL: a session advisory lock) lives and dies with
/// that one connection, never with a pooled one that other work would keep open.
pub(crate) async fn run<C: Migrate>(
    migrator: &Migrator,
    connection: &mut C,
    url: &str,
) -> Result<(), OpenError> {
    migrator
        .run_direct(None, connection, false)
        .await
        .map_err(|source| match source {
            // An applied migration this binary does not have: a newer binary migrated it.
            MigrateError::VersionMissing(applied) => OpenError::SchemaNewer {
                url: url.to_owned(),
                applied,
                known: migrator.iter().map(|m| m.version).max().unwrap_or(0),
            },
            source => OpenError::Migrate {
                url: url.to_owned(),
                source,
            },
        })
}
