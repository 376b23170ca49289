//! Hints between notes replicas sharing one PostgreSQL database.
//!
//! A `pg_notify` inside every write transaction would take PostgreSQL's global notify lock
//! at every commit (measured: insert throughput cut by 45–66 % at 8–32 clients). So writes
//! never notify: each replica's *notifier* collects "owner X is at revision R" after its
//! commits and sends them together, one `pg_notify` every few milliseconds at most. Each
//! replica's *listener* hands what it hears to its watchers, which read the log.
//!
//! Nothing is lost when a hint is: the listener is rebuilt on any error, on a lost
//! connection, and when it has heard nothing (not even the notifier's own pings) for a few
//! seconds (sqlx does not recognise every reset as a drop: launchbadge/sqlx#4014); after each
//! rebuild, and every few seconds anyway, a sweep reads the revisions of every watched owner
//! from the database, so a hint lost to a crashed writer or a dropped connection is replaced
//! by the database's own answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};
use tokio::sync::Notify;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::ChangeHub;
use crate::domain::{OwnerId, Revision};
use crate::store::{NoteStore, PostgresNoteStore};

const CHANNEL: &str = "notesuite_note_changes";
/// How long the notifier gathers hints before sending them.
const COALESCE: Duration = Duration::from_millis(2);
/// `pg_notify` payloads must stay under 8000 bytes.
const MAX_PAYLOAD: usize = 7000;
/// The notifier pings its own listener this often; a listener that hears nothing for
/// `LIVENESS` is rebuilt.
const PING_EVERY: Duration = Duration::from_secs(1);
const LIVENESS: Duration = Duration::from_secs(5);
/// Every watched owner's revision is read from the database this often.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Starts this replica's notifier and listener; both stop when `stop` is cancelled.
pub(crate) fn start(hub: &ChangeHub, store: &PostgresNoteStore, stop: &CancellationToken) {
    let outbox = Arc::new(Outbox::default());
    let sender = outbox.clone();
    hub.set_outbox(Arc::new(move |owner: &OwnerId, revision: Revision| {
        sender.add(owner, revision);
    }));
    tokio::spawn(notify(outbox, hub.clone(), store.clone(), stop.clone()));
    tokio::spawn(listen(hub.clone(), store.clone(), stop.clone()));
}

#[derive(Debug, Default)]
struct Outbox {
    pending: Mutex<HashMap<OwnerId, Revision>>,
    wake: Notify,
}

impl Outbox {
    fn add(&self, owner: &OwnerId, revision: Revision) {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let newest = pending.entry(owner.clone()).or_insert(revision);
        *newest = (*newest).max(revision);
        drop(pending);
        self.wake.notify_one();
    }

    fn take(&self) -> HashMap<OwnerId, Revision> {
        std::mem::take(
            &mut *self
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// Sends the gathered hints (and pings), and sweeps the watched owners' revisions.
async fn notify(
    outbox: Arc<Outbox>,
    hub: ChangeHub,
    store: PostgresNoteStore,
    stop: CancellationToken,
) {
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    sweep.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let payloads = tokio::select! {
            () = stop.cancelled() => return,
            () = outbox.wake.notified() => {
                tokio::time::sleep(COALESCE).await;
                payloads(outbox.take())
            }
            _ = ping.tick() => vec![String::new()],
            _ = sweep.tick() => {
                sweep_revisions(&hub, &store).await;
                continue;
            }
        };
        for payload in payloads {
            let sent = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(&payload)
                .execute(store.database().pool())
                .await;
            if let Err(error) = sent {
                // Other replicas' watchers get these changes from their next sweep.
                tracing::warn!(%error, "cannot send change hints to other replicas");
            }
        }
    }
}

/// Lines of `revision owner`, cut into payloads PostgreSQL accepts.
fn payloads(hints: HashMap<OwnerId, Revision>) -> Vec<String> {
    let mut payloads = vec![String::new()];
    for (owner, revision) in hints {
        let line = format!("{} {}\n", revision.get(), owner.as_str());
        if payloads
            .last()
            .is_some_and(|last| last.len() + line.len() > MAX_PAYLOAD)
        {
            payloads.push(String::new());
        }
        if let Some(last) = payloads.last_mut() {
            last.push_str(&line);
        }
    }
    payloads.retain(|payload| !payload.is_empty());
    payloads
}

fn parse(payload: &str) -> impl Iterator<Item = (OwnerId, Revision)> + '_ {
    payload.lines().filter_map(|line| {
        let (revision, owner) = line.split_once(' ')?;
        let revision = revision.parse::<i64>().ok()?;
        Some((
            OwnerId::from_verified_token(owner.to_owned()),
            Revision::from_stored(revision),
        ))
    })
}

async fn sweep_revisions(hub: &ChangeHub, store: &PostgresNoteStore) {
    let owners = hub.watched_owners();
    if owners.is_empty() {
        return;
    }
    match store.revisions(&owners).await {
        Ok(revisions) => {
            for (owner, revision) in revisions {
                hub.heard(&owner, revision);
            }
        }
        Err(error) => tracing::warn!(%error, "cannot read the watched owners' revisions"),
    }
}

/// Listens for other replicas' hints, rebuilding the listener whenever it may have missed
/// one, and sweeping after each rebuild.
async fn listen(hub: ChangeHub, store: PostgresNoteStore, stop: CancellationToken) {
    // A connection of its own, outside the service's pool, which it would otherwise hold.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with((*store.database().pool().connect_options()).clone());
    let mut backoff = Duration::from_millis(100);
    while !stop.is_cancelled() {
        match listen_once(&hub, &store, &pool, &stop).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(error) => {
                tracing::warn!(%error, "change listener lost: rebuilding it, then re-reading the log");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

async fn listen_once(
    hub: &ChangeHub,
    store: &PostgresNoteStore,
    pool: &sqlx::PgPool,
    stop: &CancellationToken,
) -> Result<(), String> {
    let mut listener = PgListener::connect_with(pool)
        .await
        .map_err(|error| error.to_string())?;
    listener
        .listen(CHANNEL)
        .await
        .map_err(|error| error.to_string())?;
    // Listening now: whatever was committed while no listener was, the sweep finds.
    sweep_revisions(hub, store).await;
    let mut heard = Instant::now();
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            received = listener.try_recv() => match received {
                Ok(Some(notification)) => {
                    heard = Instant::now();
                    for (owner, revision) in parse(notification.payload()) {
                        hub.heard(&owner, revision);
                    }
                }
                Ok(None) => return Err("connection lost".into()),
                Err(error) => return Err(error.to_string()),
            },
            () = tokio::time::sleep_until(heard + LIVENESS) => {
                return Err(format!("heard nothing, not even its own pings, for {LIVENESS:?}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_survive_the_payload_format_and_its_size_limit() {
        let hints: HashMap<OwnerId, Revision> = (0..1000)
            .map(|n| {
                (
                    OwnerId::from_verified_token(format!("0190c0de-0000-7000-8000-{n:012}")),
                    Revision::from_stored(n * 7 + 1),
                )
            })
            .collect();
        let payloads = payloads(hints.clone());
        assert!(payloads.len() > 1);
        assert!(payloads.iter().all(|payload| payload.len() <= MAX_PAYLOAD));
        let heard: HashMap<OwnerId, Revision> = payloads.iter().flat_map(|p| parse(p)).collect();
        assert_eq!(heard, hints);
    }
}
