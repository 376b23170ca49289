use sqlx::pool::PoolConnection;
use sqlx::{Database, Executor};
use tokio::sync::OwnedSemaphorePermit;

/// A write transaction on a pooled connection that is never returned to the pool in an
/// unknown state: it goes back only after a COMMIT or ROLLBACK that succeeded. Any other end
/// (a failed statement whose rollback failed too, a failed COMMIT, a cancelled call dropping
/// the future) closes the connection instead, and the pool opens a fresh one.
///
/// This is what keeps one transient failure from poisoning a connection: sqlx's own
/// `Transaction` returns its connection with a rollback still queued, and after some SQLite
/// failures every later `BEGIN IMMEDIATE` on it failed ("attempted to call begin_with at
/// non-zero transaction depth") until the process restarted.
#[derive(Debug)]
pub struct WriteTransaction<DB: Database> {
    connection: PoolConnection<DB>,
    finished: bool,
    /// Held until the transaction ends (SQLite: the process's one write slot).
    _write_slot: Option<OwnedSemaphorePermit>,
}

impl<DB> WriteTransaction<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    /// Runs `begin` (e.g. `BEGIN` or SQLite's `BEGIN IMMEDIATE`) on `connection`.
    pub(crate) async fn begin(
        connection: PoolConnection<DB>,
        begin: &'static str,
        write_slot: Option<OwnedSemaphorePermit>,
    ) -> Result<Self, sqlx::Error> {
        // From here until COMMIT/ROLLBACK succeeds, the connection counts as in a transaction
        // (even if BEGIN itself fails half-way: closing it is always safe).
        let mut transaction = Self {
            connection,
            finished: false,
            _write_slot: write_slot,
        };
        sqlx::raw_sql(begin)
            .execute(&mut *transaction.connection)
            .await?;
        Ok(transaction)
    }

    /// The connection to run the transaction's statements on.
    pub fn connection(&mut self) -> &mut DB::Connection {
        &mut self.connection
    }

    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        sqlx::raw_sql("COMMIT")
            .execute(&mut *self.connection)
            .await?;
        self.finished = true;
        Ok(())
    }

    /// Rolls back; if even that fails, the connection is closed when this returns.
    pub async fn rollback(mut self) {
        match sqlx::raw_sql("ROLLBACK")
            .execute(&mut *self.connection)
            .await
        {
            Ok(_) => self.finished = true,
            Err(error) => tracing::warn!(%error, "rollback failed: closing the connection"),
        }
    }

    /// Commits when `outcome` is a success, rolls back otherwise: the service decides, the
    /// transaction follows.
    pub async fn finish<T, E: From<sqlx::Error>>(self, outcome: Result<T, E>) -> Result<T, E> {
        match outcome {
            Ok(value) => {
                self.commit().await?;
                Ok(value)
            }
            Err(error) => {
                self.rollback().await;
                Err(error)
            }
        }
    }
}

impl<DB: Database> Drop for WriteTransaction<DB> {
    fn drop(&mut self) {
        if !self.finished {
            self.connection.close_on_drop();
        }
    }
}
