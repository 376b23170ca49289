//! The hub between writers and watchers in one process: per watched owner, the newest
//! revision known to be committed, and a short ring of the newest changes themselves.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::domain::{Change, OwnerId, Revision};
use crate::error::Error;
use crate::store::NoteStore;

/// Most changes of one owner kept in memory for its watchers, and about how many bytes.
const RING_CHANGES: usize = 256;
const RING_BYTES: usize = 1024 * 1024;

/// Most changes (and about how many bytes) one read of the log returns.
pub(crate) const BATCH_CHANGES: u32 = 64;
pub(crate) const BATCH_BYTES: usize = 1024 * 1024;

/// Shared by the service's writers (which publish what they committed), its watch streams
/// (which subscribe per owner) and, on PostgreSQL, the listener (which publishes hints from
/// other replicas) and the notifier (which sends this process's hints to them).
#[derive(Clone)]
pub struct ChangeHub {
    inner: Arc<HubInner>,
}

impl std::fmt::Debug for ChangeHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeHub").finish_non_exhaustive()
    }
}

/// Where this process announces its commits to other replicas.
type Outbox = Arc<dyn Fn(&OwnerId, Revision) + Send + Sync>;

struct HubInner {
    owners: Mutex<HashMap<OwnerId, Weak<OwnerFeed>>>,
    /// Open watch streams, bounded per process.
    streams: Arc<Semaphore>,
    max_per_owner: usize,
    /// Where this process's commits are announced to other replicas, if anywhere.
    outbox: Mutex<Option<Outbox>>,
}

/// Why a watch could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    TooManyForOwner,
    TooManyForProcess,
}

/// One watch stream's hold on its owner's feed, and its place among the process's streams.
#[derive(Debug)]
pub(crate) struct Subscription {
    pub(crate) feed: Arc<OwnerFeed>,
    pub(crate) revisions: watch::Receiver<Revision>,
    _permit: OwnedSemaphorePermit,
}

impl ChangeHub {
    pub fn new(max_streams: u32, max_per_owner: u32) -> Self {
        Self {
            inner: Arc::new(HubInner {
                owners: Mutex::new(HashMap::new()),
                streams: Arc::new(Semaphore::new(max_streams as usize)),
                max_per_owner: max_per_owner as usize,
                outbox: Mutex::new(None),
            }),
        }
    }

    /// Sends every later [`ChangeHub::committed`] hint to `outbox` as well.
    pub(crate) fn set_outbox(&self, outbox: Outbox) {
        *lock(&self.inner.outbox) = Some(outbox);
    }

    pub(crate) fn subscribe(&self, owner: &OwnerId) -> Result<Subscription, Refusal> {
        let permit = self
            .inner
            .streams
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::TooManyForProcess)?;
        let mut owners = lock(&self.inner.owners);
        let feed = match owners.get(owner).and_then(Weak::upgrade) {
            Some(feed) => feed,
            None => {
                let feed = Arc::new(OwnerFeed {
                    owner: owner.clone(),
                    revision: watch::Sender::new(Revision::ZERO),
                    ring: Mutex::new(Ring::default()),
                    reading: Arc::new(tokio::sync::Mutex::new(())),
                    read_done: tokio::sync::Notify::new(),
                    hub: Arc::downgrade(&self.inner),
                });
                owners.insert(owner.clone(), Arc::downgrade(&feed));
                feed
            }
        };
        if feed.revision.receiver_count() >= self.inner.max_per_owner {
            return Err(Refusal::TooManyForOwner);
        }
        let revisions = feed.revision.subscribe();
        Ok(Subscription {
            feed,
            revisions,
            _permit: permit,
        })
    }

    /// `changes` (contiguous, oldest first) were committed by this process: its watchers get
    /// them without reading the log, and other replicas hear of the newest revision.
    pub(crate) fn committed(&self, owner: &OwnerId, changes: Vec<Change>) {
        let Some(newest) = changes.last().map(|change| change.revision) else {
            return;
        };
        if let Some(feed) = self.feed(owner) {
            lock(&feed.ring).extend(changes.into_iter().map(Arc::new));
            feed.advance(newest);
        }
        let outbox = lock(&self.inner.outbox).clone();
        if let Some(outbox) = outbox {
            outbox(owner, newest);
        }
    }

    /// Another replica (or a sweep of the database) says `owner` is at `revision`.
    pub(crate) fn heard(&self, owner: &OwnerId, revision: Revision) {
        if let Some(feed) = self.feed(owner) {
            feed.advance(revision);
        }
    }

    /// Owners with at least one watcher here.
    pub(crate) fn watched_owners(&self) -> Vec<OwnerId> {
        lock(&self.inner.owners)
            .iter()
            .filter(|(_, feed)| feed.strong_count() > 0)
            .map(|(owner, _)| owner.clone())
            .collect()
    }

    /// Open watch streams in this process.
    pub fn open_streams(&self) -> usize {
        lock(&self.inner.owners)
            .values()
            .filter_map(Weak::upgrade)
            .map(|feed| feed.revision.receiver_count())
            .sum()
    }

    fn feed(&self, owner: &OwnerId) -> Option<Arc<OwnerFeed>> {
        lock(&self.inner.owners).get(owner).and_then(Weak::upgrade)
    }
}

/// One watched owner: the newest revision known committed, and its newest changes.
pub(crate) struct OwnerFeed {
    owner: OwnerId,
    revision: watch::Sender<Revision>,
    ring: Mutex<Ring>,
    /// One read of the log at a time per owner, so that when a hint wakes many watchers
    /// of one owner, one reads and the others take the rows from the ring.
    reading: Arc<tokio::sync::Mutex<()>>,
    /// Told when a read ends, to every watcher waiting for it at once. Waiting for the
    /// `reading` lock instead would hand it to 10,000 watchers one after the other, each
    /// only to find the rows already in the ring (measured: the last of 10,000 watchers on
    /// another replica got a change 130–290 ms after the first).
    read_done: tokio::sync::Notify,
    hub: Weak<HubInner>,
}

impl std::fmt::Debug for OwnerFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnerFeed")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl OwnerFeed {
    pub(crate) fn owner(&self) -> &OwnerId {
        &self.owner
    }

    fn advance(&self, revision: Revision) {
        self.revision.send_if_modified(|known| {
            let newer = revision > *known;
            if newer {
                *known = revision;
            }
            newer
        });
    }

    /// Changes after `after`, oldest first: from the ring when it holds the next one, else
    /// from the log (whose rows then join the ring when they continue it).
    pub(crate) async fn changes_after<S: NoteStore>(
        self: &Arc<Self>,
        store: &S,
        after: Revision,
    ) -> Result<Vec<Arc<Change>>, Error> {
        let reading = loop {
            // Listen before looking, so that a read ending in between is not missed: a
            // `Notified` hears every `notify_waiters` made after its creation.
            let read_done = self.read_done.notified();
            if let Some(changes) = lock(&self.ring).after(after) {
                return Ok(changes);
            }
            match self.reading.clone().try_lock_owned() {
                Ok(reading) => break reading,
                Err(_) => read_done.await,
            }
        };
        // The read runs as a task of its own. A watch stream is polled only while its client
        // has room in its HTTP/2 window: read inline, a stalled client's stream would stop
        // mid-read and hold the owner's read lock (every other watcher of the owner waiting
        // on it) and a pooled database connection until the stall timeout.
        let read = Reading {
            feed: self.clone(),
            lock: Some(reading),
        };
        let store = store.clone();
        let task = tokio::spawn(async move {
            let feed = &read.feed;
            let changes: Vec<Arc<Change>> = store
                .changes(&feed.owner, after, BATCH_CHANGES, BATCH_BYTES)
                .await?
                .into_iter()
                .map(Arc::new)
                .collect();
            lock(&feed.ring).extend(changes.iter().cloned());
            if let Some(newest) = changes.last() {
                feed.advance(newest.revision);
            }
            drop(read);
            Ok(changes)
        });
        match task.await {
            Ok(changes) => changes,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            // Only a runtime shutting down cancels a task it did not abort.
            Err(_) => Err(Error::Database(sqlx::Error::PoolClosed)),
        }
    }
}

/// The one read of an owner's log in progress. However it ends (done or failed), the
/// watchers waiting for it are told, after the lock is free.
struct Reading {
    feed: Arc<OwnerFeed>,
    lock: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for Reading {
    fn drop(&mut self) {
        drop(self.lock.take());
        self.feed.read_done.notify_waiters();
    }
}

impl Drop for OwnerFeed {
    fn drop(&mut self) {
        // The last watcher of this owner left: forget the owner, unless a new watcher has
        // already put a fresh feed in its place.
        if let Some(hub) = self.hub.upgrade() {
            let mut owners = lock(&hub.owners);
            if owners
                .get(&self.owner)
                .is_some_and(|feed| feed.strong_count() == 0)
            {
                owners.remove(&self.owner);
            }
        }
    }
}

/// The newest changes of one owner, contiguous by revision.
#[derive(Debug, Default)]
struct Ring {
    changes: VecDeque<Arc<Change>>,
    bytes: usize,
}

impl Ring {
    /// The ring's changes after `after`, if the ring holds the one right after it.
    fn after(&self, after: Revision) -> Option<Vec<Arc<Change>>> {
        let first = self.changes.front()?.revision;
        let last = self.changes.back()?.revision;
        if after < first.plus(-1) || after >= last {
            return None;
        }
        let skip = usize::try_from(after.get() - first.get() + 1).ok()?;
        let mut bytes = 0;
        Some(
            self.changes
                .iter()
                .skip(skip)
                .take_while(|change| {
                    bytes += change.event.encoded_len_estimate();
                    bytes <= BATCH_BYTES
                })
                .take(BATCH_CHANGES as usize)
                .cloned()
                .collect::<Vec<_>>(),
        )
        .filter(|changes| !changes.is_empty())
    }

    /// Appends `changes` if they continue the ring; starts it over with them if they do not.
    fn extend(&mut self, changes: impl IntoIterator<Item = Arc<Change>>) {
        for change in changes {
            match self.changes.back() {
                Some(last) if change.revision <= last.revision => continue,
                Some(last) if change.revision != last.revision.plus(1) => {
                    self.changes.clear();
                    self.bytes = 0;
                }
                _ => {}
            }
            self.bytes += change.event.encoded_len_estimate();
            self.changes.push_back(change);
            while self.changes.len() > RING_CHANGES || self.bytes > RING_BYTES {
                let Some(dropped) = self.changes.pop_front() else {
                    break;
                };
                self.bytes -= dropped.event.encoded_len_estimate();
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
