use proto::notes::{CreateNoteRequest, GetNoteRequest, Note, UpdateNoteRequest};
use tonic::Code;

// Validation happens before any storage: one backend is enough.
use database::testing::Backend;

use crate::helpers::{bad_fields, draft, mask, spawn_notes};

async fn create_error(note: Note, request_id: &str) -> Vec<String> {
    let notes = spawn_notes(Backend::Sqlite).await;
    let ada = notes.new_user();
    let status = notes
        .client()
        .create_note(ada.request(CreateNoteRequest {
            note: Some(note),
            request_id: request_id.into(),
        }))
        .await
        .expect_err("invalid");
    bad_fields(&status)
}

#[tokio::test]
async fn every_bad_field_of_a_create_is_named() {
    let tags = &["ok", "UPPER", "ok", "", "x".repeat(33).leak() as &str];
    let fields = create_error(draft("   ", "fine", tags), "not-a-uuid").await;
    assert_eq!(
        fields,
        [
            "note.title",
            "note.tags[1]",
            "note.tags[2]",
            "note.tags[3]",
            "note.tags[4]",
            "request_id"
        ]
    );
}

#[tokio::test]
async fn a_title_longer_than_200_characters_is_refused() {
    let fields = create_error(draft(&"t".repeat(201), "", &[]), "").await;
    assert_eq!(fields, ["note.title"]);
}

#[tokio::test]
async fn content_over_256_kib_is_refused_with_a_field_violation() {
    let fields = create_error(draft("Big", &"x".repeat(256 * 1024 + 1), &[]), "").await;
    assert_eq!(fields, ["note.content"]);
}

#[tokio::test]
async fn more_than_20_tags_are_refused() {
    let tags: Vec<String> = (0..21).map(|index| format!("t{index}")).collect();
    let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
    let fields = create_error(draft("Many tags", "", &tags), "").await;
    assert_eq!(fields, ["note.tags"]);
}

#[tokio::test]
async fn a_message_over_the_size_limit_is_resource_exhausted() {
    let notes = spawn_notes(Backend::Sqlite).await;
    let ada = notes.new_user();
    let status = notes
        .client()
        .create_note(ada.request(CreateNoteRequest {
            note: Some(draft("Huge", &"x".repeat(2 * 1024 * 1024), &[])),
            request_id: String::new(),
        }))
        .await
        .expect_err("too large");
    crate::helpers::assert_error(&status, Code::ResourceExhausted, "MESSAGE_TOO_LARGE");
}

#[tokio::test]
async fn a_missing_note_and_a_bad_id_are_invalid_arguments() {
    let notes = spawn_notes(Backend::Sqlite).await;
    let ada = notes.new_user();
    let missing = notes
        .client()
        .create_note(ada.request(CreateNoteRequest::default()))
        .await
        .expect_err("no note");
    assert_eq!(bad_fields(&missing), ["note"]);
    let bad_id = notes
        .client()
        .get_note(ada.request(GetNoteRequest { id: "42".into() }))
        .await
        .expect_err("bad id");
    assert_eq!(bad_fields(&bad_id), ["id"]);
}

#[tokio::test]
async fn update_names_bad_mask_paths_a_missing_etag_and_bad_values() {
    let notes = spawn_notes(Backend::Sqlite).await;
    let ada = notes.new_user();
    let note = notes.create(&ada, "Fine", &[]).await;
    let status = notes
        .client()
        .update_note(ada.request(UpdateNoteRequest {
            note: Some(Note {
                etag: String::new(),
                title: String::new(),
                ..note
            }),
            update_mask: mask(&["title", "colour", "owner_id"]),
        }))
        .await
        .expect_err("invalid");
    assert_eq!(
        bad_fields(&status),
        [
            "note.etag",
            "update_mask.paths[1]",
            "update_mask.paths[2]",
            "note.title"
        ]
    );
}
