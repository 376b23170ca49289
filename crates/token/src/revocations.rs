//! Accounts whose tokens no longer work: deleted ones.
//!
//! A token cannot be recalled once signed, so every verifier also holds the set of subjects
//! deleted recently and refuses their tokens however valid the signature. User ids are
//! UUIDv7, never reused, so a revoked id stays revoked; an entry only needs to outlive every
//! token issued before the deletion, hence [`RETENTION`].
//!
//! Each service fills its set from its own database (users: the deletions it made; notes:
//! the purges it ran; the gateway: users' deletions, which it drains) and refreshes it every
//! [`REFRESH_INTERVAL`]; the replica that made the change revokes at once.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use tokio_util::task::AbortOnDropHandle;

/// How often services read new deletions from their database: the bound on how long
/// another replica still accepts a deleted account's token.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// How long a revoked subject is remembered: longer than any user token lives (the gateway
/// refuses a `--access-token-ttl` above [`MAX_USER_TOKEN_TTL`]), plus clock skew.
pub const RETENTION: Duration = Duration::from_secs(25 * 3600);

/// The longest a user token may live, so that [`RETENTION`] outlasts every token.
pub const MAX_USER_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// How far back each refresh reads again before the latest deletion it saw: a deletion
/// timed earlier may commit later (another replica's clock, a slow transaction).
pub const REFRESH_OVERLAP: Duration = Duration::from_secs(30);

/// A shared set of revoked subjects (user ids) with the time each was revoked.
#[derive(Debug, Clone, Default)]
pub struct Revocations {
    revoked: Arc<RwLock<HashMap<String, SystemTime>>>,
}

impl Revocations {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `subject`'s tokens are refused.
    pub fn is_revoked(&self, subject: &str) -> bool {
        let revoked = self
            .revoked
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        !revoked.is_empty() && revoked.contains_key(subject)
    }

    /// Refuses `subject`'s tokens from now on.
    pub fn revoke(&self, subject: impl Into<String>, at: SystemTime) {
        self.extend([(subject.into(), at)]);
    }

    /// Revokes every `(subject, time)` of `deletions`, and forgets entries older than
    /// [`RETENTION`] (their tokens have all expired).
    pub fn extend(&self, deletions: impl IntoIterator<Item = (String, SystemTime)>) {
        let mut revoked = self
            .revoked
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        revoked.extend(deletions);
        if let Some(oldest_kept) = SystemTime::now().checked_sub(RETENTION) {
            revoked.retain(|_, at| *at >= oldest_kept);
        }
    }

    pub fn len(&self) -> usize {
        self.revoked
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where a refresh starts reading: [`REFRESH_OVERLAP`] before the latest deletion seen, or
/// [`RETENTION`] ago on the first one.
pub fn refresh_since(latest_seen: Option<SystemTime>) -> SystemTime {
    let now = SystemTime::now();
    match latest_seen {
        Some(latest) => latest.checked_sub(REFRESH_OVERLAP).unwrap_or(latest),
        None => now.checked_sub(RETENTION).unwrap_or(SystemTime::UNIX_EPOCH),
    }
}

/// Deletions read per query by [`spawn_refresh`]; a full page is followed by another at once.
pub const REFRESH_PAGE: u32 = 1000;

/// Keeps `revocations` up to date from a service's database: every [`REFRESH_INTERVAL`],
/// `load(since, REFRESH_PAGE)` gives the deletions at or after `since`, oldest first. A
/// failing load keeps what is known and is tried again next time (logged once per outage).
/// Must be called within a Tokio runtime; the refresh stops when the handle is dropped.
pub fn spawn_refresh<Load, Loading>(revocations: Revocations, load: Load) -> AbortOnDropHandle<()>
where
    Load: Fn(SystemTime, u32) -> Loading + Send + 'static,
    Loading: std::future::Future<Output = Result<Vec<(String, SystemTime)>, String>> + Send,
{
    AbortOnDropHandle::new(tokio::spawn(async move {
        let mut latest: Option<SystemTime> = None;
        let mut failing = false;
        loop {
            let mut since = refresh_since(latest);
            loop {
                match load(since, REFRESH_PAGE).await {
                    Ok(deletions) => {
                        if failing {
                            tracing::info!("reading deleted accounts works again");
                            failing = false;
                        }
                        let full = deletions.len() >= REFRESH_PAGE as usize;
                        let page_latest = deletions.iter().map(|(_, at)| *at).max();
                        latest = page_latest.max(latest);
                        revocations.extend(deletions);
                        // A full page: read on from its last deletion, while that moves.
                        match page_latest {
                            Some(next) if full && next > since => since = next,
                            _ => break,
                        }
                    }
                    Err(error) => {
                        if !failing {
                            tracing::warn!(
                                %error,
                                "cannot read deleted accounts: tokens of accounts deleted on \
                                 other replicas are accepted here until this recovers"
                            );
                            failing = true;
                        }
                        break;
                    }
                }
            }
            tokio::time::sleep(REFRESH_INTERVAL).await;
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoked_subjects_are_refused_and_old_entries_forgotten() {
        let revocations = Revocations::new();
        assert!(!revocations.is_revoked("u1"));
        revocations.revoke("u1", SystemTime::now());
        assert!(revocations.is_revoked("u1"));
        assert!(!revocations.is_revoked("u2"));
        let long_ago = SystemTime::now() - RETENTION - Duration::from_secs(60);
        revocations.extend([("u2".to_owned(), long_ago)]);
        assert!(
            !revocations.is_revoked("u2"),
            "older than any token: forgotten"
        );
        assert_eq!(revocations.len(), 1);
    }

    #[test]
    fn refreshes_overlap_the_last_one() {
        let latest = SystemTime::now();
        assert_eq!(refresh_since(Some(latest)), latest - REFRESH_OVERLAP);
        assert!(refresh_since(None) <= SystemTime::now() - RETENTION);
    }
}
