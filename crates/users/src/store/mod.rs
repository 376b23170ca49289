//! Where accounts live. The service depends on [`UserStore`] only; SQLite is the embedded
//! default and PostgreSQL implements the same trait against the same tests.

mod postgres;
mod sqlite;

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use postgres::PostgresUserStore;
pub use sqlite::SqliteUserStore;

use crate::domain::{Email, User, UserChanges, UserId, Version};
use crate::error::Error;

pub trait UserStore: Clone + Send + Sync + 'static {
    /// Inserts a new account; [`Error::EmailTaken`] if its email key exists.
    fn insert(
        &self,
        user: &User,
        password_hash: &str,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    fn get(&self, id: UserId) -> impl Future<Output = Result<Option<User>, Error>> + Send;

    /// The account with this email (case-insensitively) and its password hash.
    fn get_with_password_hash(
        &self,
        email: &Email,
    ) -> impl Future<Output = Result<Option<(User, String)>, Error>> + Send;

    /// The accounts among `ids` that exist, in any order.
    fn get_many(&self, ids: &[UserId]) -> impl Future<Output = Result<Vec<User>, Error>> + Send;

    /// Up to `limit` accounts with ids greater than `after`, in id (= creation) order.
    fn list(
        &self,
        after: Option<UserId>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<User>, Error>> + Send;

    /// Applies `changes` if the stored version is `expected`, bumping the version:
    /// [`Error::UserNotFound`], [`Error::EtagMismatch`] or [`Error::EmailTaken`] otherwise.
    fn update(
        &self,
        id: UserId,
        expected: Version,
        changes: &UserChanges,
        now: SystemTime,
    ) -> impl Future<Output = Result<User, Error>> + Send;

    /// Deletes the account if it exists and, when `expected` is given, has that version,
    /// and records its deletion at `now` ([`AccountDeletion`]) in the same transaction.
    fn delete(
        &self,
        id: UserId,
        expected: Option<Version>,
        now: SystemTime,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Recorded deletions, oldest first, at most `limit`: those at or after `since` (all
    /// without), or only the ones whose purge is pending.
    fn deletions(
        &self,
        since: Option<SystemTime>,
        pending_only: bool,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<AccountDeletion>, Error>> + Send;

    /// Records that the deleted account's notes are purged; [`Error::UserNotFound`] when no
    /// such deletion exists. Confirming twice keeps the first time.
    fn confirm_purged(
        &self,
        id: UserId,
        now: SystemTime,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Succeeds when the database can be written; the error says why not, for the log.
    fn check_writable(&self) -> impl Future<Output = Result<(), String>> + Send;
}

/// A deleted account, as recorded by [`UserStore::delete`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountDeletion {
    pub user_id: UserId,
    pub delete_time: SystemTime,
    /// When its notes were purged; `None` while that is pending.
    pub purge_time: Option<SystemTime>,
}

/// A unique violation on insert or update of an account can only be its email key: the
/// caller's doing (ALREADY_EXISTS), never INTERNAL.
pub(crate) fn unique_violation_is_email(error: sqlx::Error) -> Error {
    match database::classify(&error) {
        database::Failure::UniqueViolation => Error::EmailTaken,
        database::Failure::Unavailable | database::Failure::Other => Error::Database(error),
    }
}

/// The current time at the precision stores keep, so that what a write returns equals what
/// a later read returns.
pub(crate) fn now() -> SystemTime {
    from_micros(to_micros(SystemTime::now()))
}

/// Times are stored as microseconds since the Unix epoch on every backend.
pub(crate) fn to_micros(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(crate) fn from_micros(micros: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(u64::try_from(micros).unwrap_or(0))
}
