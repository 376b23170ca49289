//! One watch stream: a pull-driven state machine. It does work only when its client takes the
//! next event, so a client that stops reading costs no buffer beyond HTTP/2's own window; the
//! change log is the buffer. A client that stops reading for longer than the stall timeout
//! while changes wait is told WATCH_TOO_SLOW when it comes back, and resumes by revision.

use std::collections::VecDeque;
use std::sync::Arc;

use futures_util::Stream;
use tokio::time::{Instant, sleep_until};

use super::Watches;
use super::feed::{Refusal, Subscription};
use crate::domain::{Change, OwnerId, Revision};
use crate::error::Error;
use crate::store::NoteStore;

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// After this revision: every later change is sent.
    After(Revision),
    /// At the owner's current revision.
    Now,
}

/// What a watch stream sends.
#[derive(Debug, Clone)]
pub(crate) enum WatchEvent {
    Change(Arc<Change>),
    /// Every change up to this revision has been sent.
    Heartbeat(Revision),
}

/// Opens a watch of `owner`'s changes. Fails at once (before any event) when the start is
/// ahead of the owner's revision or the stream limits are reached.
pub(crate) async fn watch<S: NoteStore>(
    watches: &Watches,
    store: S,
    owner: OwnerId,
    start: Start,
) -> Result<impl Stream<Item = Result<WatchEvent, Error>> + Send + use<S>, Error> {
    // Subscribe before reading the current revision, so that no commit falls in between.
    let subscription = watches
        .hub
        .subscribe(&owner)
        .map_err(|refusal| match refusal {
            Refusal::TooManyForOwner => Error::TooManyWatches {
                limit: watches.config.max_watches_per_user,
                per_user: true,
            },
            Refusal::TooManyForProcess => Error::TooManyWatches {
                limit: watches.config.max_watches,
                per_user: false,
            },
        })?;
    let current = store.revision(&owner).await?;
    let delivered = match start {
        Start::Now => current,
        Start::After(after) if after > current => {
            return Err(Error::InvalidFields(vec![shell::FieldViolation::new(
                "after_revision",
                format!(
                    "is {}, ahead of the caller's current revision {}",
                    after.get(),
                    current.get()
                ),
            )]));
        }
        Start::After(after) => after,
    };
    let heartbeat_every = watches.config.watch_heartbeat_interval;
    let watcher = Watcher {
        store,
        revocations: watches.revocations.clone(),
        subscription,
        delivered,
        known: current,
        pending: VecDeque::new(),
        heartbeat_every,
        next_heartbeat: Instant::now() + heartbeat_every,
        stall_timeout: watches.config.watch_stall_timeout,
        yielded: Instant::now(),
        live: false,
        ended: false,
    };
    Ok(futures_util::stream::unfold(watcher, Watcher::next))
}

struct Watcher<S> {
    store: S,
    revocations: token::Revocations,
    subscription: Subscription,
    /// The revision of the last change sent (or the start).
    delivered: Revision,
    /// The newest revision known committed.
    known: Revision,
    /// Changes read and not yet sent.
    pending: VecDeque<Arc<Change>>,
    heartbeat_every: std::time::Duration,
    next_heartbeat: Instant,
    stall_timeout: std::time::Duration,
    /// When the last event went out.
    yielded: Instant,
    /// Whether the replay is over (its end is marked by a heartbeat).
    live: bool,
    ended: bool,
}

impl<S: NoteStore> Watcher<S> {
    async fn next(mut self) -> Option<(Result<WatchEvent, Error>, Self)> {
        if self.ended {
            return None;
        }
        if self
            .revocations
            .is_revoked(self.subscription.feed.owner().as_str())
        {
            return Some(self.end(Error::AccountDeleted));
        }
        // The client came back for more: if it was away for too long while changes waited,
        // it is too slow for this stream.
        // The time from the last event to this poll is the client's (and the transport's)
        // alone: this stream waits for changes only after this point.
        self.known = self.known.max(*self.subscription.revisions.borrow());
        let waiting = !self.pending.is_empty() || self.known > self.delivered;
        if waiting && self.yielded.elapsed() > self.stall_timeout {
            let delivered = self.delivered;
            return Some(self.end(Error::WatchTooSlow(delivered)));
        }
        match self.step().await {
            Ok(event) => {
                self.yielded = Instant::now();
                Some((Ok(event), self))
            }
            Err(error) => Some(self.end(error)),
        }
    }

    fn end(mut self, error: Error) -> (Result<WatchEvent, Error>, Self) {
        self.ended = true;
        (Err(error), self)
    }

    /// The next event: a pending change, else one read from the log, else (caught up) a
    /// heartbeat when one is due.
    async fn step(&mut self) -> Result<WatchEvent, Error> {
        loop {
            if let Some(change) = self.pending.pop_front() {
                self.delivered = change.revision;
                return Ok(WatchEvent::Change(change));
            }
            if self.delivered < self.known {
                // Boxed: a read's future (the store's query) is far larger than the rest of
                // this state machine, and every idle stream would carry its size inline.
                Box::pin(self.read()).await?;
                continue;
            }
            if !self.live {
                self.live = true;
                return Ok(self.heartbeat());
            }
            let revisions = &mut self.subscription.revisions;
            tokio::select! {
                changed = revisions.changed() => {
                    if changed.is_ok() {
                        self.known = self.known.max(*revisions.borrow_and_update());
                    }
                }
                () = sleep_until(self.next_heartbeat) => return Ok(self.heartbeat()),
            }
        }
    }

    fn heartbeat(&mut self) -> WatchEvent {
        self.next_heartbeat = Instant::now() + self.heartbeat_every;
        WatchEvent::Heartbeat(self.delivered)
    }

    /// Reads the changes after the last one sent. The log of an owner is contiguous, so a
    /// first change beyond the next revision means the ones between were pruned.
    async fn read(&mut self) -> Result<(), Error> {
        let changes = self
            .subscription
            .feed
            .changes_after(&self.store, self.delivered)
            .await?;
        let next = self.delivered.plus(1);
        match changes.first() {
            Some(first) if first.revision == next => {
                self.known = self.known.max(changes[changes.len() - 1].revision);
                self.pending.extend(changes);
                Ok(())
            }
            Some(_) => Err(Error::WatchCursorExpired(self.delivered)),
            None => {
                // Nothing logged after the cursor: either it is current (the hint was ahead
                // of the log, which cannot happen for committed changes) or the owner's
                // changes since it predate the log.
                let current = self.store.revision(self.subscription.feed.owner()).await?;
                if current > self.delivered {
                    return Err(Error::WatchCursorExpired(self.delivered));
                }
                self.known = current;
                Ok(())
            }
        }
    }
}
