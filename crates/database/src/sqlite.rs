use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection as _, Sqlite, SqlitePool};
use tokio::sync::Semaphore;

use crate::config::PoolConfig;
use crate::migrate::{self, OpenError};
use crate::transaction::WriteTransaction;

mod readers;

pub use readers::ReadConnection;
use readers::Readers;

/// Connections of the writers' pool: one writes at a time (the write slot), and the one
/// before it may still be on its way back to the pool, or being closed after a cancelled
/// write (see `WriteTransaction`), as may the one before that.
const WRITER_CONNECTIONS: u32 = 3;

/// An embedded SQLite database: one file, WAL journal, a bounded set of readers
/// ([`readers`]) and one writer at a time.
///
/// SQLite allows one writer per file. Left to SQLite, concurrent writers spin on the busy
/// timeout and, under overload, some fail "database is locked"; here writers queue in the
/// process for the write slot instead, in arrival order, for at most the statement timeout,
/// and a writer that cannot get it fails UNAVAILABLE, never INTERNAL.
#[derive(Debug, Clone)]
pub struct SqliteDatabase {
    /// The writers' connections.
    pool: SqlitePool,
    readers: Arc<Readers>,
    write_slot: Arc<Semaphore>,
    write_wait: Duration,
    metrics: telemetry::PoolMetrics,
}

impl SqliteDatabase {
    /// Opens (creating if missing) the file at `url`, e.g. `sqlite://notes.db`, applies
    /// `migrator`'s pending migrations and registers the pool's metrics as `pool_name`.
    pub async fn open(
        url: &str,
        config: &PoolConfig,
        pool_name: &'static str,
        migrator: &Migrator,
    ) -> Result<Self, OpenError> {
        let connect_error = |source| OpenError::Connect {
            url: url.to_owned(),
            source,
        };
        let options =
            crate::statement_logging(SqliteConnectOptions::from_str(url).map_err(connect_error)?)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // With WAL, NORMAL loses at most the last transactions on power loss, never
                // consistency; FULL would fsync every commit.
                .synchronous(SqliteSynchronous::Normal)
                // Only other processes (an operator's sqlite3 shell, a backup) contend for the
                // lock: writers of this process queue for the write slot first.
                .busy_timeout(config.statement_timeout)
                .foreign_keys(true);

        // SQLite's migrator takes no lock: processes opening one file together (a restart
        // overlapping the old process) would both apply the same migration. A file lock beside
        // the database serialises them; it is released when the file closes, even on a crash.
        let lock = lock_migrations(options.get_filename())
            .await
            .map_err(|source| connect_error(sqlx::Error::Io(source)))?;
        let mut connection = SqliteConnection::connect_with(&options)
            .await
            .map_err(connect_error)?;
        let migrated = migrate::run(migrator, &mut connection, url).await;
        let created_probe = sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS notesuite_write_probe (id INTEGER PRIMARY KEY, at INTEGER NOT NULL)",
        )
        .execute(&mut connection)
        .await;
        let _ = connection.close().await;
        drop(lock);
        migrated?;
        created_probe.map_err(connect_error)?;

        let pool = SqlitePoolOptions::new()
            .max_connections(WRITER_CONNECTIONS)
            .acquire_timeout(config.acquire_timeout)
            // A file has no server that could have gone away: sqlx's ping before each
            // acquire would only be one more hand-off to the connection's worker thread.
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .map_err(connect_error)?;
        let readers = Arc::new(Readers::new(
            options,
            config.max_connections,
            config.acquire_timeout,
        ));
        let (observed_pool, observed_readers) = (pool.clone(), Arc::clone(&readers));
        let metrics = telemetry::PoolMetrics::register(
            pool_name,
            config.max_connections + WRITER_CONNECTIONS,
            move || {
                let (open, idle) = observed_readers.counts();
                let writers_idle = u32::try_from(observed_pool.num_idle()).unwrap_or(u32::MAX);
                (open + observed_pool.size(), idle + writers_idle)
            },
        );
        Ok(Self {
            pool,
            readers,
            write_slot: Arc::new(Semaphore::new(1)),
            write_wait: config.statement_timeout,
            metrics,
        })
    }

    /// A connection for reads; the wait for it is measured.
    pub async fn connection(&self) -> Result<ReadConnection, sqlx::Error> {
        crate::measured_wait(&self.metrics, self.readers.acquire()).await
    }

    /// A write transaction (`BEGIN IMMEDIATE`, so that a transaction that read first never
    /// fails to upgrade to a writer). The measured wait includes the write slot, the real
    /// point of contention for writers.
    pub async fn write(&self) -> Result<WriteTransaction<Sqlite>, sqlx::Error> {
        let (write_slot, connection) = crate::measured_wait(&self.metrics, async {
            let write_slot = tokio::time::timeout(
                self.write_wait,
                Arc::clone(&self.write_slot).acquire_owned(),
            )
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|_| sqlx::Error::PoolClosed)?;
            Ok((write_slot, self.pool.acquire().await?))
        })
        .await?;
        WriteTransaction::begin(connection, "BEGIN IMMEDIATE", Some(write_slot)).await
    }

    /// Succeeds when a write commits: readiness must turn NOT_SERVING while the file cannot
    /// be written (disk full, read-only file), not only while it cannot be read.
    ///
    /// The probe queues for the write slot like any writer, but not for long: while writers
    /// keep the slot busy the database is being written, and a probe stuck behind them must
    /// not flip readiness (a full disk fails writers at once, so the slot frees quickly).
    pub async fn check_writable(&self) -> Result<(), String> {
        let write_slot = match tokio::time::timeout(
            PROBE_WAIT_FOR_WRITERS,
            Arc::clone(&self.write_slot).acquire_owned(),
        )
        .await
        {
            Ok(Ok(write_slot)) => write_slot,
            Ok(Err(_)) => return Err("the database is closed".into()),
            Err(_) => return Ok(()),
        };
        let connection = self
            .pool
            .acquire()
            .await
            .map_err(|error| error.to_string())?;
        let mut transaction =
            WriteTransaction::begin(connection, "BEGIN IMMEDIATE", Some(write_slot))
                .await
                .map_err(|error| error.to_string())?;
        let wrote = sqlx::query(
            "INSERT INTO notesuite_write_probe (id, at) VALUES (1, unixepoch('subsec') * 1000)
             ON CONFLICT (id) DO UPDATE SET at = excluded.at",
        )
        .execute(transaction.connection())
        .await
        .map(|_| ());
        transaction
            .finish(wrote)
            .await
            .map_err(|error: sqlx::Error| format!("the database cannot be written: {error}"))
    }
}

/// How long the readiness probe waits behind writers before it counts them as proof enough.
const PROBE_WAIT_FOR_WRITERS: Duration = Duration::from_millis(500);

/// Waits for the exclusive lock on `DATABASE.migrations.lock`.
async fn lock_migrations(database: &Path) -> std::io::Result<Option<std::fs::File>> {
    if database.as_os_str().is_empty() || database.to_string_lossy().starts_with(':') {
        return Ok(None); // in memory: nobody else can open it
    }
    let mut lock_path = database.as_os_str().to_owned();
    lock_path.push(".migrations.lock");
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)?;
        file.lock()?;
        Ok(Some(file))
    })
    .await
    .map_err(std::io::Error::other)?
}
