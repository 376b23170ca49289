//! Where notes live. The service decides (idempotency, etags, revisions); a store only offers
//! reads and transactional primitives, so that SQLite and PostgreSQL are storage and nothing
//! more, judged by one conformance suite.

mod postgres;
mod sqlite;

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use postgres::PostgresNoteStore;
pub use sqlite::SqliteNoteStore;

use crate::domain::{Change, Note, NoteId, OwnerId, RequestId, Revision, Tag};
use crate::error::Error;

/// An idempotency key with the fingerprint of the request it was first used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateRequest {
    pub request_id: RequestId,
    pub fingerprint: [u8; 32],
}

/// What an earlier create with the same `request_id` left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EarlierRequest {
    pub fingerprint: [u8; 32],
    pub note_id: NoteId,
}

/// One page of a listing, as read.
#[derive(Debug)]
pub struct ListQuery<'a> {
    pub tag: Option<&'a Tag>,
    /// Only notes with ids below this one (keyset pagination); `None` starts from the newest.
    pub before: Option<NoteId>,
    /// Most notes on the page.
    pub limit: u32,
    /// The page stops before the note that would take it past this many bytes
    /// ([`Note::encoded_len_estimate`]), though it always holds at least one note.
    pub byte_budget: usize,
}

#[derive(Debug)]
pub struct ListedPage {
    pub notes: Vec<Note>,
    /// Whether more notes follow the last one of this page.
    pub more: bool,
    /// The owner's revision in the snapshot the page was read from: every change up to it
    /// is reflected in the page, none after it.
    pub revision: Revision,
    /// How many notes match the listing in all pages, in the same snapshot.
    pub total: u64,
}

/// Rows one statement of a purge deletes. Each chunk commits on its own, so a purge of any
/// size never holds a lock (SQLite: the one write slot) for long, and one cut short (its
/// deadline, a crash) keeps what it did: the next attempt goes on from there.
pub(crate) const PURGE_CHUNK: i64 = 1000;

/// How many changes per owner the change log keeps by default: a watcher further behind
/// than this must list again (WATCH_CURSOR_EXPIRED).
pub const DEFAULT_LOG_RETENTION: u32 = 10_000;

pub trait NoteStore: Clone + Send + Sync + 'static {
    type Write: NoteWrite;

    /// Begins a write to `owner`'s notes. The transaction holds the owner's next revision
    /// and, until it ends, is the owner's only writer: two writers for one owner can never
    /// commit revisions out of order or leave a hole. [`Error::AccountDeleted`] once the
    /// owner is purged.
    fn write(&self, owner: &OwnerId) -> impl Future<Output = Result<Self::Write, Error>> + Send;

    /// Marks `owner` (a deleted account) purged at `now`, in a transaction that waits for
    /// the owner's writer and commits first: no write can store anything for the owner
    /// after it. Then deletes every note, logged change and request id of the owner, in
    /// chunks of [`PURGE_CHUNK`] rows. Returns how many notes this call deleted; purging
    /// again deletes what is left (nothing once done) and keeps the first time.
    fn purge(
        &self,
        owner: &OwnerId,
        now: SystemTime,
    ) -> impl Future<Output = Result<u64, Error>> + Send;

    /// Owners purged at or after `since`, oldest purge first, at most `limit`.
    fn purged_since(
        &self,
        since: SystemTime,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<(OwnerId, SystemTime)>, Error>> + Send;

    fn get(
        &self,
        owner: &OwnerId,
        id: NoteId,
    ) -> impl Future<Output = Result<Option<Note>, Error>> + Send;

    /// The owner's notes, newest first, within `query`'s bounds, and how many match in all.
    fn list(
        &self,
        owner: &OwnerId,
        query: ListQuery<'_>,
    ) -> impl Future<Output = Result<ListedPage, Error>> + Send;

    /// The owner's logged changes with revisions above `after`, oldest first: at most
    /// `limit` of them, and fewer when they are big (about `byte_budget` bytes, though
    /// always one while any remain). The log is contiguous, so a first change above
    /// `after + 1` means the changes in between were pruned.
    fn changes(
        &self,
        owner: &OwnerId,
        after: Revision,
        limit: u32,
        byte_budget: usize,
    ) -> impl Future<Output = Result<Vec<Change>, Error>> + Send;

    /// The owner's current revision ([`Revision::ZERO`] before their first change).
    fn revision(&self, owner: &OwnerId) -> impl Future<Output = Result<Revision, Error>> + Send;

    /// The current revisions of `owners` (those with none left out).
    fn revisions(
        &self,
        owners: &[OwnerId],
    ) -> impl Future<Output = Result<Vec<(OwnerId, Revision)>, Error>> + Send;

    /// Starts whatever tells this process's watchers of changes made by other processes
    /// (PostgreSQL: the other replicas), until `stop` is cancelled. Nothing by default: one
    /// process owns the database and its hub sees every commit.
    fn start_change_feed(
        &self,
        _hub: &crate::watch::ChangeHub,
        _stop: &tokio_util::sync::CancellationToken,
    ) {
    }

    /// Succeeds when the database can be written; the error says why not, for the log.
    fn check_writable(&self) -> impl Future<Output = Result<(), String>> + Send;
}

/// What the service decided a write transaction should do with its changes.
#[derive(Debug)]
pub enum Decision<T> {
    /// Keep the changes made through the transaction.
    Commit(T),
    /// Nothing changed (e.g. a retried create): end the transaction without a trace, giving
    /// back the revision it held.
    Discard(T),
}

/// One owner's write transaction. Dropping it unfinished rolls it back.
pub trait NoteWrite: Send {
    /// The revision the transaction's first change is made under.
    fn revision(&self) -> Revision;

    /// Takes `more` revisions after [`NoteWrite::revision`] for further changes in this
    /// transaction (an import batch): they commit or roll back with it, in order.
    fn take_more(&mut self, more: u32) -> impl Future<Output = Result<(), Error>> + Send;

    /// The earlier create of this owner with `request_id`, if any.
    fn earlier_request(
        &mut self,
        request_id: RequestId,
    ) -> impl Future<Output = Result<Option<EarlierRequest>, Error>> + Send;

    /// The earlier creates of this owner among `request_ids` (an import batch's), by id.
    fn earlier_requests(
        &mut self,
        request_ids: &[RequestId],
    ) -> impl Future<Output = Result<Vec<(RequestId, EarlierRequest)>, Error>> + Send;

    /// The owner's note `id` as this transaction sees it.
    fn note(&mut self, id: NoteId) -> impl Future<Output = Result<Option<Note>, Error>> + Send;

    /// Stores a new note, remembering `request` for retries. Each of `insert`, `replace` and
    /// `remove` also logs its change (under the note's revision for the first two and the
    /// transaction's for `remove`) and prunes the owner's log to its retention.
    fn insert(
        &mut self,
        note: &Note,
        request: Option<CreateRequest>,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Stores new notes (an import batch) as [`NoteWrite::insert`] does each, in a few
    /// statements for the whole batch instead of several per note.
    fn insert_many(
        &mut self,
        notes: &[(Note, Option<CreateRequest>)],
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Stores `note` over the owner's note with the same id.
    fn replace(&mut self, note: &Note) -> impl Future<Output = Result<(), Error>> + Send;

    /// Removes the owner's note `id`, logging the change under `revision`.
    fn remove(
        &mut self,
        id: NoteId,
        revision: Revision,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    fn commit(self) -> impl Future<Output = Result<(), Error>> + Send;

    fn rollback(self) -> impl Future<Output = ()> + Send;

    /// Ends the transaction as `outcome` says: commits a [`Decision::Commit`], rolls back
    /// anything else.
    fn finish<T: Send>(
        self,
        outcome: Result<Decision<T>, Error>,
    ) -> impl Future<Output = Result<T, Error>> + Send
    where
        Self: Sized,
    {
        async move {
            match outcome {
                Ok(Decision::Commit(value)) => {
                    self.commit().await?;
                    Ok(value)
                }
                Ok(Decision::Discard(value)) => {
                    self.rollback().await;
                    Ok(value)
                }
                Err(error) => {
                    self.rollback().await;
                    Err(error)
                }
            }
        }
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

/// Fills a page from rows arriving newest first, stopping as soon as the page is full. The
/// stores' queries already leave out the rows that start past the budget; this decides
/// exactly, with the size the note takes on the wire. Every row carries the owner's revision
/// and the listing's total as the statement saw them; a listing with no note is one row
/// without a note.
pub(crate) async fn fill_page<S>(rows: S, query: &ListQuery<'_>) -> Result<ListedPage, Error>
where
    S: futures_util::Stream<Item = Result<PageRowParts, Error>>,
{
    use futures_util::TryStreamExt as _;
    let mut rows = std::pin::pin!(rows);
    let mut page = ListedPage {
        notes: Vec::new(),
        more: false,
        revision: Revision::ZERO,
        total: 0,
    };
    let mut bytes = 0;
    while let Some(row) = rows.try_next().await? {
        page.revision = row.revision;
        page.total = row.total;
        let Some(note) = row.note else { continue };
        let size = note.encoded_len_estimate();
        let full = page.notes.len() >= query.limit as usize
            || (!page.notes.is_empty() && bytes + size > query.byte_budget);
        if full {
            page.more = true;
            return Ok(page);
        }
        bytes += size;
        page.notes.push(note);
    }
    Ok(page)
}

/// One row of a listing, as the stores read it: what the statement saw of the owner, and a
/// note unless the listing is empty.
pub(crate) struct PageRowParts {
    pub(crate) revision: Revision,
    pub(crate) total: u64,
    pub(crate) note: Option<Note>,
}

/// Keeps the changes that fit `byte_budget` (always the first).
pub(crate) fn within_budget(changes: &mut Vec<Change>, byte_budget: usize) {
    let mut bytes = 0;
    let keep = changes
        .iter()
        .position(|change| {
            bytes += change.event.encoded_len_estimate();
            bytes > byte_budget
        })
        .map_or(changes.len(), |first_over| first_over.max(1));
    changes.truncate(keep);
}
