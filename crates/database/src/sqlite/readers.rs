//! The connections SQLite reads go through, kept here rather than in sqlx's pool.
//!
//! sqlx's SQLite driver runs each connection on a worker thread of its own, so every
//! statement is a hand-off to that thread and back. sqlx 0.9's pool adds one more to every
//! read: it pings each connection it takes back, unconditionally (`return_to_pool`), and on
//! SQLite a ping is another round trip to the worker thread, after a task spawned to run it.
//! Measured on GetNote through the gateway (`bench/hop_wakeups.py`, 40 in flight, every
//! server on one core): with reads going through these readers, notes is preempted 0.96 times
//! per call instead of 1.78, and the calls per second doubled (8.5–8.8k to 17.0–18.4k).
//!
//! What the ping was for does not apply to a reader:
//! - A SQLite connection has no server that can go away.
//! - A read cancelled half-way leaves nothing behind: the worker finishes the step it is on,
//!   sees nobody wants the rows and resets the statement before it takes the next command.
//!   The next caller waits at most for that step (every read the services make is bounded by
//!   a LIMIT or an index lookup).
//! - Readers cannot write (`PRAGMA query_only`), so none goes back inside a transaction or
//!   holding the write lock; writes go through the write slot and sqlx's pool.
//!
//! What remains is a worker thread that died (sqlx's `WorkerCrashed`, a driver bug): a reader
//! not checked in the last [`CHECK_EVERY`] is pinged when it is handed out, so such a
//! connection is found and replaced within a second. A reader idle for [`IDLE_TIMEOUT`] is
//! closed (as sqlx's pool does by default), so a burst does not leave threads and page caches
//! behind for good.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sqlx::Connection as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a reader is handed out without a ping after its last check.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// How long a reader may sit unused before it is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// At most `max` read connections, opened when first needed and reused.
#[derive(Debug)]
pub(crate) struct Readers {
    options: SqliteConnectOptions,
    /// One permit per connection handed out (or being opened).
    slots: Arc<Semaphore>,
    idle: Mutex<Vec<Reader>>,
    open: Arc<AtomicU32>,
    acquire_timeout: Duration,
    idle_timeout: Duration,
}

/// An open read connection and when it was last known to work.
#[derive(Debug)]
struct Reader {
    connection: SqliteConnection,
    checked: Instant,
    /// When it was last given back.
    idle_since: Instant,
    /// Counts this connection while it is open.
    _open: OpenCount,
}

#[derive(Debug)]
struct OpenCount(Arc<AtomicU32>);

impl OpenCount {
    fn new(open: &Arc<AtomicU32>) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(open))
    }
}

impl Drop for OpenCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Readers {
    pub(crate) fn new(options: SqliteConnectOptions, max: u32, acquire_timeout: Duration) -> Self {
        Self {
            options: options.pragma("query_only", "ON"),
            slots: Arc::new(Semaphore::new(max as usize)),
            idle: Mutex::new(Vec::new()),
            open: Arc::new(AtomicU32::new(0)),
            acquire_timeout,
            idle_timeout: IDLE_TIMEOUT,
        }
    }

    /// `(open, idle)` connections, for the pool metrics.
    pub(crate) fn counts(&self) -> (u32, u32) {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        (
            self.open.load(Ordering::Relaxed),
            u32::try_from(idle).unwrap_or(u32::MAX),
        )
    }

    /// A read connection: an idle one, or a new one while fewer than `max` are open. Waits at
    /// most the acquire timeout (then `PoolTimedOut`, as sqlx's pool would answer).
    pub(crate) async fn acquire(self: &Arc<Self>) -> Result<ReadConnection, sqlx::Error> {
        tokio::time::timeout(self.acquire_timeout, self.acquire_unbounded())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
    }

    async fn acquire_unbounded(self: &Arc<Self>) -> Result<ReadConnection, sqlx::Error> {
        let slot = Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        while let Some(mut reader) = self.pop_idle() {
            if reader.checked.elapsed() < CHECK_EVERY {
                return Ok(self.hand_out(reader, slot));
            }
            if reader.connection.ping().await.is_ok() {
                reader.checked = Instant::now();
                return Ok(self.hand_out(reader, slot));
            }
            // Its worker is gone: the connection is dropped, and the next one tried.
        }
        let connection = SqliteConnection::connect_with(&self.options).await?;
        let now = Instant::now();
        let reader = Reader {
            connection,
            checked: now,
            idle_since: now,
            _open: OpenCount::new(&self.open),
        };
        Ok(self.hand_out(reader, slot))
    }

    fn pop_idle(&self) -> Option<Reader> {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
    }

    fn hand_out(self: &Arc<Self>, reader: Reader, slot: OwnedSemaphorePermit) -> ReadConnection {
        ReadConnection {
            reader: Some(reader),
            readers: Arc::clone(self),
            _slot: slot,
        }
    }
}

/// A read connection, given back when dropped (before its slot, so that the next caller
/// finds it idle).
#[derive(Debug)]
pub struct ReadConnection {
    reader: Option<Reader>,
    readers: Arc<Readers>,
    _slot: OwnedSemaphorePermit,
}

impl Deref for ReadConnection {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        &self
            .reader
            .as_ref()
            .expect("present until dropped")
            .connection
    }
}

impl DerefMut for ReadConnection {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self
            .reader
            .as_mut()
            .expect("present until dropped")
            .connection
    }
}

impl Drop for ReadConnection {
    /// Gives the reader back on top of the idle stack, and closes the one at the bottom if it
    /// has been idle too long (outside the lock: closing ends its worker thread).
    fn drop(&mut self) {
        let Some(mut reader) = self.reader.take() else {
            return;
        };
        reader.idle_since = Instant::now();
        let expired = {
            let mut idle = self
                .readers
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            idle.push(reader);
            let oldest_expired = idle
                .first()
                .is_some_and(|oldest| oldest.idle_since.elapsed() > self.readers.idle_timeout);
            oldest_expired.then(|| idle.remove(0))
        };
        drop(expired);
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr as _;

    use super::*;

    fn readers(max: u32, acquire_timeout: Duration) -> Arc<Readers> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:").expect("options");
        Arc::new(Readers::new(options, max, acquire_timeout))
    }

    #[tokio::test]
    async fn a_reader_given_back_is_reused_and_at_most_max_are_handed_out() {
        let readers = readers(2, Duration::from_millis(50));
        let mut first = readers.acquire().await.expect("first");
        // A setting of this connection only, to know it again.
        sqlx::query("PRAGMA cache_size = -1234")
            .execute(&mut *first)
            .await
            .expect("mark the connection");
        let second = readers.acquire().await.expect("second");
        assert_eq!(readers.counts(), (2, 0));
        let waited = readers
            .acquire()
            .await
            .expect_err("a third waits, then times out");
        assert!(matches!(waited, sqlx::Error::PoolTimedOut), "{waited:?}");

        drop(second);
        drop(first);
        assert_eq!(readers.counts(), (2, 2));
        // Last in, first out: the marked connection comes back, not a new one.
        let mut again = readers.acquire().await.expect("again");
        let cache_size: i64 = sqlx::query_scalar("PRAGMA cache_size")
            .fetch_one(&mut *again)
            .await
            .expect("read the setting");
        assert_eq!(cache_size, -1234, "the marked connection");
        assert_eq!(readers.counts(), (2, 1));
    }

    #[tokio::test]
    async fn a_reader_idle_too_long_is_closed() {
        let mut readers = Readers::new(
            SqliteConnectOptions::from_str("sqlite::memory:").expect("options"),
            2,
            Duration::from_secs(5),
        );
        readers.idle_timeout = Duration::from_millis(20);
        let readers = Arc::new(readers);
        let first = readers.acquire().await.expect("first");
        let second = readers.acquire().await.expect("second");
        drop(first);
        drop(second);
        assert_eq!(readers.counts(), (2, 2));
        tokio::time::sleep(Duration::from_millis(50)).await;
        // In use again: the other one, at the bottom of the stack, has been idle too long.
        drop(readers.acquire().await.expect("again"));
        assert_eq!(readers.counts(), (1, 1));
    }

    #[tokio::test]
    async fn a_reader_cannot_write() {
        let readers = readers(1, Duration::from_secs(5));
        let mut connection = readers.acquire().await.expect("acquire");
        let refused = sqlx::query("CREATE TABLE t (x)")
            .execute(&mut *connection)
            .await
            .expect_err("query_only");
        assert!(refused.to_string().contains("readonly"), "{refused}");
    }

    #[tokio::test]
    async fn a_read_cancelled_half_way_leaves_its_connection_usable() {
        let readers = readers(1, Duration::from_secs(5));
        let mut connection = readers.acquire().await.expect("acquire");
        // A statement that runs long enough to be cut off while it runs.
        let long = sqlx::query_scalar::<_, i64>(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000000)
             SELECT count(*) FROM n",
        )
        .fetch_one(&mut *connection);
        assert!(
            tokio::time::timeout(Duration::from_millis(1), long)
                .await
                .is_err(),
            "cut off"
        );
        drop(connection);
        let mut connection = readers.acquire().await.expect("the same connection");
        let one: i64 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut *connection)
            .await
            .expect("answers the next statement");
        assert_eq!(one, 1);
        assert_eq!(readers.counts(), (1, 0));
    }
}
