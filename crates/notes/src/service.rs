//! The notes service's rules: notes belong to the caller, and only to the caller.

use token::Principal;

use std::collections::HashMap;

use crate::domain::{
    Change, ChangeEvent, Note, NoteDraft, NoteId, NotePatch, OwnerId, RequestId, Revision, Tag,
};
use crate::error::Error;
use crate::store::{CreateRequest, Decision, ListQuery, NoteStore, NoteWrite};
use crate::watch::ChangeHub;

/// Most bytes of notes one ListNotes page carries (fewer notes than `page_size` when they are
/// big; `next_page_token` continues). Well below the 4 MiB a default gRPC client accepts, so
/// that a user with the largest notes allowed can list them with default settings.
pub const MAX_PAGE_BYTES: usize = 1024 * 1024;

#[derive(Debug)]
pub struct Notes<S> {
    store: S,
    hub: ChangeHub,
    /// Purged (deleted) accounts whose tokens this process refuses.
    revocations: token::Revocations,
}

/// One item of an import, already validated.
#[derive(Debug)]
pub struct ImportItem {
    /// The item's position in the stream.
    pub index: usize,
    pub draft: NoteDraft,
    pub request_id: Option<RequestId>,
}

/// What one batch of an import did.
#[derive(Debug, Default)]
pub struct ImportOutcome {
    pub created: usize,
    pub already_present: usize,
    /// Items refused, by index.
    pub errors: Vec<(usize, Error)>,
    /// The owner's revision after the batch.
    pub revision: Option<Revision>,
}

/// One page of a listing.
#[derive(Debug)]
pub struct NotePage {
    pub notes: Vec<Note>,
    /// Whether more notes follow the last one of this page.
    pub more: bool,
    pub total: u64,
    /// The owner's revision the page reflects.
    pub revision: Revision,
}

impl<S: NoteStore> Notes<S> {
    pub fn new(store: S, hub: ChangeHub, revocations: token::Revocations) -> Self {
        Self {
            store,
            hub,
            revocations,
        }
    }

    /// Purges a deleted account: its notes, change log and request ids go, and its tokens
    /// are refused from now on (here at once, on other replicas within a second). The
    /// gateway's service credential only. Returns how many notes were deleted.
    pub async fn purge(&self, caller: &Principal, owner: OwnerId) -> Result<u64, Error> {
        if !matches!(caller, Principal::Service { .. }) {
            return Err(Error::ServiceCredentialRequired);
        }
        let now = crate::store::now();
        let purged = self.store.purge(&owner, now).await?;
        self.revocations.revoke(owner.as_str(), now);
        tracing::info!(
            user_id = owner.as_str(),
            purged_notes = purged,
            "deleted account purged"
        );
        Ok(purged)
    }

    pub(crate) fn store(&self) -> &S {
        &self.store
    }

    /// Tells this process's watchers (and, through the hub, other replicas') of a commit.
    fn committed(&self, owner: &OwnerId, changes: Vec<Change>) {
        self.hub.committed(owner, changes);
    }

    pub async fn create(
        &self,
        caller: &Principal,
        draft: NoteDraft,
        request_id: Option<RequestId>,
    ) -> Result<Note, Error> {
        let owner = owner(caller)?;
        let request = request_id.map(|request_id| CreateRequest {
            request_id,
            fingerprint: draft.fingerprint(),
        });
        let mut write = self.store.write(&owner).await?;
        let outcome = create_in(&mut write, &owner, draft, request).await;
        let created = matches!(outcome, Ok(Decision::Commit(_)));
        let note = write.finish(outcome).await?;
        if created {
            tracing::debug!(note_id = %note.id, revision = note.revision.get(), "note created");
            self.committed(
                &owner,
                vec![Change {
                    revision: note.revision,
                    event: ChangeEvent::Created(note.clone()),
                }],
            );
        }
        Ok(note)
    }

    pub async fn get(&self, caller: &Principal, id: NoteId) -> Result<Note, Error> {
        let owner = owner(caller)?;
        self.store.get(&owner, id).await?.ok_or(Error::NoteNotFound)
    }

    pub async fn list(
        &self,
        caller: &Principal,
        tag: Option<Tag>,
        before: Option<NoteId>,
        page_size: u32,
    ) -> Result<NotePage, Error> {
        let owner = owner(caller)?;
        let query = ListQuery {
            tag: tag.as_ref(),
            before,
            limit: page_size,
            byte_budget: MAX_PAGE_BYTES,
        };
        let page = self.store.list(&owner, query).await?;
        Ok(NotePage {
            notes: page.notes,
            more: page.more,
            total: page.total,
            revision: page.revision,
        })
    }

    pub async fn update(
        &self,
        caller: &Principal,
        id: NoteId,
        expected: Revision,
        patch: NotePatch,
    ) -> Result<Note, Error> {
        let owner = owner(caller)?;
        let mut write = self.store.write(&owner).await?;
        let outcome = update_in(&mut write, id, expected, patch).await;
        let note = write.finish(outcome).await?;
        self.committed(
            &owner,
            vec![Change {
                revision: note.revision,
                event: ChangeEvent::Updated(note.clone()),
            }],
        );
        Ok(note)
    }

    pub async fn delete(
        &self,
        caller: &Principal,
        id: NoteId,
        expected: Option<Revision>,
    ) -> Result<(), Error> {
        let owner = owner(caller)?;
        let mut write = self.store.write(&owner).await?;
        let revision = write.revision();
        let outcome = delete_in(&mut write, id, expected).await;
        write.finish(outcome).await?;
        self.committed(
            &owner,
            vec![Change {
                revision,
                event: ChangeEvent::Deleted(id),
            }],
        );
        Ok(())
    }

    /// The caller's current revision.
    pub async fn revision(&self, caller: &Principal) -> Result<Revision, Error> {
        self.store.revision(&owner(caller)?).await
    }

    /// Creates a batch of imported notes in one transaction, each under its own revision in
    /// item order. Items whose `request_id` already created their note are counted, not
    /// created again; one reused for a different note is that item's error. A database
    /// failure fails the batch (and the import): nothing of the batch is kept, and a retry
    /// with the same `request_id`s is safe.
    pub async fn import_batch(
        &self,
        caller: &Principal,
        items: Vec<ImportItem>,
    ) -> Result<ImportOutcome, Error> {
        let owner = owner(caller)?;
        let mut outcome = ImportOutcome::default();
        if items.is_empty() {
            return Ok(outcome);
        }
        let mut write = self.store.write(&owner).await?;
        let request_ids: Vec<RequestId> = items.iter().filter_map(|item| item.request_id).collect();
        // Request ids already used: by earlier creates (one read for the batch), then by
        // earlier items of this batch as they are taken.
        let mut earlier: HashMap<RequestId, [u8; 32]> = write
            .earlier_requests(&request_ids)
            .await?
            .into_iter()
            .map(|(request_id, earlier)| (request_id, earlier.fingerprint))
            .collect();
        let mut fresh = Vec::with_capacity(items.len());
        for item in items {
            let request = item.request_id.map(|request_id| CreateRequest {
                request_id,
                fingerprint: item.draft.fingerprint(),
            });
            if let Some(request) = request {
                match earlier.get(&request.request_id) {
                    Some(fingerprint) if *fingerprint == request.fingerprint => {
                        outcome.already_present += 1;
                        continue;
                    }
                    Some(_) => {
                        outcome.errors.push((item.index, Error::RequestIdReused));
                        continue;
                    }
                    None => {
                        earlier.insert(request.request_id, request.fingerprint);
                    }
                }
            }
            fresh.push((item.draft, request));
        }
        let Some(more) = fresh.len().checked_sub(1) else {
            write.rollback().await;
            return Ok(outcome);
        };
        let first = write.revision();
        let now = crate::store::now();
        let notes: Vec<(Note, Option<CreateRequest>)> = fresh
            .into_iter()
            .enumerate()
            .map(|(offset, (draft, request))| {
                let note = Note {
                    id: NoteId::new(),
                    owner: owner.clone(),
                    title: draft.title,
                    content: draft.content,
                    tags: draft.tags,
                    revision: first.plus(i64::try_from(offset).unwrap_or(i64::MAX)),
                    create_time: now,
                    update_time: now,
                };
                (note, request)
            })
            .collect();
        let written: Result<(), Error> = async {
            write
                .take_more(u32::try_from(more).unwrap_or(u32::MAX))
                .await?;
            write.insert_many(&notes).await
        }
        .await;
        let changes: Vec<Change> = notes
            .into_iter()
            .map(|(note, _)| Change {
                revision: note.revision,
                event: ChangeEvent::Created(note),
            })
            .collect();
        write.finish(written.map(Decision::Commit)).await?;
        outcome.created = changes.len();
        outcome.revision = changes.last().map(|change| change.revision);
        self.committed(&owner, changes);
        Ok(outcome)
    }
}

/// Creates the note, unless `request` names an earlier create: then its note is the answer
/// (AIP-155), and nothing is written.
async fn create_in<W: NoteWrite>(
    write: &mut W,
    owner: &OwnerId,
    draft: NoteDraft,
    request: Option<CreateRequest>,
) -> Result<Decision<Note>, Error> {
    if let Some(request) = request
        && let Some(earlier) = write.earlier_request(request.request_id).await?
    {
        if earlier.fingerprint != request.fingerprint {
            return Err(Error::RequestIdReused);
        }
        // The note the first attempt created, as it is now; gone if deleted since.
        let note = write
            .note(earlier.note_id)
            .await?
            .ok_or(Error::NoteNotFound)?;
        return Ok(Decision::Discard(note));
    }
    let now = crate::store::now();
    let note = Note {
        id: NoteId::new(),
        owner: owner.clone(),
        title: draft.title,
        content: draft.content,
        tags: draft.tags,
        revision: write.revision(),
        create_time: now,
        update_time: now,
    };
    write.insert(&note, request).await?;
    Ok(Decision::Commit(note))
}

/// Applies `patch` if the note is still at the revision the caller read (its etag).
async fn update_in<W: NoteWrite>(
    write: &mut W,
    id: NoteId,
    expected: Revision,
    patch: NotePatch,
) -> Result<Decision<Note>, Error> {
    let current = write.note(id).await?.ok_or(Error::NoteNotFound)?;
    if current.revision != expected {
        return Err(Error::EtagMismatch);
    }
    let note = Note {
        title: patch.title.unwrap_or(current.title),
        content: patch.content.unwrap_or(current.content),
        tags: patch.tags.unwrap_or(current.tags),
        revision: write.revision(),
        update_time: crate::store::now(),
        ..current
    };
    write.replace(&note).await?;
    Ok(Decision::Commit(note))
}

/// Deletes the note; with `expected`, only if it is still at that revision. A delete is a
/// change too: it takes a revision, so that watchers (and etags) see it.
async fn delete_in<W: NoteWrite>(
    write: &mut W,
    id: NoteId,
    expected: Option<Revision>,
) -> Result<Decision<()>, Error> {
    let current = write.note(id).await?.ok_or(Error::NoteNotFound)?;
    if expected.is_some_and(|expected| expected != current.revision) {
        return Err(Error::EtagMismatch);
    }
    write.remove(id, write.revision()).await?;
    Ok(Decision::Commit(()))
}

/// The owner of everything a call touches: the calling user. Services own no notes.
pub(crate) fn owner(caller: &Principal) -> Result<OwnerId, Error> {
    match caller {
        Principal::User { user_id } => Ok(OwnerId::from_verified_token(user_id.clone())),
        Principal::Service { .. } => Err(Error::UserCredentialRequired),
    }
}
