use proto::notes::ListNotesRequest;

use crate::helpers::{bad_fields, spawn_notes};
use database::testing::Backend;

async fn pages_cover_every_note_once_newest_first(backend: Backend) {
    let notes = spawn_notes(backend).await;
    let ada = notes.new_user();
    let mut created = Vec::new();
    for index in 0..7 {
        created.push(notes.create(&ada, &format!("Note {index}"), &[]).await.id);
    }
    created.reverse();

    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = notes
            .client()
            .list_notes(ada.request(ListNotesRequest {
                page_size: 3,
                page_token: page_token.clone(),
                tag: String::new(),
            }))
            .await
            .expect("list")
            .into_inner();
        assert_eq!(page.total_size, 7);
        assert!(page.notes.len() <= 3);
        seen.extend(page.notes.into_iter().map(|note| note.id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(seen, created);
}

async fn pages_stay_stable_when_notes_are_added_meanwhile(backend: Backend) {
    let notes = spawn_notes(backend).await;
    let ada = notes.new_user();
    for index in 0..4 {
        notes.create(&ada, &format!("Old {index}"), &[]).await;
    }
    let first = notes
        .client()
        .list_notes(ada.request(ListNotesRequest {
            page_size: 2,
            ..ListNotesRequest::default()
        }))
        .await
        .expect("first page")
        .into_inner();
    // A note created between pages is newer than the cursor: it shows up on no later page,
    // and no old note is skipped or repeated.
    notes.create(&ada, "New", &[]).await;
    let second = notes
        .client()
        .list_notes(ada.request(ListNotesRequest {
            page_size: 10,
            page_token: first.next_page_token,
            tag: String::new(),
        }))
        .await
        .expect("second page")
        .into_inner();
    let titles: Vec<&str> = first
        .notes
        .iter()
        .chain(&second.notes)
        .map(|note| note.title.as_str())
        .collect();
    assert_eq!(titles, ["Old 3", "Old 2", "Old 1", "Old 0"]);
}

async fn the_tag_filter_lists_only_tagged_notes(backend: Backend) {
    let notes = spawn_notes(backend).await;
    let ada = notes.new_user();
    notes.create(&ada, "Work 1", &["work"]).await;
    notes.create(&ada, "Home", &["home"]).await;
    notes.create(&ada, "Work 2", &["urgent", "work"]).await;
    notes.create(&ada, "Workshop", &["workshop"]).await;
    let listed = notes
        .client()
        .list_notes(ada.request(ListNotesRequest {
            tag: "work".into(),
            ..ListNotesRequest::default()
        }))
        .await
        .expect("list")
        .into_inner();
    let titles: Vec<&str> = listed
        .notes
        .iter()
        .map(|note| note.title.as_str())
        .collect();
    assert_eq!(titles, ["Work 2", "Work 1"]);
    assert_eq!(listed.total_size, 2);
}

async fn a_page_token_cannot_continue_a_listing_with_another_filter(backend: Backend) {
    let notes = spawn_notes(backend).await;
    let ada = notes.new_user();
    for _ in 0..3 {
        notes.create(&ada, "Tagged", &["a"]).await;
    }
    let first = notes
        .client()
        .list_notes(ada.request(ListNotesRequest {
            page_size: 1,
            tag: "a".into(),
            ..ListNotesRequest::default()
        }))
        .await
        .expect("list")
        .into_inner();
    let status = notes
        .client()
        .list_notes(ada.request(ListNotesRequest {
            page_size: 1,
            page_token: first.next_page_token,
            tag: "b".into(),
        }))
        .await
        .expect_err("other filter");
    assert_eq!(bad_fields(&status), ["page_token"]);
}

async fn bad_list_arguments_name_their_fields(backend: Backend) {
    let notes = spawn_notes(backend).await;
    let ada = notes.new_user();
    let status = notes
        .client()
        .list_notes(ada.request(ListNotesRequest {
            page_size: -5,
            page_token: "%%%".into(),
            tag: "Not A Tag".into(),
        }))
        .await
        .expect_err("invalid");
    assert_eq!(bad_fields(&status), ["page_size", "tag", "page_token"]);
}

async fn a_page_token_belongs_to_the_caller_it_was_issued_to(backend: Backend) {
    let notes = spawn_notes(backend).await;
    let ada = notes.new_user();
    let bob = notes.new_user();
    for index in 0..3 {
        notes.create(&ada, &format!("Ada {index}"), &[]).await;
        notes.create(&bob, &format!("Bob {index}"), &[]).await;
    }
    let adas_page = notes
        .client()
        .list_notes(ada.request(ListNotesRequest {
            page_size: 1,
            ..ListNotesRequest::default()
        }))
        .await
        .expect("list")
        .into_inner();
    assert!(!adas_page.next_page_token.is_empty());
    let status = notes
        .client()
        .list_notes(bob.request(ListNotesRequest {
            page_size: 1,
            page_token: adas_page.next_page_token,
            ..ListNotesRequest::default()
        }))
        .await
        .expect_err("another user's page token");
    assert_eq!(bad_fields(&status), ["page_token"]);
}

async fn the_tag_filter_follows_updates_and_deletes(backend: Backend) {
    let notes = spawn_notes(backend).await;
    let ada = notes.new_user();
    let first = notes.create(&ada, "First", &["home", "todo"]).await;
    let second = notes.create(&ada, "Second", &["todo"]).await;
    let retagged = notes
        .client()
        .update_note(ada.request(proto::notes::UpdateNoteRequest {
            note: Some(proto::notes::Note {
                tags: vec!["work".into(), "todo".into()],
                ..first.clone()
            }),
            update_mask: crate::helpers::mask(&["tags"]),
        }))
        .await
        .expect("retag")
        .into_inner()
        .note
        .expect("note");
    let tagged = |tag: &'static str| {
        let mut client = notes.client();
        let request = ada.request(ListNotesRequest {
            tag: tag.into(),
            ..ListNotesRequest::default()
        });
        async move {
            let page = client.list_notes(request).await.expect("list").into_inner();
            let ids: Vec<String> = page.notes.into_iter().map(|note| note.id).collect();
            (ids, page.total_size)
        }
    };
    assert_eq!(
        tagged("home").await,
        (vec![], 0),
        "a removed tag lists nothing"
    );
    assert_eq!(tagged("work").await, (vec![retagged.id.clone()], 1));
    assert_eq!(
        tagged("todo").await,
        (vec![second.id.clone(), retagged.id.clone()], 2),
        "a kept tag keeps the note, newest first"
    );
    notes
        .client()
        .delete_note(ada.request(proto::notes::DeleteNoteRequest {
            id: second.id,
            etag: String::new(),
        }))
        .await
        .expect("delete");
    assert_eq!(
        tagged("todo").await,
        (vec![retagged.id.clone()], 1),
        "a deleted note leaves its tags"
    );
    assert_eq!(tagged("").await, (vec![retagged.id], 1), "and the total");
}

database::backend_tests!(
    the_tag_filter_follows_updates_and_deletes,
    a_page_token_belongs_to_the_caller_it_was_issued_to,
    pages_cover_every_note_once_newest_first,
    pages_stay_stable_when_notes_are_added_meanwhile,
    the_tag_filter_lists_only_tagged_notes,
    a_page_token_cannot_continue_a_listing_with_another_filter,
    bad_list_arguments_name_their_fields,
);
