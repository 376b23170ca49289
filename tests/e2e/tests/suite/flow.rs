use database::testing::Backend;
use e2e::{assert_error, spawn_suite};
use proto::gateway::GetProfileRequest;
use proto::notes::{
    CreateNoteRequest, DeleteNoteRequest, GetNoteRequest, ListNotesRequest, Note, UpdateNoteRequest,
};
use proto::users::{GetUserRequest, UpdateUserRequest, User};
use tonic::Code;

fn draft(title: &str, tags: &[&str]) -> Option<Note> {
    Some(Note {
        title: title.into(),
        content: format!("content of {title}"),
        tags: tags.iter().map(|tag| tag.to_string()).collect(),
        ..Note::default()
    })
}

async fn a_user_signs_up_logs_in_and_works_with_notes_through_the_gateway(backend: Backend) {
    let suite = spawn_suite(backend).await;
    let ada = suite.sign_up().await;
    let token = suite
        .login(&ada.email.to_uppercase(), &ada.password)
        .await
        .expect("login");
    let ada = e2e::User { token, ..ada };
    let mut notes = suite.notes();

    let mut created = Vec::new();
    for index in 0..5 {
        let tags: &[&str] = if index % 2 == 0 { &["even"] } else { &[] };
        let note = notes
            .create_note(ada.request(CreateNoteRequest {
                note: draft(&format!("Note {index}"), tags),
                request_id: String::new(),
            }))
            .await
            .expect("create")
            .into_inner()
            .note
            .expect("note");
        created.push(note);
    }

    // Paging: every note once, newest first.
    let mut listed = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = notes
            .list_notes(ada.request(ListNotesRequest {
                page_size: 2,
                page_token,
                tag: String::new(),
            }))
            .await
            .expect("list")
            .into_inner();
        listed.extend(page.notes.into_iter().map(|note| note.id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let newest_first: Vec<String> = created.iter().rev().map(|note| note.id.clone()).collect();
    assert_eq!(listed, newest_first);

    let first = &created[0];
    let read = notes
        .get_note(ada.request(GetNoteRequest {
            id: first.id.clone(),
        }))
        .await
        .expect("get")
        .into_inner()
        .note
        .expect("note");
    assert_eq!(&read, first);

    let updated = notes
        .update_note(ada.request(UpdateNoteRequest {
            note: Some(Note {
                title: "Renamed".into(),
                ..read.clone()
            }),
            update_mask: Some(prost_types_mask(&["title"])),
        }))
        .await
        .expect("update")
        .into_inner()
        .note
        .expect("note");
    assert_eq!(updated.title, "Renamed");

    let conflict = notes
        .update_note(ada.request(UpdateNoteRequest {
            note: Some(Note {
                title: "Lost update".into(),
                ..read.clone()
            }),
            update_mask: Some(prost_types_mask(&["title"])),
        }))
        .await
        .expect_err("stale etag");
    assert_error(&conflict, Code::Aborted, "ETAG_MISMATCH");

    notes
        .delete_note(ada.request(DeleteNoteRequest {
            id: first.id.clone(),
            etag: updated.etag.clone(),
        }))
        .await
        .expect("delete");
    let gone = notes
        .get_note(ada.request(GetNoteRequest {
            id: first.id.clone(),
        }))
        .await
        .expect_err("deleted");
    assert_error(&gone, Code::NotFound, "NOTE_NOT_FOUND");
}

async fn a_second_user_cannot_see_or_touch_the_first_users_notes(backend: Backend) {
    let suite = spawn_suite(backend).await;
    let ada = suite.sign_up().await;
    let bob = suite.sign_up().await;
    let mut notes = suite.notes();
    let note = notes
        .create_note(ada.request(CreateNoteRequest {
            note: draft("Ada's secret", &["private"]),
            request_id: String::new(),
        }))
        .await
        .expect("create")
        .into_inner()
        .note
        .expect("note");

    let get = notes
        .get_note(bob.request(GetNoteRequest {
            id: note.id.clone(),
        }))
        .await
        .expect_err("not bob's");
    assert_error(&get, Code::NotFound, "NOTE_NOT_FOUND");
    let delete = notes
        .delete_note(bob.request(DeleteNoteRequest {
            id: note.id.clone(),
            etag: String::new(),
        }))
        .await
        .expect_err("not bob's");
    assert_error(&delete, Code::NotFound, "NOTE_NOT_FOUND");
    let bobs_list = notes
        .list_notes(bob.request(ListNotesRequest::default()))
        .await
        .expect("list")
        .into_inner();
    assert!(bobs_list.notes.is_empty());

    // Nor Ada's account.
    let account = suite
        .users()
        .get_user(bob.request(GetUserRequest { id: ada.id.clone() }))
        .await
        .expect_err("not bob's");
    assert_error(&account, Code::NotFound, "USER_NOT_FOUND");
}

async fn a_user_manages_their_own_account_through_the_gateway(backend: Backend) {
    let suite = spawn_suite(backend).await;
    let ada = suite.sign_up().await;
    let mut users = suite.users();
    let account = users
        .get_user(ada.request(GetUserRequest { id: ada.id.clone() }))
        .await
        .expect("own account")
        .into_inner()
        .user
        .expect("user");
    let renamed = users
        .update_user(ada.request(UpdateUserRequest {
            user: Some(User {
                display_name: "Countess of Lovelace".into(),
                ..account
            }),
            update_mask: Some(prost_types_mask(&["display_name"])),
        }))
        .await
        .expect("rename")
        .into_inner()
        .user
        .expect("user");
    assert_eq!(renamed.display_name, "Countess of Lovelace");
}

async fn the_profile_gathers_the_account_the_count_and_recent_notes(backend: Backend) {
    let suite = spawn_suite(backend).await;
    let ada = suite.sign_up().await;
    let mut notes = suite.notes();
    for index in 0..7 {
        notes
            .create_note(ada.request(CreateNoteRequest {
                note: draft(&format!("Note {index}"), &[]),
                request_id: String::new(),
            }))
            .await
            .expect("create");
    }
    let profile = suite
        .gateway()
        .get_profile(ada.request(GetProfileRequest {
            recent_notes_limit: 3,
        }))
        .await
        .expect("profile")
        .into_inner();
    assert_eq!(profile.user.expect("user").id, ada.id);
    assert_eq!(profile.note_count, 7);
    let titles: Vec<&str> = profile
        .recent_notes
        .iter()
        .map(|note| note.title.as_str())
        .collect();
    assert_eq!(titles, ["Note 6", "Note 5", "Note 4"]);

    let default_limit = suite
        .gateway()
        .get_profile(ada.request(GetProfileRequest::default()))
        .await
        .expect("profile")
        .into_inner();
    assert_eq!(default_limit.recent_notes.len(), 5);

    let too_many = suite
        .gateway()
        .get_profile(ada.request(GetProfileRequest {
            recent_notes_limit: 51,
        }))
        .await
        .expect_err("over the limit");
    assert_error(&too_many, Code::InvalidArgument, "INVALID_FIELDS");
}

fn prost_types_mask(paths: &[&str]) -> prost_types::FieldMask {
    prost_types::FieldMask {
        paths: paths.iter().map(|path| path.to_string()).collect(),
    }
}

database::backend_tests!(
    a_user_signs_up_logs_in_and_works_with_notes_through_the_gateway,
    a_second_user_cannot_see_or_touch_the_first_users_notes,
    a_user_manages_their_own_account_through_the_gateway,
    the_profile_gathers_the_account_the_count_and_recent_notes,
);
