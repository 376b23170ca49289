//! WatchNotes and ImportNotes: every change once, in revision order, replayed and live, on
//! every backend; across replicas and through a lost listener on PostgreSQL.

use std::time::Duration;

use database::PoolConfig;
use database::testing::Backend;
use notes::watch::WatchConfig;
use proto::notes::notes_service_client::NotesServiceClient;
use proto::notes::watch_notes_response::EventType;
use proto::notes::{
    CreateNoteRequest, DeleteNoteRequest, ImportNotesRequest, ListNotesRequest, Note,
    UpdateNoteRequest, WatchNotesRequest, WatchNotesResponse,
};
use tonic::{Code, Streaming};

use crate::helpers::{
    Caller, TestNotes, assert_error, bad_fields, draft, mask, spawn_notes, spawn_notes_watching,
    spawn_replica,
};

const PATIENCE: Duration = Duration::from_secs(20);

async fn watch(notes: &TestNotes, caller: &Caller, after: i64) -> Streaming<WatchNotesResponse> {
    watch_with(&mut notes.client(), caller, after).await
}

async fn watch_with(
    client: &mut NotesServiceClient<tonic::transport::Channel>,
    caller: &Caller,
    after: i64,
) -> Streaming<WatchNotesResponse> {
    client
        .watch_notes(caller.request(WatchNotesRequest {
            after_revision: after,
            start_from_now: false,
        }))
        .await
        .expect("watch")
        .into_inner()
}

/// Reads change events until one with `last` arrives; heartbeats are checked (never ahead
/// of what was delivered) and left out.
async fn changes_through(
    stream: &mut Streaming<WatchNotesResponse>,
    last: i64,
) -> Vec<WatchNotesResponse> {
    let mut changes: Vec<WatchNotesResponse> = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        while changes.last().is_none_or(|change| change.revision < last) {
            let event = stream
                .message()
                .await
                .expect("watch event")
                .expect("stream open");
            if event.r#type() == EventType::Heartbeat {
                let delivered = changes.last().map_or(0, |change| change.revision);
                assert!(event.revision >= delivered, "heartbeat behind delivered");
                continue;
            }
            changes.push(event);
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "revision {last} did not arrive; got {:?}",
            changes.iter().map(|c| c.revision).collect::<Vec<_>>()
        )
    });
    changes
}

fn revisions(changes: &[WatchNotesResponse]) -> Vec<i64> {
    changes.iter().map(|change| change.revision).collect()
}

/// 8 writers for one owner, each creating, updating and deleting notes: 3 changes a round.
async fn write_concurrently(notes: &TestNotes, caller: &Caller, rounds: usize) -> i64 {
    let writers = (0..8).map(|writer| {
        let mut client = notes.client();
        let caller = caller.clone();
        async move {
            for round in 0..rounds {
                let created = client
                    .create_note(caller.request(CreateNoteRequest {
                        note: Some(draft(&format!("w{writer} r{round}"), "", &["race"])),
                        request_id: String::new(),
                    }))
                    .await
                    .expect("create")
                    .into_inner()
                    .note
                    .expect("note");
                let updated = client
                    .update_note(caller.request(UpdateNoteRequest {
                        note: Some(Note {
                            title: "renamed".into(),
                            ..created
                        }),
                        update_mask: mask(&["title"]),
                    }))
                    .await
                    .expect("update")
                    .into_inner()
                    .note
                    .expect("note");
                client
                    .delete_note(caller.request(DeleteNoteRequest {
                        id: updated.id,
                        etag: updated.etag,
                    }))
                    .await
                    .expect("delete");
            }
        }
    });
    futures_util::future::join_all(writers).await;
    (8 * 3 * rounds) as i64
}

async fn a_watcher_sees_every_revision_of_eight_writers_once_in_order(backend: Backend) {
    let notes = spawn_notes(backend).await;
    let ada = notes.new_user();
    let mut from_start = watch(&notes, &ada, 0).await;
    let first = from_start.message().await.expect("event").expect("open");
    assert_eq!(
        first.r#type(),
        EventType::Heartbeat,
        "replay of nothing, then live"
    );
    assert_eq!(first.revision, 0);

    let total = write_concurrently(&notes, &ada, 4).await;
    let changes = changes_through(&mut from_start, total).await;
    assert_eq!(revisions(&changes), (1..=total).collect::<Vec<_>>());
    // Each note: created, updated, deleted, in that order, with what the change left.
    for change in &changes {
        match change.r#type() {
            EventType::Created | EventType::Updated => {
                let note = change.note.as_ref().expect("note with the change");
                assert_eq!(note.id, change.note_id);
                assert_eq!(note.revision, change.revision);
                assert_eq!(note.etag, format!("r{}", change.revision));
            }
            EventType::Deleted => assert!(change.note.is_none() && !change.note_id.is_empty()),
            other => panic!("unexpected event {other:?}"),
        }
    }

    // Started mid-way: the replay from the log, then live, still once each and in order.
    let mut midway = watch(&notes, &ada, total / 2).await;
    let more = write_concurrently(&notes, &ada, 1).await;
    let changes = changes_through(&mut midway, total + more).await;
    assert_eq!(
        revisions(&changes),
        (total / 2 + 1..=total + more).collect::<Vec<_>>()
    );
}

async fn many_watchers_replaying_at_once_each_get_every_change(backend: Backend) {
    let notes = spawn_notes(backend).await;
    let ada = notes.new_user();
    for n in 0..40 {
        notes.create(&ada, &format!("note {n}"), &[]).await;
    }
    // They all miss the ring at once and wait on one another's reads of the log.
    let watchers: Vec<_> = (0..30)
        .map(|_| {
            let (client, ada) = (notes.client(), ada.clone());
            tokio::spawn(async move {
                let mut client = client;
                let mut stream = watch_with(&mut client, &ada, 0).await;
                revisions(&changes_through(&mut stream, 40).await)
            })
        })
        .collect();
    for watcher in watchers {
        let received = watcher.await.expect("watcher");
        assert_eq!(received, (1..=40).collect::<Vec<_>>());
    }
}

async fn list_then_watch_misses_nothing(backend: Backend) {
    let notes = spawn_notes(backend).await;
    let ada = notes.new_user();
    let empty = notes
        .client()
        .list_notes(ada.request(ListNotesRequest::default()))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(empty.revision, 0, "an owner without notes is at revision 0");
    for n in 0..3 {
        notes.create(&ada, &format!("note {n}"), &[]).await;
    }
    let listing = notes
        .client()
        .list_notes(ada.request(ListNotesRequest::default()))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listing.revision, 3);
    let mut stream = watch(&notes, &ada, listing.revision).await;
    let later = notes.create(&ada, "after the listing", &[]).await;
    let changes = changes_through(&mut stream, later.revision).await;
    assert_eq!(revisions(&changes), vec![4]);
    assert_eq!(changes[0].r#type(), EventType::Created);
}

async fn start_from_now_skips_the_past_and_says_where_it_starts(backend: Backend) {
    let notes = spawn_notes(backend).await;
    let ada = notes.new_user();
    notes.create(&ada, "old", &[]).await;
    notes.create(&ada, "older", &[]).await;
    let mut stream = notes
        .client()
        .watch_notes(ada.request(WatchNotesRequest {
            after_revision: 0,
            start_from_now: true,
        }))
        .await
        .expect("watch")
        .into_inner();
    let first = stream.message().await.expect("event").expect("open");
    assert_eq!((first.r#type(), first.revision), (EventType::Heartbeat, 2));
    notes.create(&ada, "new", &[]).await;
    assert_eq!(revisions(&changes_through(&mut stream, 3).await), vec![3]);
}

async fn bad_cursors_are_refused_with_the_field(backend: Backend) {
    let notes = spawn_notes(backend).await;
    let ada = notes.new_user();
    notes.create(&ada, "one", &[]).await;
    for (request, field) in [
        (
            WatchNotesRequest {
                after_revision: -1,
                start_from_now: false,
            },
            "after_revision",
        ),
        (
            WatchNotesRequest {
                after_revision: 2,
                start_from_now: false,
            },
            "after_revision",
        ),
        (
            WatchNotesRequest {
                after_revision: 1,
                start_from_now: true,
            },
            "after_revision",
        ),
    ] {
        let status = notes
            .client()
            .watch_notes(ada.request(request))
            .await
            .expect_err("refused");
        assert_eq!(bad_fields(&status), vec![field.to_owned()]);
    }
}

async fn a_cursor_older_than_the_log_must_list_again(backend: Backend) {
    let notes = spawn_notes_watching(
        backend,
        PoolConfig::default(),
        WatchConfig {
            watch_log_retention: 5,
            ..WatchConfig::default()
        },
    )
    .await;
    let ada = notes.new_user();
    for n in 0..12 {
        notes.create(&ada, &format!("note {n}"), &[]).await;
    }
    let mut stream = watch(&notes, &ada, 3).await;
    let status = stream.message().await.expect_err("expired");
    assert_error(&status, Code::FailedPrecondition, "WATCH_CURSOR_EXPIRED");
    // Within the retained log (the last 5: revisions 8..=12) the replay works.
    let mut stream = watch(&notes, &ada, 7).await;
    assert_eq!(
        revisions(&changes_through(&mut stream, 12).await),
        (8..=12).collect::<Vec<_>>()
    );
}

async fn idle_watchers_get_heartbeats_with_the_current_revision(backend: Backend) {
    let notes = spawn_notes_watching(
        backend,
        PoolConfig::default(),
        WatchConfig {
            watch_heartbeat_interval: Duration::from_millis(100),
            ..WatchConfig::default()
        },
    )
    .await;
    let ada = notes.new_user();
    notes.create(&ada, "one", &[]).await;
    let mut stream = watch(&notes, &ada, 1).await;
    for _ in 0..3 {
        let event = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("a heartbeat in time")
            .expect("event")
            .expect("open");
        assert_eq!((event.r#type(), event.revision), (EventType::Heartbeat, 1));
    }
}

async fn watch_streams_are_limited_per_user(backend: Backend) {
    let notes = spawn_notes_watching(
        backend,
        PoolConfig::default(),
        WatchConfig {
            max_watches_per_user: 2,
            ..WatchConfig::default()
        },
    )
    .await;
    let ada = notes.new_user();
    let _first = watch(&notes, &ada, 0).await;
    let second = watch(&notes, &ada, 0).await;
    let status = notes
        .client()
        .watch_notes(ada.request(WatchNotesRequest::default()))
        .await
        .expect_err("over the limit");
    assert_error(&status, Code::ResourceExhausted, "TOO_MANY_WATCHES");
    // Another user is not affected, and a closed stream frees its place.
    let bob = notes.new_user();
    let _bobs = watch(&notes, &bob, 0).await;
    drop(second);
    tokio::time::timeout(PATIENCE, async {
        loop {
            let attempt = notes
                .client()
                .watch_notes(ada.request(WatchNotesRequest::default()))
                .await;
            if attempt.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the closed stream's place is freed");
}

async fn a_watcher_that_stops_reading_is_told_it_is_too_slow(backend: Backend) {
    let notes = spawn_notes_watching(
        backend,
        PoolConfig::default(),
        WatchConfig {
            watch_stall_timeout: Duration::from_millis(300),
            ..WatchConfig::default()
        },
    )
    .await;
    let ada = notes.new_user();
    let mut stream = watch(&notes, &ada, 0).await;
    // Big notes, far more than the HTTP/2 windows hold: the server must stop and wait.
    let content = "x".repeat(200 * 1024);
    for n in 0..40 {
        notes
            .client()
            .create_note(ada.request(CreateNoteRequest {
                note: Some(draft(&format!("big {n}"), &content, &[])),
                request_id: String::new(),
            }))
            .await
            .expect("create");
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut last = 0;
    let ended = tokio::time::timeout(PATIENCE, async {
        loop {
            match stream.message().await {
                Ok(Some(event)) => {
                    if event.r#type() != EventType::Heartbeat {
                        assert_eq!(event.revision, last + 1, "in order, no gap");
                        last = event.revision;
                    }
                }
                Ok(None) => panic!("ended without a status"),
                Err(status) => return status,
            }
        }
    })
    .await
    .expect("the stream ends");
    assert_error(&ended, Code::ResourceExhausted, "WATCH_TOO_SLOW");
    assert!(last < 40, "ended before catching up (at {last})");
    // Resuming by revision delivers the rest.
    let mut resumed = watch(&notes, &ada, last).await;
    let rest = changes_through(&mut resumed, 40).await;
    assert_eq!(revisions(&rest), (last + 1..=40).collect::<Vec<_>>());
}

fn import_item(title: &str, request_id: &str) -> ImportNotesRequest {
    ImportNotesRequest {
        note: Some(draft(title, "imported", &["import"])),
        request_id: request_id.into(),
    }
}

async fn an_import_reports_each_bad_item_and_a_retry_creates_nothing_twice(backend: Backend) {
    let notes = spawn_notes(backend).await;
    let ada = notes.new_user();
    let mut stream = watch(&notes, &ada, 0).await;
    let ids: Vec<String> = (0..600).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let items = move || {
        let mut items: Vec<ImportNotesRequest> = ids
            .iter()
            .enumerate()
            .map(|(n, id)| import_item(&format!("item {n}"), id))
            .collect();
        items[7].note.as_mut().expect("note").title = String::new();
        items[300].note.as_mut().expect("note").tags = vec!["Not A Tag".into()];
        items[301].request_id = "not-a-uuid".into();
        // The same request_id again for the same note within one import: already present.
        items.push(items[10].clone());
        items
    };
    let summary = notes
        .client()
        .import_notes(ada.request(futures_util::stream::iter(items())))
        .await
        .expect("import")
        .into_inner();
    assert_eq!(summary.created_count, 597);
    assert_eq!(summary.already_present_count, 1);
    assert_eq!(summary.error_count, 3);
    let bad: Vec<(i32, Vec<String>)> = summary
        .errors
        .iter()
        .map(|error| {
            assert_eq!(error.code, Code::InvalidArgument as i32);
            assert_eq!(error.reason, "INVALID_FIELDS");
            (
                error.index,
                error
                    .field_violations
                    .iter()
                    .map(|violation| violation.field.clone())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        bad,
        vec![
            (7, vec!["note.title".to_owned()]),
            (300, vec!["note.tags[0]".to_owned()]),
            (301, vec!["request_id".to_owned()]),
        ]
    );
    assert_eq!(summary.revision, 597);

    // Retried whole: nothing new.
    let retried = notes
        .client()
        .import_notes(ada.request(futures_util::stream::iter(items())))
        .await
        .expect("import again")
        .into_inner();
    assert_eq!(
        (retried.created_count, retried.already_present_count),
        (0, 598)
    );
    let listing = notes
        .client()
        .list_notes(ada.request(ListNotesRequest {
            page_size: 1,
            ..ListNotesRequest::default()
        }))
        .await
        .expect("list")
        .into_inner();
    assert_eq!((listing.total_size, listing.revision), (597, 597));
    // Every imported note is in the change log, in stream order.
    let changes = changes_through(&mut stream, 597).await;
    assert_eq!(revisions(&changes), (1..=597).collect::<Vec<_>>());
    let titles: Vec<String> = changes
        .iter()
        .map(|change| change.note.as_ref().expect("note").title.clone())
        .collect();
    assert_eq!(titles[0], "item 0");
    assert_eq!(titles[7], "item 8", "item 7 was refused");
}

async fn imported_notes_keep_their_tags_in_listings_and_the_log(backend: Backend) {
    let notes = spawn_notes(backend).await;
    let ada = notes.new_user();
    let items: Vec<ImportNotesRequest> = (0..600)
        .map(|n| {
            let tags: &[&str] = match n % 3 {
                0 => &[],
                1 => &["odd-one"],
                _ => &["two", "tags"],
            };
            ImportNotesRequest {
                note: Some(draft(&format!("note {n}"), "imported", tags)),
                request_id: String::new(),
            }
        })
        .collect();
    let summary = notes
        .client()
        .import_notes(ada.request(tokio_stream::iter(items)))
        .await
        .expect("import")
        .into_inner();
    assert_eq!(summary.created_count, 600);
    for (tag, expected) in [("odd-one", 200), ("two", 200), ("tags", 200)] {
        let mut tagged = 0;
        let mut page_token = String::new();
        loop {
            let page = notes
                .client()
                .list_notes(ada.request(ListNotesRequest {
                    page_size: 100,
                    page_token,
                    tag: tag.into(),
                }))
                .await
                .expect("list")
                .into_inner();
            assert!(
                page.notes
                    .iter()
                    .all(|note| note.tags.iter().any(|t| t == tag))
            );
            tagged += page.notes.len();
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        assert_eq!(tagged, expected, "{tag}");
    }
    let mut stream = watch(&notes, &ada, 0).await;
    let changes = changes_through(&mut stream, 600).await;
    assert_eq!(revisions(&changes), (1..=600).collect::<Vec<_>>());
    let third = changes[2].note.as_ref().expect("note");
    assert_eq!(
        (third.title.as_str(), third.tags.clone()),
        ("note 2", vec!["two".to_owned(), "tags".to_owned()])
    );
}

async fn a_request_id_reused_for_another_note_is_that_items_error(backend: Backend) {
    let notes = spawn_notes(backend).await;
    let ada = notes.new_user();
    let id = uuid::Uuid::now_v7().to_string();
    let summary = notes
        .client()
        .import_notes(ada.request(futures_util::stream::iter(vec![
            import_item("first", &id),
            import_item("different", &id),
        ])))
        .await
        .expect("import")
        .into_inner();
    assert_eq!(summary.created_count, 1);
    assert_eq!(summary.errors.len(), 1);
    assert_eq!(
        (summary.errors[0].index, summary.errors[0].reason.as_str()),
        (1, "REQUEST_ID_REUSED")
    );
    assert_eq!(summary.errors[0].code, Code::FailedPrecondition as i32);
}

database::backend_tests!(
    a_watcher_sees_every_revision_of_eight_writers_once_in_order,
    many_watchers_replaying_at_once_each_get_every_change,
    list_then_watch_misses_nothing,
    start_from_now_skips_the_past_and_says_where_it_starts,
    bad_cursors_are_refused_with_the_field,
    a_cursor_older_than_the_log_must_list_again,
    idle_watchers_get_heartbeats_with_the_current_revision,
    watch_streams_are_limited_per_user,
    a_watcher_that_stops_reading_is_told_it_is_too_slow,
    an_import_reports_each_bad_item_and_a_retry_creates_nothing_twice,
    a_request_id_reused_for_another_note_is_that_items_error,
    imported_notes_keep_their_tags_in_listings_and_the_log,
);

/// Two replicas on one PostgreSQL database: a write through the first reaches a watcher on
/// the second, and still does, in order and once, across a killed listener connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_changes_reach_watchers_on_every_replica_through_a_lost_listener() {
    let notes = spawn_notes(Backend::Postgres).await;
    let replica = spawn_replica(&notes).await;
    let mut on_replica = NotesServiceClient::connect(replica.url())
        .await
        .expect("connect");
    let ada = notes.new_user();
    let mut stream = watch_with(&mut on_replica, &ada, 0).await;
    let first = stream.message().await.expect("event").expect("open");
    assert_eq!(first.r#type(), EventType::Heartbeat);
    let started = std::time::Instant::now();
    notes.create(&ada, "through the first", &[]).await;
    assert_eq!(revisions(&changes_through(&mut stream, 1).await), vec![1]);
    tracing::info!(elapsed = ?started.elapsed(), "cross-replica delivery");

    // Cut every listener's connection to this database, and write meanwhile.
    let mut admin = sqlx::PgConnection::connect(notes.database.url())
        .await
        .expect("admin");
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
    )
    .fetch_all(&mut admin)
    .await
    .expect("terminate listeners");
    assert!(!killed.is_empty(), "found the listeners' connections");
    for n in 0..10 {
        notes.create(&ada, &format!("while cut off {n}"), &[]).await;
    }
    let changes = changes_through(&mut stream, 11).await;
    assert_eq!(revisions(&changes), (1..=11).skip(1).collect::<Vec<_>>());
}

use sqlx::Connection as _;
