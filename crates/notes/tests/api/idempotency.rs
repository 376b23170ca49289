use proto::notes::{CreateNoteRequest, DeleteNoteRequest, ListNotesRequest};
use tonic::Code;

use crate::helpers::{assert_error, draft, spawn_notes};
use database::testing::Backend;

const REQUEST_ID: &str = "0f8c2a4e-3b1d-4e5f-9a6b-7c8d9e0f1a2b";

async fn a_retried_create_returns_the_first_note_and_no_duplicate(backend: Backend) {
    let notes = spawn_notes(backend).await;
    let ada = notes.new_user();
    let create = || {
        ada.request(CreateNoteRequest {
            note: Some(draft("Once", "only once", &["x"])),
            request_id: REQUEST_ID.into(),
        })
    };
    let first = notes
        .client()
        .create_note(create())
        .await
        .expect("first")
        .into_inner();
    let retry = notes
        .client()
        .create_note(create())
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(first, retry);
    let listed = notes
        .client()
        .list_notes(ada.request(ListNotesRequest::default()))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.total_size, 1);
}

async fn concurrent_retries_create_one_note(backend: Backend) {
    let notes = spawn_notes(backend).await;
    let ada = notes.new_user();
    let attempts = (0..10).map(|_| {
        let mut client = notes.client();
        let request = ada.request(CreateNoteRequest {
            note: Some(draft("Raced", "", &[])),
            request_id: REQUEST_ID.into(),
        });
        async move { client.create_note(request).await }
    });
    let results = futures_util::future::join_all(attempts).await;
    let ids: std::collections::HashSet<String> = results
        .into_iter()
        .map(|result| {
            result
                .expect("every attempt succeeds")
                .into_inner()
                .note
                .expect("note")
                .id
        })
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
}

async fn the_same_request_id_for_a_different_note_is_refused(backend: Backend) {
    let notes = spawn_notes(backend).await;
    let ada = notes.new_user();
    let create = |title: &str| {
        ada.request(CreateNoteRequest {
            note: Some(draft(title, "", &[])),
            request_id: REQUEST_ID.into(),
        })
    };
    notes
        .client()
        .create_note(create("First"))
        .await
        .expect("first");
    let reused = notes
        .client()
        .create_note(create("Different"))
        .await
        .expect_err("reuse");
    assert_error(&reused, Code::FailedPrecondition, "REQUEST_ID_REUSED");
}

async fn request_ids_belong_to_their_owner(backend: Backend) {
    let notes = spawn_notes(backend).await;
    let ada = notes.new_user();
    let bob = notes.new_user();
    let request = |caller: &crate::helpers::Caller| {
        caller.request(CreateNoteRequest {
            note: Some(draft("Same", "", &[])),
            request_id: REQUEST_ID.into(),
        })
    };
    let adas = notes
        .client()
        .create_note(request(&ada))
        .await
        .expect("ada")
        .into_inner();
    let bobs = notes
        .client()
        .create_note(request(&bob))
        .await
        .expect("bob")
        .into_inner();
    assert_ne!(adas.note.expect("note").id, bobs.note.expect("note").id);
}

async fn a_retry_after_the_note_was_deleted_is_not_found(backend: Backend) {
    let notes = spawn_notes(backend).await;
    let ada = notes.new_user();
    let create = || {
        ada.request(CreateNoteRequest {
            note: Some(draft("Ephemeral", "", &[])),
            request_id: REQUEST_ID.into(),
        })
    };
    let note = notes
        .client()
        .create_note(create())
        .await
        .expect("create")
        .into_inner()
        .note
        .expect("note");
    notes
        .client()
        .delete_note(ada.request(DeleteNoteRequest {
            id: note.id,
            etag: String::new(),
        }))
        .await
        .expect("delete");
    let retry = notes
        .client()
        .create_note(create())
        .await
        .expect_err("deleted since");
    assert_error(&retry, Code::NotFound, "NOTE_NOT_FOUND");
}

database::backend_tests!(
    a_retried_create_returns_the_first_note_and_no_duplicate,
    concurrent_retries_create_one_note,
    the_same_request_id_for_a_different_note_is_refused,
    request_ids_belong_to_their_owner,
    a_retry_after_the_note_was_deleted_is_not_found,
);
