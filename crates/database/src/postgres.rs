use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{MigrateDatabase as _, Migrator};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::{Connection as _, PgPool, Postgres};

use crate::config::{DatabaseUrl, PoolConfig};
use crate::migrate::{self, OpenError};
use crate::transaction::WriteTransaction;

/// How often PostgreSQL checks, while a statement runs, that its client is still connected.
const CLIENT_CHECK_INTERVAL: &str = "250ms";

/// How long a connection given back to the pool may take to answer a ping before it counts
/// as still running an abandoned statement.
const RELEASE_CHECK: Duration = Duration::from_millis(200);

/// Whether a connection given back to the pool may be used again. A call cancelled by its
/// client (or past its deadline) drops its query mid-flight; sqlx would then wait for the
/// statement to finish before reusing the connection, holding a pool slot for as long as the
/// statement runs (up to the statement timeout). A connection that does not answer a ping at
/// once is closed instead: the pool opens another, and PostgreSQL, which checks for a gone
/// client every `CLIENT_CHECK_INTERVAL`, stops the statement.
async fn usable_again(connection: &mut PgConnection) -> Result<bool, sqlx::Error> {
    Ok(tokio::time::timeout(RELEASE_CHECK, connection.ping())
        .await
        .is_ok_and(|pinged| pinged.is_ok()))
}

/// A connection used this recently is handed out without a ping (HikariCP's
/// `aliveBypassWindowMs`, 500 ms, makes the same bet).
const ALIVE_WITHOUT_PING: Duration = Duration::from_secs(1);

/// Whether a pooled connection may be handed out: pinged first only when it sat idle longer
/// than `ALIVE_WITHOUT_PING`, the case where the server may have gone away unnoticed (a
/// restart, a failover, a proxy's idle cut). One that died within the window fails its call
/// with UNAVAILABLE and RetryInfo, and sqlx drops it, so the client's retry gets another.
async fn alive_unless_recently_used(
    connection: &mut PgConnection,
    metadata: sqlx::pool::PoolConnectionMetadata,
) -> Result<bool, sqlx::Error> {
    if metadata.idle_for > ALIVE_WITHOUT_PING {
        connection.ping().await?;
    }
    Ok(true)
}

/// A PostgreSQL database shared by every replica of a service.
#[derive(Debug, Clone)]
pub struct PostgresDatabase {
    pool: PgPool,
    metrics: telemetry::PoolMetrics,
}

impl PostgresDatabase {
    /// Connects to `url`, applies `migrator`'s pending migrations (once, whichever replica
    /// gets there first) and registers the pool's metrics as `pool_name`.
    pub async fn open(
        url: &str,
        config: &PoolConfig,
        pool_name: &'static str,
        migrator: &Migrator,
    ) -> Result<Self, OpenError> {
        let shown = redacted(url);
        let connect_error = |source| OpenError::Connect {
            url: shown.clone(),
            source,
        };
        let statement_timeout = config.statement_timeout.as_millis().to_string();
        let idle_in_transaction = config.idle_in_transaction_timeout.as_millis().to_string();
        let options =
            crate::statement_logging(PgConnectOptions::from_str(url).map_err(connect_error)?)
                .application_name(&format!("notesuite-{pool_name}"))
                .options([
                    ("statement_timeout", statement_timeout.as_str()),
                    // A frozen replica's transaction is ended by the server, and its locks
                    // released, instead of stalling every write waiting behind it.
                    (
                        "idle_in_transaction_session_timeout",
                        idle_in_transaction.as_str(),
                    ),
                    // A call its client cancels drops its query, and sqlx then closes the
                    // connection; PostgreSQL only notices a gone client when it next writes
                    // to it, so a statement waiting on a lock would run on until the
                    // statement timeout. Checking the socket while it runs stops it instead.
                    ("client_connection_check_interval", CLIENT_CHECK_INTERVAL),
                ]);

        // Replicas starting together all get here: the first takes the migrator's advisory
        // lock and migrates, the others wait for it and then find nothing to do. The lock is
        // a session lock on this dedicated connection, so closing the connection (or the
        // process dying) always releases it, even when a migration fails.
        let mut connection = connect(&options, config.connect_timeout, &shown).await?;
        // Not the service's statement timeout: waiting for another replica's migration, or a
        // migration building an index on a big table, may rightly take longer.
        let migrated = match sqlx::raw_sql("SET statement_timeout = 0")
            .execute(&mut connection)
            .await
        {
            Ok(_) => migrate::run(migrator, &mut connection, &shown).await,
            Err(source) => Err(OpenError::Connect {
                url: shown.clone(),
                source,
            }),
        };
        match migrated {
            Ok(()) => {
                let _ = connection.close().await;
            }
            Err(error) => {
                // Release the lock at once, so that another replica can go ahead now, not
                // when the server notices the closed socket; if even that fails (the server
                // is stuck), dropping the socket ends the session and its locks anyway.
                let _ = tokio::time::timeout(
                    config.connect_timeout,
                    sqlx::raw_sql("SELECT pg_advisory_unlock_all()").execute(&mut connection),
                )
                .await;
                drop(connection);
                return Err(error);
            }
        }

        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout)
            // Connections are recycled so that a failover or a pgbouncer restart is
            // followed within minutes, not at the next error.
            .max_lifetime(Duration::from_secs(30 * 60))
            .idle_timeout(Duration::from_secs(10 * 60))
            // sqlx pings every connection it hands out: a round trip on the path of every
            // call. Only one idle for a while is pinged (see `alive_unless_recently_used`).
            .test_before_acquire(false)
            .before_acquire(|connection, metadata| {
                Box::pin(alive_unless_recently_used(connection, metadata))
            })
            .after_release(|connection, _| Box::pin(usable_again(connection)))
            .connect_lazy_with(options);
        let metrics = crate::pool_metrics(&pool, pool_name, config.max_connections);
        Ok(Self { pool, metrics })
    }

    /// A pooled connection for reads; the wait for it is measured.
    pub async fn connection(&self) -> Result<PoolConnection<Postgres>, sqlx::Error> {
        crate::measured_wait(&self.metrics, self.pool.acquire()).await
    }

    /// A write transaction (READ COMMITTED).
    pub async fn write(&self) -> Result<WriteTransaction<Postgres>, sqlx::Error> {
        let connection = self.connection().await?;
        WriteTransaction::begin(connection, "BEGIN", None).await
    }

    /// Succeeds when the server answers and accepts writes (a standby promoted away from, or
    /// a server in recovery, answers reads only).
    pub async fn check_writable(&self) -> Result<(), String> {
        let mut connection = self.connection().await.map_err(|error| error.to_string())?;
        let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
            .fetch_one(&mut *connection)
            .await
            .map_err(|error| error.to_string())?;
        if in_recovery {
            return Err("the database server is read-only (in recovery)".into());
        }
        Ok(())
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

async fn connect(
    options: &PgConnectOptions,
    timeout: Duration,
    shown: &str,
) -> Result<PgConnection, OpenError> {
    match tokio::time::timeout(timeout, PgConnection::connect_with(options)).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(source)) => Err(OpenError::Connect {
            url: shown.to_owned(),
            source,
        }),
        Err(_) => Err(OpenError::ConnectTimeout {
            url: shown.to_owned(),
            timeout,
        }),
    }
}

/// Creates the database named in `url` unless it exists (`up --database-url` makes one per
/// service). Two processes racing to create it both succeed.
pub async fn create_database_if_missing(url: &str) -> Result<(), OpenError> {
    let connect_error = |source| OpenError::Connect {
        url: redacted(url),
        source,
    };
    if Postgres::database_exists(url)
        .await
        .map_err(connect_error)?
    {
        return Ok(());
    }
    match Postgres::create_database(url).await {
        Ok(()) => Ok(()),
        // Another process created it meanwhile: 42P04 duplicate_database, or a unique
        // violation on pg_database when both got past the existence check at once.
        Err(sqlx::Error::Database(error))
            if error.code().as_deref() == Some("42P04") || error.is_unique_violation() =>
        {
            Ok(())
        }
        Err(error) => Err(connect_error(error)),
    }
}

fn redacted(url: &str) -> String {
    DatabaseUrl::Postgres(url.to_owned()).redacted()
}
