//! Writers racing for one owner: the database decides who wins, never the luck of timing.

use std::collections::BTreeSet;

use proto::notes::{
    CreateNoteRequest, DeleteNoteRequest, ListNotesRequest, Note, UpdateNoteRequest,
};
use tonic::Code;

use crate::helpers::{assert_error, draft, mask, spawn_notes, spawn_replica};
use database::testing::Backend;
use proto::notes::notes_service_client::NotesServiceClient;
use proto::notes::{ImportNotesRequest, PurgeUserNotesRequest};

async fn concurrent_updates_with_one_etag_make_exactly_one_success(backend: Backend) {
    let notes = spawn_notes(backend).await;
    let ada = notes.new_user();
    let read = notes.create(&ada, "Contended", &[]).await;
    let attempts = (0..8).map(|attempt| {
        let mut client = notes.client();
        let request = ada.request(UpdateNoteRequest {
            note: Some(Note {
                title: format!("Writer {attempt}"),
                ..read.clone()
            }),
            update_mask: mask(&["title"]),
        });
        async move { client.update_note(request).await }
    });
    let results = futures_util::future::join_all(attempts).await;
    let (won, lost): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
    assert_eq!(won.len(), 1, "exactly one writer holds the etag it read");
    assert_eq!(lost.len(), 7);
    for status in lost.into_iter().filter_map(Result::err) {
        assert_error(&status, Code::Aborted, "ETAG_MISMATCH");
    }
}

async fn concurrent_writers_for_one_owner_take_every_revision_once(backend: Backend) {
    let notes = spawn_notes(backend).await;
    let ada = notes.new_user();
    let rounds = 5;
    // 8 writers each create a note, update it and delete it: 3 changes each per round.
    let writers = (0..8).map(|writer| {
        let mut client = notes.client();
        let ada = ada.clone();
        async move {
            let mut revisions = Vec::new();
            for round in 0..rounds {
                let created = client
                    .create_note(ada.request(CreateNoteRequest {
                        note: Some(draft(&format!("w{writer} r{round}"), "", &["race"])),
                        request_id: String::new(),
                    }))
                    .await
                    .expect("create")
                    .into_inner()
                    .note
                    .expect("note");
                revisions.push(created.revision);
                let updated = client
                    .update_note(ada.request(UpdateNoteRequest {
                        note: Some(Note {
                            content: "changed".into(),
                            ..created.clone()
                        }),
                        update_mask: mask(&["content"]),
                    }))
                    .await
                    .expect("update")
                    .into_inner()
                    .note
                    .expect("note");
                revisions.push(updated.revision);
                if round % 2 == 0 {
                    client
                        .delete_note(ada.request(DeleteNoteRequest {
                            id: updated.id,
                            etag: updated.etag,
                        }))
                        .await
                        .expect("delete");
                }
            }
            revisions
        }
    });
    let per_writer = futures_util::future::join_all(writers).await;
    let mut seen = BTreeSet::new();
    for revisions in &per_writer {
        for window in revisions.windows(2) {
            assert!(
                window[0] < window[1],
                "one writer's revisions only grow: {revisions:?}"
            );
        }
        for revision in revisions {
            assert!(seen.insert(*revision), "revision {revision} taken twice");
        }
    }
    // Creates and updates returned their revisions; deletes took the ones in between.
    let deletes = 8 * (0..rounds).filter(|round| round % 2 == 0).count();
    let changes = seen.len() + deletes;
    let next = notes.create(&ada, "After the race", &[]).await;
    assert_eq!(
        next.revision,
        i64::try_from(changes).expect("small") + 1,
        "the owner's revisions are 1..N with no hole"
    );
    let all: BTreeSet<i64> = (1..=next.revision).collect();
    let missing: Vec<&i64> = all.difference(&seen).collect();
    assert_eq!(
        missing.len(),
        deletes + 1,
        "only deletes and the last create are not listed"
    );
}

async fn a_page_of_the_largest_notes_fits_a_default_client(backend: Backend) {
    let notes = spawn_notes(backend).await;
    let ada = notes.new_user();
    let content = "x".repeat(256 * 1024);
    // 20 × 256 KiB is 5 MiB: without the budget, one default page would not fit a client's
    // default 4 MiB receive limit.
    for index in 0..20 {
        notes
            .client()
            .create_note(ada.request(CreateNoteRequest {
                note: Some(draft(&format!("Big {index}"), &content, &["big"])),
                request_id: String::new(),
            }))
            .await
            .expect("create the largest note allowed");
    }
    for tag in ["", "big"] {
        // The client keeps gRPC's default 4 MiB receive limit.
        let mut client = notes.client();
        let mut seen = 0;
        let mut pages = 0;
        let mut page_token = String::new();
        loop {
            let page = client
                .list_notes(ada.request(ListNotesRequest {
                    page_size: 50,
                    page_token: page_token.clone(),
                    tag: tag.into(),
                }))
                .await
                .expect("every page fits the default limit")
                .into_inner();
            let bytes: usize = page.notes.iter().map(|note| note.content.len()).sum();
            assert!(bytes <= 1024 * 1024, "a page stays within 1 MiB: {bytes}");
            assert_eq!(page.total_size, 20);
            seen += page.notes.len();
            pages += 1;
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        assert_eq!(seen, 20, "tag {tag:?}: every note listed once");
        assert!(
            pages >= 3,
            "tag {tag:?}: fewer notes than page_size per page"
        );
    }
}

/// A deleted account's purge racing its writers, on two replicas (PostgreSQL) whose
/// revocation sets lag each other: every write either commits before the purge (and is
/// purged with the rest) or is refused ACCOUNT_DELETED; none survives it.
async fn a_purge_racing_writers_leaves_no_orphan_note(backend: Backend) {
    let notes = spawn_notes(backend).await;
    let replica = match backend {
        Backend::Postgres => Some(spawn_replica(&notes).await),
        Backend::Sqlite => None,
    };
    let replica_client = match &replica {
        Some(replica) => NotesServiceClient::connect(replica.url())
            .await
            .expect("connect"),
        None => notes.client(),
    };
    let ada = notes.new_user();
    let writers = (0..6).map(|writer| {
        let mut client = if writer % 2 == 0 {
            notes.client()
        } else {
            replica_client.clone()
        };
        let ada = ada.clone();
        async move {
            let mut created = 0_u32;
            loop {
                let outcome = client
                    .create_note(ada.request(CreateNoteRequest {
                        note: Some(draft(&format!("w{writer} n{created}"), "", &["race"])),
                        request_id: String::new(),
                    }))
                    .await;
                match outcome {
                    Ok(_) => created += 1,
                    Err(status) => {
                        assert_error(&status, Code::Unauthenticated, "ACCOUNT_DELETED");
                        return created;
                    }
                }
            }
        }
    });
    let purge = async {
        // Let the writers get going first.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        notes
            .client()
            .purge_user_notes(notes.request(PurgeUserNotesRequest {
                user_id: ada.user_id.clone(),
            }))
            .await
            .expect("purge")
            .into_inner()
            .purged_note_count
    };
    let (created, purged) = tokio::join!(futures_util::future::join_all(writers), purge);
    let created: u32 = created.iter().sum();
    assert!(created > 0, "the writers wrote before the purge");
    assert!(
        purged <= i64::from(created) && purged > 0,
        "purged {purged} of {created} created"
    );
    // Nothing was stored after the purge: a second one finds nothing.
    let again = notes
        .client()
        .purge_user_notes(notes.request(PurgeUserNotesRequest {
            user_id: ada.user_id.clone(),
        }))
        .await
        .expect("purge again")
        .into_inner()
        .purged_note_count;
    assert_eq!(again, 0, "a note was stored after the purge: an orphan");
    // A user token cannot purge; a bad id is a field violation.
    let bob = notes.new_user();
    let denied = notes
        .client()
        .purge_user_notes(bob.request(PurgeUserNotesRequest {
            user_id: bob.user_id.clone(),
        }))
        .await
        .expect_err("users cannot purge");
    assert_error(
        &denied,
        Code::PermissionDenied,
        "SERVICE_CREDENTIAL_REQUIRED",
    );
    let invalid = notes
        .client()
        .purge_user_notes(notes.request(PurgeUserNotesRequest {
            user_id: "not-a-uuid".into(),
        }))
        .await
        .expect_err("not a user id");
    assert_error(&invalid, Code::InvalidArgument, "INVALID_FIELDS");
}

/// An account with more notes than one purge statement deletes (chunks of 1,000, each its
/// own transaction): every note, tag, change and request id goes.
async fn a_purge_takes_every_note_of_an_account_larger_than_a_chunk(backend: Backend) {
    let notes = spawn_notes(backend).await;
    let ada = notes.new_user();
    let items: Vec<ImportNotesRequest> = (0..2_500)
        .map(|n| ImportNotesRequest {
            note: Some(draft(&format!("n{n}"), "", &["bulk", "more"])),
            request_id: uuid::Uuid::now_v7().to_string(),
        })
        .collect();
    let summary = notes
        .client()
        .import_notes(ada.request(futures_util::stream::iter(items)))
        .await
        .expect("import")
        .into_inner();
    assert_eq!(summary.created_count, 2_500);
    // The import's batches are counted in the listing's totals (kept by triggers).
    for tag in ["", "bulk", "more"] {
        let listed = notes
            .client()
            .list_notes(ada.request(ListNotesRequest {
                tag: tag.into(),
                page_size: 1,
                ..ListNotesRequest::default()
            }))
            .await
            .expect("list")
            .into_inner();
        assert_eq!(listed.total_size, 2_500, "tag {tag:?}");
    }
    let purge = || {
        let mut client = notes.client();
        let request = notes.request(PurgeUserNotesRequest {
            user_id: ada.user_id.clone(),
        });
        async move { client.purge_user_notes(request).await }
    };
    let purged = purge().await.expect("purge").into_inner().purged_note_count;
    assert_eq!(purged, 2_500);
    assert_eq!(
        purge().await.expect("again").into_inner().purged_note_count,
        0
    );
}

database::backend_tests!(
    a_purge_takes_every_note_of_an_account_larger_than_a_chunk,
    a_purge_racing_writers_leaves_no_orphan_note,
    concurrent_updates_with_one_etag_make_exactly_one_success,
    concurrent_writers_for_one_owner_take_every_revision_once,
    a_page_of_the_largest_notes_fits_a_default_client,
);
