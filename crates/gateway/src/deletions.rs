//! Account deletion, the gateway's part: the one component holding the signing key, so the
//! one that can act on both users and notes.
//!
//! users records every deletion in the same statement that deletes the account, and keeps it
//! *pending* until the account's notes are purged. The gateway:
//! - refuses deleted accounts' tokens: at once for a DeleteUser it forwarded, and for
//!   deletions made elsewhere (another gateway replica, a direct call to users) within
//!   [`token::revocations::REFRESH_INTERVAL`] of reading users' list of deletions;
//! - purges each pending deletion's notes (PurgeUserNotes, idempotent) and then confirms it
//!   to users (ConfirmAccountPurged): right after a DeleteUser it forwarded, before answering
//!   it, and otherwise from the pending list, every second, retried with backoff for as long
//!   as notes or users fail. A purge interrupted at any point is simply done again: nothing
//!   is lost (the pending row stays until the confirmation) and nothing is left behind.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use proto::notes::PurgeUserNotesRequest;
use proto::notes::notes_service_client::NotesServiceClient;
use proto::users::users_service_client::UsersServiceClient;
use proto::users::{ConfirmAccountPurgedRequest, ListAccountDeletionsRequest};
use tokio_util::task::AbortOnDropHandle;
use tonic::{Request, Status};

use crate::Backend;

/// How long one call of the purge (list, confirm) may take.
const CALL_DEADLINE: Duration = Duration::from_secs(5);

/// How long one PurgeUserNotes of the background round may take. notes deletes in chunks that
/// commit one by one, so an account too large for one call is finished by the next ones.
const PURGE_DEADLINE: Duration = Duration::from_secs(30);

/// Pending deletions purged per round.
const PENDING_PAGE: i32 = 100;

/// The longest wait between purge rounds while they fail: a pending purge runs at most this
/// long after notes (or users) is back.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// How long a DeleteUser waits for the purge it triggers before answering anyway (the purge
/// stays pending and the background round finishes it).
const INLINE_PURGE_WAIT: Duration = Duration::from_secs(2);

/// What the purge needs: both backends and a way to sign the gateway's service token.
#[derive(Clone)]
pub(crate) struct Purger {
    pub(crate) users: UsersServiceClient<Backend>,
    pub(crate) notes: NotesServiceClient<Backend>,
    pub(crate) issuer: token::Issuer,
    pub(crate) revocations: token::Revocations,
}

impl std::fmt::Debug for Purger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Purger").finish_non_exhaustive()
    }
}

/// The running purge and revocation refresh; both stop when this is dropped.
#[derive(Debug)]
pub(crate) struct AccountDeletions {
    purger: Purger,
    _refresh: AbortOnDropHandle<()>,
    _purges: AbortOnDropHandle<()>,
}

impl AccountDeletions {
    /// Starts reading users' deletions into `purger.revocations` and purging pending ones.
    /// Must be called within a Tokio runtime.
    pub(crate) fn start(purger: Purger) -> Arc<Self> {
        let reader = purger.clone();
        let refresh =
            token::revocations::spawn_refresh(purger.revocations.clone(), move |since, limit| {
                let reader = reader.clone();
                async move {
                    reader
                        .deletions_since(since, limit)
                        .await
                        .map_err(|status| format!("{}: {}", status.code(), status.message()))
                }
            });
        let purges = AbortOnDropHandle::new(tokio::spawn(purge_pending(purger.clone())));
        Arc::new(Self {
            purger,
            _refresh: refresh,
            _purges: purges,
        })
    }

    /// A DeleteUser of `user_id` went through: its tokens are refused here from now on, and
    /// its notes are purged before the DeleteUser is answered. Should the purge fail (notes
    /// down), it stays pending in users and the background round finishes it.
    pub(crate) async fn deleted(&self, user_id: &str) {
        self.purger.revocations.revoke(user_id, SystemTime::now());
        let failed = match tokio::time::timeout(INLINE_PURGE_WAIT, self.purger.purge(user_id)).await
        {
            Ok(Ok(())) => return,
            Ok(Err(status)) => format!("{}: {}", status.code(), status.message()),
            Err(_) => format!("no answer within {INLINE_PURGE_WAIT:?}"),
        };
        tracing::warn!(
            user_id,
            error = failed,
            "purge of a deleted account's notes failed; it stays pending and is retried"
        );
    }
}

impl Purger {
    fn request<T>(&self, message: T) -> Result<Request<T>, Status> {
        self.request_within(message, CALL_DEADLINE)
    }

    fn request_within<T>(&self, message: T, deadline: Duration) -> Result<Request<T>, Status> {
        let issued = self
            .issuer
            .service_token(crate::api::GATEWAY_SERVICE_NAME)
            .map_err(|error| Status::internal(error.to_string()))?;
        let authorization = crate::api::bearer(&issued.token)
            .ok_or_else(|| Status::internal("a service token is not a header value"))?;
        let mut request = Request::new(message);
        request.set_timeout(deadline);
        request
            .metadata_mut()
            .insert("authorization", authorization);
        Ok(request)
    }

    async fn deletions_since(
        &self,
        since: SystemTime,
        limit: u32,
    ) -> Result<Vec<(String, SystemTime)>, Status> {
        let request = self.request(ListAccountDeletionsRequest {
            since: Some(since.into()),
            pending_only: false,
            page_size: i32::try_from(limit).unwrap_or(i32::MAX),
        })?;
        let deletions = self
            .users
            .clone()
            .list_account_deletions(request)
            .await?
            .into_inner()
            .deletions;
        Ok(deletions
            .into_iter()
            .filter_map(|deletion| {
                let at = SystemTime::try_from(deletion.delete_time?).ok()?;
                Some((deletion.user_id, at))
            })
            .collect())
    }

    /// Purges `user_id`'s notes, then takes the deletion off users' pending list.
    async fn purge(&self, user_id: &str) -> Result<(), Status> {
        let purged = self
            .notes
            .clone()
            .purge_user_notes(self.request_within(
                PurgeUserNotesRequest {
                    user_id: user_id.to_owned(),
                },
                PURGE_DEADLINE,
            )?)
            .await?
            .into_inner()
            .purged_note_count;
        self.users
            .clone()
            .confirm_account_purged(self.request(ConfirmAccountPurgedRequest {
                user_id: user_id.to_owned(),
            })?)
            .await?;
        tracing::info!(
            user_id,
            purged_notes = purged,
            "deleted account's notes purged"
        );
        Ok(())
    }

    /// One round: every pending deletion (a page of them), oldest first. One that fails is
    /// left for the next round and the others go on, so an account that takes several calls
    /// to purge delays no other; a backend that is down (UNAVAILABLE) ends the round, so it
    /// gets one call per round, not one per deletion. Returns how many were pending, and the
    /// first failure.
    async fn purge_round(&self) -> Result<(usize, Option<Status>), Status> {
        let pending = self
            .users
            .clone()
            .list_account_deletions(self.request(ListAccountDeletionsRequest {
                since: None,
                pending_only: true,
                page_size: PENDING_PAGE,
            })?)
            .await?
            .into_inner()
            .deletions;
        let mut failure = None;
        for deletion in &pending {
            self.revocations.revoke(
                deletion.user_id.clone(),
                deletion
                    .delete_time
                    .and_then(|time| SystemTime::try_from(time).ok())
                    .unwrap_or_else(SystemTime::now),
            );
            if let Err(status) = self.purge(&deletion.user_id).await {
                let down = status.code() == tonic::Code::Unavailable;
                failure.get_or_insert(status);
                if down {
                    break;
                }
            }
        }
        Ok((pending.len(), failure))
    }
}

/// Purges pending deletions for as long as the gateway runs: every second while rounds
/// succeed, backing off to [`MAX_BACKOFF`] while they fail (logged once per outage).
async fn purge_pending(purger: Purger) {
    let mut backoff = token::revocations::REFRESH_INTERVAL;
    let mut failing = false;
    loop {
        let failure = match purger.purge_round().await {
            // A full page: more are waiting.
            Ok((pending, None)) if pending >= PENDING_PAGE as usize => continue,
            Ok((_, None)) => None,
            Ok((_, Some(status))) | Err(status) => Some(status),
        };
        match failure {
            None => {
                if failing {
                    tracing::info!("purging deleted accounts' notes works again");
                    failing = false;
                }
                backoff = token::revocations::REFRESH_INTERVAL;
            }
            Some(status) => {
                if !failing {
                    tracing::warn!(
                        code = %status.code(),
                        message = status.message(),
                        "cannot purge deleted accounts' notes now; retrying with backoff"
                    );
                    failing = true;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        tokio::time::sleep(backoff).await;
    }
}
