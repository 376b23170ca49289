//! The notes service's rules: notes belong to the caller, and only to the caller.

use token::Principal;

use crate::domain::{Note, NoteDraft, NoteId, NotePatch, OwnerId, RequestId, Revision, Tag};
use crate::error::Error;
use crate::store::{CreateRequest, NoteStore};

#[derive(Debug)]
pub struct Notes<S> {
    store: S,
}

/// One page of a listing.
#[derive(Debug)]
pub struct NotePage {
    pub notes: Vec<Note>,
    /// Whether more notes follow the last one of this page.
    pub more: bool,
    pub total: u64,
}

impl<S: NoteStore> Notes<S> {
    pub fn new(store: S) -> Self {
        Self { store }
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
        let note = self
            .store
            .create(&owner, &draft, request, crate::store::now())
            .await?;
        tracing::debug!(note_id = %note.id, revision = note.revision.get(), "note created");
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
        // One extra row says whether another page exists.
        let (mut notes, total) = tokio::try_join!(
            self.store.list(&owner, tag.as_ref(), before, page_size + 1),
            self.store.count(&owner, tag.as_ref()),
        )?;
        let more = notes.len() > page_size as usize;
        notes.truncate(page_size as usize);
        Ok(NotePage { notes, more, total })
    }

    pub async fn update(
        &self,
        caller: &Principal,
        id: NoteId,
        expected: Revision,
        patch: NotePatch,
    ) -> Result<Note, Error> {
        let owner = owner(caller)?;
        self.store
            .update(&owner, id, expected, &patch, crate::store::now())
            .await
    }

    pub async fn delete(
        &self,
        caller: &Principal,
        id: NoteId,
        expected: Option<Revision>,
    ) -> Result<(), Error> {
        let owner = owner(caller)?;
        self.store.delete(&owner, id, expected).await
    }
}

/// The owner of everything a call touches: the calling user. Services own no notes.
fn owner(caller: &Principal) -> Result<OwnerId, Error> {
    match caller {
        Principal::User { user_id } => Ok(OwnerId::from_verified_token(user_id.clone())),
        Principal::Service { .. } => Err(Error::UserCredentialRequired),
    }
}
