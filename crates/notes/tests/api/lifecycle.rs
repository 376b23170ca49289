use proto::notes::{DeleteNoteRequest, GetNoteRequest, ListNotesRequest, Note, UpdateNoteRequest};
use tonic::{Code, Request};

use crate::helpers::{assert_error, mask, spawn_notes, with_token};
use database::testing::Backend;

async fn a_note_is_created_read_updated_and_deleted(backend: Backend) {
    let notes = spawn_notes(backend).await;
    let ada = notes.new_user();
    let created = notes.create(&ada, "Groceries", &["home", "todo"]).await;
    assert_eq!(created.owner_id, ada.user_id, "the owner is the caller");
    assert_eq!(created.tags, ["home", "todo"]);
    assert_eq!(created.revision, 1);

    let read = notes
        .client()
        .get_note(ada.request(GetNoteRequest {
            id: created.id.clone(),
        }))
        .await
        .expect("get")
        .into_inner()
        .note
        .expect("note");
    assert_eq!(read, created);

    let updated = notes
        .client()
        .update_note(ada.request(UpdateNoteRequest {
            note: Some(Note {
                title: "Groceries for Sunday".into(),
                content: "ignored: not in the mask".into(),
                ..created.clone()
            }),
            update_mask: mask(&["title"]),
        }))
        .await
        .expect("update")
        .into_inner()
        .note
        .expect("note");
    assert_eq!(updated.title, "Groceries for Sunday");
    assert_eq!(updated.content, created.content);
    assert_eq!(updated.create_time, created.create_time);
    assert!(updated.revision > created.revision);
    assert_ne!(updated.etag, created.etag);

    notes
        .client()
        .delete_note(ada.request(DeleteNoteRequest {
            id: created.id.clone(),
            etag: updated.etag.clone(),
        }))
        .await
        .expect("delete");
    let gone = notes
        .client()
        .get_note(ada.request(GetNoteRequest {
            id: created.id.clone(),
        }))
        .await
        .expect_err("deleted");
    assert_error(&gone, Code::NotFound, "NOTE_NOT_FOUND");
}

async fn an_update_with_a_stale_etag_is_aborted(backend: Backend) {
    let notes = spawn_notes(backend).await;
    let ada = notes.new_user();
    let note = notes.create(&ada, "Draft", &[]).await;
    let update = |title: &str| {
        ada.request(UpdateNoteRequest {
            note: Some(Note {
                title: title.into(),
                ..note.clone()
            }),
            update_mask: mask(&["title"]),
        })
    };
    notes
        .client()
        .update_note(update("First writer"))
        .await
        .expect("first update wins");
    let second = notes
        .client()
        .update_note(update("Second writer"))
        .await
        .expect_err("lost update refused");
    assert_error(&second, Code::Aborted, "ETAG_MISMATCH");
}

async fn an_empty_mask_updates_the_fields_that_are_set(backend: Backend) {
    let notes = spawn_notes(backend).await;
    let ada = notes.new_user();
    let note = notes.create(&ada, "Title", &["a"]).await;
    let updated = notes
        .client()
        .update_note(ada.request(UpdateNoteRequest {
            note: Some(Note {
                id: note.id.clone(),
                etag: note.etag.clone(),
                content: "new content".into(),
                ..Note::default()
            }),
            update_mask: None,
        }))
        .await
        .expect("update")
        .into_inner()
        .note
        .expect("note");
    assert_eq!(updated.title, "Title");
    assert_eq!(updated.content, "new content");
    assert_eq!(updated.tags, ["a"]);
}

async fn a_delete_with_a_stale_etag_is_aborted_and_without_one_deletes(backend: Backend) {
    let notes = spawn_notes(backend).await;
    let ada = notes.new_user();
    let note = notes.create(&ada, "Old", &[]).await;
    let stale = notes
        .client()
        .delete_note(ada.request(DeleteNoteRequest {
            id: note.id.clone(),
            etag: "r999".into(),
        }))
        .await
        .expect_err("stale");
    assert_error(&stale, Code::Aborted, "ETAG_MISMATCH");
    notes
        .client()
        .delete_note(ada.request(DeleteNoteRequest {
            id: note.id.clone(),
            etag: String::new(),
        }))
        .await
        .expect("unconditional delete");
}

async fn another_users_note_is_not_found_for_every_method(backend: Backend) {
    let notes = spawn_notes(backend).await;
    let ada = notes.new_user();
    let mallory = notes.new_user();
    let note = notes.create(&ada, "Private", &["secret"]).await;

    let get = notes
        .client()
        .get_note(mallory.request(GetNoteRequest {
            id: note.id.clone(),
        }))
        .await
        .expect_err("get");
    assert_error(&get, Code::NotFound, "NOTE_NOT_FOUND");
    let update = notes
        .client()
        .update_note(mallory.request(UpdateNoteRequest {
            note: Some(Note {
                title: "pwned".into(),
                ..note.clone()
            }),
            update_mask: mask(&["title"]),
        }))
        .await
        .expect_err("update");
    assert_error(&update, Code::NotFound, "NOTE_NOT_FOUND");
    let delete = notes
        .client()
        .delete_note(mallory.request(DeleteNoteRequest {
            id: note.id.clone(),
            etag: String::new(),
        }))
        .await
        .expect_err("delete");
    assert_error(&delete, Code::NotFound, "NOTE_NOT_FOUND");
    let listed = notes
        .client()
        .list_notes(mallory.request(ListNotesRequest::default()))
        .await
        .expect("list")
        .into_inner();
    assert!(listed.notes.is_empty());
    assert_eq!(listed.total_size, 0);

    // And the note is untouched.
    let still = notes
        .client()
        .get_note(ada.request(GetNoteRequest {
            id: note.id.clone(),
        }))
        .await
        .expect("owner still reads it")
        .into_inner()
        .note
        .expect("note");
    assert_eq!(still, note);
}

async fn calls_without_a_user_token_are_refused(backend: Backend) {
    let notes = spawn_notes(backend).await;
    let missing = notes
        .client()
        .list_notes(Request::new(ListNotesRequest::default()))
        .await
        .expect_err("no token");
    assert_error(&missing, Code::Unauthenticated, "TOKEN_MISSING");

    let forged = notes
        .client()
        .list_notes(with_token(
            ListNotesRequest::default(),
            "eyJhbGciOiJFZERTQSJ9.e30.AAAA",
        ))
        .await
        .expect_err("forged");
    assert_error(&forged, Code::Unauthenticated, "TOKEN_INVALID");

    // A service owns no notes.
    let service = notes
        .client()
        .list_notes(with_token(
            ListNotesRequest::default(),
            &notes.service_token(),
        ))
        .await
        .expect_err("service token");
    assert_error(&service, Code::PermissionDenied, "USER_CREDENTIAL_REQUIRED");
}

async fn revisions_count_every_change_of_an_owner(backend: Backend) {
    let notes = spawn_notes(backend).await;
    let ada = notes.new_user();
    let first = notes.create(&ada, "One", &[]).await;
    let second = notes.create(&ada, "Two", &[]).await;
    notes
        .client()
        .delete_note(ada.request(DeleteNoteRequest {
            id: first.id.clone(),
            etag: String::new(),
        }))
        .await
        .expect("delete");
    let third = notes.create(&ada, "Three", &[]).await;
    assert_eq!((first.revision, second.revision, third.revision), (1, 2, 4));

    // Revisions are per owner.
    let bob = notes.new_user();
    assert_eq!(notes.create(&bob, "Bob's first", &[]).await.revision, 1);
}

database::backend_tests!(
    a_note_is_created_read_updated_and_deleted,
    an_update_with_a_stale_etag_is_aborted,
    an_empty_mask_updates_the_fields_that_are_set,
    a_delete_with_a_stale_etag_is_aborted_and_without_one_deletes,
    another_users_note_is_not_found_for_every_method,
    calls_without_a_user_token_are_refused,
    revisions_count_every_change_of_an_owner,
);
