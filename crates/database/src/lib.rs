//! Opening a service's database the same way for every service.
//!
//! - The URL picks the backend: `postgres://…`/`postgresql://…` is PostgreSQL, `sqlite://…` or
//!   a plain path is an embedded SQLite file ([`DatabaseUrl`]).
//! - The pool is bounded, with connect, acquire and statement timeouts ([`PoolConfig`]), and
//!   reports the pool metrics of the telemetry crate.
//! - Migrations run at start-up on a dedicated connection that is closed whatever happens, so a
//!   failed migration cannot leave the migrator's advisory lock held by a pooled connection
//!   (which would block every other replica); a schema newer than the binary is refused.
//! - [`WriteTransaction`] never returns a connection to the pool in an unknown state.
//! - [`classify`] tells "the database is unreachable or busy, retry" from the caller's doing
//!   and from bugs, for the services' one error mapping.

mod config;
mod migrate;
mod postgres;
mod sqlite;
mod transaction;

pub use config::{
    DatabaseUrl, DatabaseUrlParser, PoolConfig, postgres_database_name, postgres_url_with_database,
};
pub use migrate::OpenError;
pub use postgres::{PostgresDatabase, create_database_if_missing};
pub use sqlite::{ReadConnection, SqliteDatabase};
pub use transaction::WriteTransaction;

/// How sqlx logs statements, on every backend: slow ones as warnings, the others not at all.
///
/// Not "the others at DEBUG": before each statement's log line sqlx asks `tracing::enabled!`,
/// and with per-layer filters a "no" there is left behind in the thread's filter state and
/// swallows the next event of that thread (the "serving" line after start-up was lost that
/// way whenever RUST_LOG did not enable sqlx's debug logs).
pub(crate) fn statement_logging<O: sqlx::ConnectOptions>(options: O) -> O {
    options
        .log_statements(log::LevelFilter::Off)
        .log_slow_statements(log::LevelFilter::Warn, std::time::Duration::from_secs(1))
}

/// Registers `pool`'s metrics (`db.client.connection.*`) under `name`.
pub(crate) fn pool_metrics<DB: sqlx::Database>(
    pool: &sqlx::Pool<DB>,
    name: &'static str,
    max_connections: u32,
) -> telemetry::PoolMetrics {
    let observed = pool.clone();
    telemetry::PoolMetrics::register(name, max_connections, move || {
        (
            observed.size(),
            u32::try_from(observed.num_idle()).unwrap_or(u32::MAX),
        )
    })
}

/// Waits for a connection (whatever `acquiring` waits for), the wait recorded in `metrics`.
pub(crate) async fn measured_wait<T>(
    metrics: &telemetry::PoolMetrics,
    acquiring: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    let started = std::time::Instant::now();
    let connection = acquiring.await?;
    metrics.record_wait(started.elapsed());
    Ok(connection)
}

/// What a failed statement means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The database cannot be reached or cannot write right now (down, restarting, disk full,
    /// read-only, pool exhausted, busy): a retry later or elsewhere may succeed.
    Unavailable,
    /// A unique constraint refused the row: the caller's doing (a duplicate), never INTERNAL.
    UniqueViolation,
    /// Anything else: a bug or corrupt data.
    Other,
}

/// Classifies a sqlx error; see [`Failure`].
pub fn classify(error: &sqlx::Error) -> Failure {
    match error {
        // A protocol error is what a connection cut half-way through a message looks like
        // (the server shutting down or restarting): the next connection may well work.
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => Failure::Unavailable,
        sqlx::Error::Database(database_error) => {
            if database_error.is_unique_violation() {
                return Failure::UniqueViolation;
            }
            let code = database_error.code().unwrap_or_default();
            let transient = if database_error
                .try_downcast_ref::<sqlx::sqlite::SqliteError>()
                .is_some()
            {
                sqlite_code_is_transient(&code)
            } else {
                postgres_code_is_transient(&code)
            };
            if transient {
                Failure::Unavailable
            } else {
                Failure::Other
            }
        }
        _ => Failure::Other,
    }
}

/// SQLite result codes (extended codes carry the primary code in their low byte) that say
/// the file cannot be written right now rather than that the statement is wrong.
fn sqlite_code_is_transient(code: &str) -> bool {
    const BUSY: i32 = 5;
    const LOCKED: i32 = 6;
    const READONLY: i32 = 8;
    const IOERR: i32 = 10;
    const FULL: i32 = 13;
    const CANTOPEN: i32 = 14;
    code.parse::<i32>().is_ok_and(|code| {
        matches!(
            code & 0xff,
            BUSY | LOCKED | READONLY | IOERR | FULL | CANTOPEN
        )
    })
}

/// PostgreSQL SQLSTATEs that say the server cannot serve this now: connection exceptions
/// (08), insufficient resources such as a full disk or too many connections (53), operator
/// intervention such as a shutdown or a statement timeout (57), system errors such as an I/O
/// error (58), serialization failures and deadlocks (40), and a read-only server (25006, a
/// standby after a failover).
fn postgres_code_is_transient(code: &str) -> bool {
    ["08", "53", "57", "58", "40"]
        .iter()
        .any(|class| code.starts_with(class))
        || code == "25006"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_disk_full_and_busy_are_transient_constraint_errors_are_not() {
        assert!(sqlite_code_is_transient("13"), "SQLITE_FULL");
        assert!(sqlite_code_is_transient("5"), "SQLITE_BUSY");
        assert!(sqlite_code_is_transient("517"), "SQLITE_BUSY_SNAPSHOT");
        assert!(sqlite_code_is_transient("778"), "SQLITE_IOERR_WRITE");
        assert!(
            !sqlite_code_is_transient("2067"),
            "SQLITE_CONSTRAINT_UNIQUE"
        );
        assert!(!sqlite_code_is_transient("1"), "SQLITE_ERROR");
    }

    #[test]
    fn server_outages_are_transient_syntax_errors_are_not() {
        assert!(postgres_code_is_transient("57P01"), "admin_shutdown");
        assert!(postgres_code_is_transient("08006"), "connection_failure");
        assert!(postgres_code_is_transient("53100"), "disk_full");
        assert!(
            postgres_code_is_transient("25006"),
            "read_only_sql_transaction"
        );
        assert!(!postgres_code_is_transient("42601"), "syntax_error");
        assert!(!postgres_code_is_transient("23505"), "unique_violation");
    }
}

#[cfg(feature = "testing")]
pub mod testing;
