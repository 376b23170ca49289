//! Where notes live. The service depends on [`NoteStore`] only; SQLite is the embedded
//! default and PostgreSQL implements the same trait against the same tests.

mod sqlite;

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use sqlite::SqliteNoteStore;

use crate::domain::{Note, NoteDraft, NoteId, NotePatch, OwnerId, RequestId, Revision, Tag};
use crate::error::Error;

/// An idempotency key with the fingerprint of the request it was first used for.
#[derive(Debug, Clone, Copy)]
pub struct CreateRequest {
    pub request_id: RequestId,
    pub fingerprint: [u8; 32],
}

pub trait NoteStore: Send + Sync + 'static {
    /// Creates `note` under the owner's next revision. With `request`, a retry returns the
    /// note the first attempt created ([`Error::RequestIdReused`] if the fingerprint differs,
    /// [`Error::NoteNotFound`] if that note has since been deleted).
    fn create(
        &self,
        owner: &OwnerId,
        draft: &NoteDraft,
        request: Option<CreateRequest>,
        now: SystemTime,
    ) -> impl Future<Output = Result<Note, Error>> + Send;

    fn get(
        &self,
        owner: &OwnerId,
        id: NoteId,
    ) -> impl Future<Output = Result<Option<Note>, Error>> + Send;

    /// Up to `limit` of the owner's notes with ids below `before`, newest first.
    fn list(
        &self,
        owner: &OwnerId,
        tag: Option<&Tag>,
        before: Option<NoteId>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Note>, Error>> + Send;

    /// How many of the owner's notes match `tag` (all of them without).
    fn count(
        &self,
        owner: &OwnerId,
        tag: Option<&Tag>,
    ) -> impl Future<Output = Result<u64, Error>> + Send;

    /// Applies `patch` if the note's revision is `expected`, under the owner's next revision.
    fn update(
        &self,
        owner: &OwnerId,
        id: NoteId,
        expected: Revision,
        patch: &NotePatch,
        now: SystemTime,
    ) -> impl Future<Output = Result<Note, Error>> + Send;

    /// Deletes the note if it exists and, when `expected` is given, has that revision.
    fn delete(
        &self,
        owner: &OwnerId,
        id: NoteId,
        expected: Option<Revision>,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Succeeds when the database answers.
    fn ping(&self) -> impl Future<Output = Result<(), Error>> + Send;
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
