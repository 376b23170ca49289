//! Fuzz targets and properties for the notes API's edge: every request type, as a client
//! could send its bytes, decoded and handed to its handler over a real (SQLite) store. They
//! run as ordinary tests (the committed corpus, then random inputs for a second) and under
//! libFuzzer with `cargo bolero test` (docs/fuzzing.md).

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use bolero::check;
use futures_util::StreamExt as _;
use proto::notes::notes_service_server::NotesService as _;
use shell::testing::decode_stable;
use tonic::{Code, Request, Status};

use super::*;
use crate::store::SqliteNoteStore;
use crate::watch::{ChangeHub, WatchConfig};

/// A notes service over a SQLite database of its own, with a runtime to call it on. One per
/// test thread: opening the database (migrations) costs more than thousands of calls.
struct Harness {
    runtime: tokio::runtime::Runtime,
    grpc: NotesGrpc<SqliteNoteStore>,
    callers: Cell<u64>,
    _directory: tempfile::TempDir,
}

impl Harness {
    fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the fuzz harness");
        let directory = tempfile::tempdir().expect("a directory for the fuzz database");
        let url = format!("sqlite://{}", directory.path().join("notes.db").display());
        let grpc = runtime.block_on(async {
            let store = SqliteNoteStore::open(&url, &database::PoolConfig::default())
                .await
                .expect("open the fuzz database");
            let hub = ChangeHub::new(64, 64);
            let revocations = token::Revocations::new();
            let watches = Watches {
                hub: hub.clone(),
                config: Arc::new(WatchConfig::default()),
                revocations: revocations.clone(),
                _feed: Arc::new(tokio_util::sync::CancellationToken::new().drop_guard()),
                _revocation_refresh: Arc::new(token::revocations::spawn_refresh(
                    revocations.clone(),
                    |_, _| async { Ok(Vec::new()) },
                )),
            };
            NotesGrpc::new(Notes::new(store, hub, revocations), watches)
        });
        Self {
            runtime,
            grpc,
            callers: Cell::new(0),
            _directory: directory,
        }
    }

    /// A caller no earlier call used: their revisions start at zero.
    fn fresh_caller(&self) -> Principal {
        let next = self.callers.get() + 1;
        self.callers.set(next);
        Principal::User {
            user_id: format!("00000000-0000-7000-8000-{next:012x}"),
        }
    }
}

thread_local! {
    static HARNESS: Harness = Harness::new();
}

fn as_caller<T>(message: T, caller: &Principal) -> Request<T> {
    let mut request = Request::new(message);
    request.extensions_mut().insert(caller.clone());
    request
}

/// What a notes call may answer besides INVALID_ARGUMENT (PERMISSION_DENIED: a user calling
/// PurgeUserNotes, the gateway's alone).
const ALLOWED: &[Code] = &[
    Code::NotFound,
    Code::Aborted,
    Code::FailedPrecondition,
    Code::OutOfRange,
    Code::PermissionDenied,
];

fn check_status(status: &Status, fields: &[&str]) {
    shell::testing::check_fuzzed_status(status, fields, ALLOWED);
}

const CREATE_FIELDS: &[&str] = &[
    "note",
    "note.title",
    "note.content",
    "note.tags",
    "request_id",
];

/// Every request type of NotesService: the first byte picks the method, the rest is the
/// message as it would arrive in a gRPC frame.
#[test]
fn notes_requests() {
    check!().for_each(|input: &[u8]| {
        let Some((&method, message)) = input.split_first() else {
            return;
        };
        HARNESS.with(|harness| {
            let caller = harness.fresh_caller();
            let grpc = &harness.grpc;
            harness.runtime.block_on(async {
                let outcome = match method % 8 {
                    0 => match decode_stable::<CreateNoteRequest>(message) {
                        Some(request) => grpc
                            .create_note(as_caller(request, &caller))
                            .await
                            .map(drop)
                            .map_err(|status| (status, CREATE_FIELDS)),
                        None => return,
                    },
                    1 => match decode_stable::<GetNoteRequest>(message) {
                        Some(request) => grpc
                            .get_note(as_caller(request, &caller))
                            .await
                            .map(drop)
                            .map_err(|status| (status, &["id"][..])),
                        None => return,
                    },
                    2 => match decode_stable::<ListNotesRequest>(message) {
                        Some(request) => grpc
                            .list_notes(as_caller(request, &caller))
                            .await
                            .map(drop)
                            .map_err(|status| (status, &["page_size", "tag", "page_token"][..])),
                        None => return,
                    },
                    3 => match decode_stable::<UpdateNoteRequest>(message) {
                        Some(request) => grpc
                            .update_note(as_caller(request, &caller))
                            .await
                            .map(drop)
                            .map_err(|status| {
                                (
                                    status,
                                    &[
                                        "note",
                                        "note.id",
                                        "note.etag",
                                        "note.title",
                                        "note.content",
                                        "note.tags",
                                        "update_mask",
                                        "update_mask.paths",
                                    ][..],
                                )
                            }),
                        None => return,
                    },
                    4 => match decode_stable::<DeleteNoteRequest>(message) {
                        Some(request) => grpc
                            .delete_note(as_caller(request, &caller))
                            .await
                            .map(drop)
                            .map_err(|status| (status, &["id", "etag"][..])),
                        None => return,
                    },
                    5 => match decode_stable::<WatchNotesRequest>(message) {
                        // A stream that opens is dropped at once: its first events are the
                        // replay, which the revision-order property checks.
                        Some(request) => grpc
                            .watch_notes(as_caller(request, &caller))
                            .await
                            .map(drop)
                            .map_err(|status| (status, &["after_revision"][..])),
                        None => return,
                    },
                    6 => match decode_stable::<PurgeUserNotesRequest>(message) {
                        Some(request) => grpc
                            .purge_user_notes(as_caller(request, &caller))
                            .await
                            .map(drop)
                            .map_err(|status| (status, &["user_id"][..])),
                        None => return,
                    },
                    // ImportNotes items go through the same parser one by one; a bad one is
                    // an item error in the summary, carried as this Status.
                    _ => match decode_stable::<ImportNotesRequest>(message) {
                        Some(ImportNotesRequest { note, request_id }) => {
                            parse_create(note, &request_id)
                                .map(drop)
                                .map_err(|error| (Status::from(error), CREATE_FIELDS))
                        }
                        None => return,
                    },
                };
                if let Err((status, fields)) = outcome {
                    check_status(&status, fields);
                }
            });
        });
    });
}

/// One change a client asks for, by the position of the note it touches.
#[derive(Debug, bolero::TypeGenerator)]
enum Change {
    Create { title: String, tagged: bool },
    Update { note: u8, title: String },
    Delete { note: u8 },
}

/// Revisions are per owner, contiguous and in commit order: every accepted change moves the
/// owner's revision on by exactly one, a note's etag names the revision of its last change,
/// the listing reports the last one, and a watch from zero replays every change in order with
/// no gap and no duplicate.
#[test]
fn revisions_are_contiguous_and_replay_in_order() {
    check!().with_type::<Vec<Change>>().for_each(|changes| {
        HARNESS.with(|harness| {
            let caller = harness.fresh_caller();
            harness
                .runtime
                .block_on(apply_and_check(&harness.grpc, &caller, changes));
        });
    });
}

async fn apply_and_check(
    grpc: &NotesGrpc<SqliteNoteStore>,
    caller: &Principal,
    changes: &[Change],
) {
    let mut notes: Vec<proto::notes::Note> = Vec::new();
    let mut revision = 0;
    for change in changes.iter().take(16) {
        match change {
            Change::Create { title, tagged } => {
                let request = CreateNoteRequest {
                    note: Some(proto::notes::Note {
                        title: title.clone(),
                        tags: if *tagged { vec!["work".into()] } else { vec![] },
                        ..Default::default()
                    }),
                    request_id: String::new(),
                };
                match grpc.create_note(as_caller(request, caller)).await {
                    Ok(response) => {
                        let note = response.into_inner().note.expect("a created note");
                        advance(&mut revision, &note);
                        notes.push(note);
                    }
                    Err(status) => check_status(&status, CREATE_FIELDS),
                }
            }
            Change::Update { note, title } => {
                let Some(position) = pick(*note, notes.len()) else {
                    continue;
                };
                let request = UpdateNoteRequest {
                    note: Some(proto::notes::Note {
                        id: notes[position].id.clone(),
                        etag: notes[position].etag.clone(),
                        title: title.clone(),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["title".into()],
                    }),
                };
                match grpc.update_note(as_caller(request, caller)).await {
                    Ok(response) => {
                        let note = response.into_inner().note.expect("an updated note");
                        advance(&mut revision, &note);
                        notes[position] = note;
                    }
                    Err(status) => check_status(&status, &["note.title"]),
                }
            }
            Change::Delete { note } => {
                let Some(position) = pick(*note, notes.len()) else {
                    continue;
                };
                let gone = notes.remove(position);
                let request = DeleteNoteRequest {
                    id: gone.id,
                    etag: gone.etag,
                };
                grpc.delete_note(as_caller(request, caller))
                    .await
                    .expect("delete with the current etag");
                // A delete answers no revision: the listing and the replay below check it.
                revision += 1;
            }
        }
    }
    let listed = grpc
        .list_notes(as_caller(ListNotesRequest::default(), caller))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(
        listed.revision, revision,
        "the listing's revision is the last change's"
    );
    assert_eq!(listed.notes.len(), notes.len());

    let mut events = grpc
        .watch_notes(as_caller(WatchNotesRequest::default(), caller))
        .await
        .expect("watch")
        .into_inner();
    let mut replayed = 0;
    while replayed < revision {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("the replay arrives")
            .expect("the stream stays open")
            .expect("an event");
        if event.r#type == i32::from(EventType::Heartbeat) {
            continue;
        }
        replayed += 1;
        assert_eq!(
            event.revision, replayed,
            "replayed in order, no gap, no duplicate"
        );
    }
}

/// A change was accepted: it took the owner's next revision, which its etag names.
fn advance(revision: &mut i64, note: &proto::notes::Note) {
    *revision += 1;
    assert_eq!(
        note.revision, *revision,
        "revisions move on by one per change"
    );
    assert_eq!(
        Revision::parse_etag(&note.etag).map(Revision::get),
        Ok(*revision),
        "the etag names the revision"
    );
}

fn pick(choice: u8, count: usize) -> Option<usize> {
    (count > 0).then(|| usize::from(choice) % count)
}

/// An etag a client sends is either refused or names a revision whose own etag reads back as
/// the same revision.
#[test]
fn note_etag_parse() {
    check!().with_type::<String>().for_each(|etag| {
        if let Ok(revision) = Revision::parse_etag(etag) {
            assert!(revision > Revision::ZERO);
            assert_eq!(Revision::parse_etag(&revision.etag()), Ok(revision));
        }
    });
}

/// Every revision a note can have (from 1) round-trips through its etag, and etags keep the
/// order of revisions: a later change never reads back as an earlier one.
#[test]
fn note_etag_round_trip_keeps_revision_order() {
    check!()
        .with_type::<(i64, i64)>()
        .for_each(|&(first, second)| {
            let (first, second) = (Revision::from_stored(first), Revision::from_stored(second));
            for revision in [first, second] {
                let parsed = Revision::parse_etag(&revision.etag());
                if revision > Revision::ZERO {
                    assert_eq!(parsed, Ok(revision));
                } else {
                    assert!(parsed.is_err(), "{revision:?} is no note's revision");
                }
            }
            if let (Ok(first_read), Ok(second_read)) = (
                Revision::parse_etag(&first.etag()),
                Revision::parse_etag(&second.etag()),
            ) {
                assert_eq!(first_read.cmp(&second_read), first.cmp(&second));
            }
        });
}
