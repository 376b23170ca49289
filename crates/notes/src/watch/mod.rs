//! WatchNotes: each owner's changes, replayed from the change log and then live.
//!
//! The change log (written by each change's own transaction) is the only source of truth. What
//! moves between writers and watchers is a hint, "owner X is at revision R", after which a
//! watcher reads the log after the last revision it delivered; a lost hint can delay a change,
//! never lose or reorder one. Hints come from this process's own commits (with the changes
//! themselves, so that watchers of a busy owner do not all read the same rows) and, on
//! PostgreSQL, from every other replica ([`postgres`]).

mod feed;
pub(crate) mod postgres;
mod stream;

use std::sync::Arc;
use std::time::Duration;

pub use feed::ChangeHub;
pub(crate) use stream::{Start, WatchEvent, watch};

/// Limits and timings of watch streams.
#[derive(Debug, Clone, clap::Args)]
pub struct WatchConfig {
    /// How often an idle watch stream gets a HEARTBEAT with the caller's current revision.
    #[arg(long, env = "NOTESUITE_WATCH_HEARTBEAT_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub watch_heartbeat_interval: Duration,

    /// A watch stream whose client has not read for this long while changes wait for it ends
    /// with RESOURCE_EXHAUSTED (WATCH_TOO_SLOW); the client resumes from its last revision.
    #[arg(long, env = "NOTESUITE_WATCH_STALL_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub watch_stall_timeout: Duration,

    /// Changes per owner the change log keeps: a watcher further behind must list again
    /// (WATCH_CURSOR_EXPIRED).
    #[arg(long, env = "NOTESUITE_WATCH_LOG_RETENTION", default_value_t = crate::store::DEFAULT_LOG_RETENTION)]
    pub watch_log_retention: u32,

    /// Most watch streams one user may hold open on this process.
    #[arg(long, env = "NOTESUITE_MAX_WATCHES_PER_USER", default_value_t = 32)]
    pub max_watches_per_user: u32,

    /// Most watch streams this process holds open.
    #[arg(long, env = "NOTESUITE_MAX_WATCHES", default_value_t = 16_384)]
    pub max_watches: u32,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            watch_heartbeat_interval: Duration::from_secs(5),
            watch_stall_timeout: Duration::from_secs(10),
            watch_log_retention: crate::store::DEFAULT_LOG_RETENTION,
            max_watches_per_user: 32,
            max_watches: 16_384,
        }
    }
}

/// What a watch stream needs from the service.
#[derive(Debug, Clone)]
pub(crate) struct Watches {
    pub(crate) hub: ChangeHub,
    pub(crate) config: Arc<WatchConfig>,
    /// Deleted accounts: their watches end (checked before each event, so within a
    /// heartbeat interval).
    pub(crate) revocations: token::Revocations,
    /// Stops the change feed between replicas when the service goes.
    pub(crate) _feed: Arc<tokio_util::sync::DropGuard>,
    /// Stops the revocation refresh when the service goes.
    pub(crate) _revocation_refresh: Arc<tokio_util::task::AbortOnDropHandle<()>>,
}
