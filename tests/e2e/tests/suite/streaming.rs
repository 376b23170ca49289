//! Streams through the gateway: watches and imports relayed without decoding, gapless under
//! concurrent writers, with no default deadline cutting them short, and with one client's
//! backpressure kept on that client's own calls.

use std::time::Duration;

use database::testing::Backend;
use e2e::{TestSuite, User, assert_error, spawn_suite};
use proto::notes::notes_service_client::NotesServiceClient;
use proto::notes::watch_notes_response::EventType;
use proto::notes::{
    CreateNoteRequest, ImportNotesRequest, ListNotesRequest, Note, WatchNotesRequest,
    WatchNotesResponse,
};
use tonic::Code;
use tonic::transport::Channel;

/// How long anything here may take before the test fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(30);

fn note(title: String, content: String) -> Option<Note> {
    Some(Note {
        title,
        content,
        ..Note::default()
    })
}

async fn create(notes: &mut NotesServiceClient<Channel>, user: &User, title: String, size: usize) {
    let mut request = user.request(CreateNoteRequest {
        note: note(title, "x".repeat(size)),
        request_id: new_request_id(),
    });
    // A bound on this call, not a measurement: before the relay kept backpressure per call,
    // calls like this one waited for as long as the stalled clients stayed.
    request.set_timeout(Duration::from_secs(5));
    notes.create_note(request).await.expect("create");
}

fn new_request_id() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "0190{:04x}-0000-7000-8000-{count:012x}",
        std::process::id() & 0xffff
    )
}

/// Reads change events (heartbeats skipped) until `until` has arrived.
async fn changes_until(
    stream: &mut tonic::Streaming<WatchNotesResponse>,
    until: i64,
) -> Vec<WatchNotesResponse> {
    let mut changes = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        while changes
            .last()
            .is_none_or(|last: &WatchNotesResponse| last.revision < until)
        {
            let event = stream
                .message()
                .await
                .expect("the watch goes on")
                .expect("the watch is not over");
            if event.r#type() != EventType::Heartbeat {
                changes.push(event);
            }
        }
    })
    .await
    .expect("every change arrives");
    changes
}

async fn watch(suite: &TestSuite, user: &User, after: i64) -> tonic::Streaming<WatchNotesResponse> {
    suite
        .notes()
        .watch_notes(user.request(WatchNotesRequest {
            after_revision: after,
            start_from_now: false,
        }))
        .await
        .expect("watch")
        .into_inner()
}

async fn a_watch_through_the_gateway_is_gapless_under_concurrent_writers(backend: Backend) {
    const WRITERS: i64 = 8;
    const EACH: i64 = 25;
    let suite = spawn_suite(backend).await;
    let ada = suite.sign_up().await;
    let mut from_start = watch(&suite, &ada, 0).await;
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (mut notes, ada) = (suite.notes(), ada.clone());
            tokio::spawn(async move {
                for n in 0..EACH {
                    create(&mut notes, &ada, format!("{writer}/{n}"), 10).await;
                }
            })
        })
        .collect();
    let first_half = changes_until(&mut from_start, WRITERS * EACH / 2).await;
    // A second watcher joins mid-way from the last revision the first one saw.
    let joined_at = first_half.last().expect("changes").revision;
    let mut mid_way = watch(&suite, &ada, joined_at).await;
    let second_half = changes_until(&mut from_start, WRITERS * EACH).await;
    let joined = changes_until(&mut mid_way, WRITERS * EACH).await;
    for writer in writers {
        writer.await.expect("writer");
    }

    let revisions = |changes: &[WatchNotesResponse]| -> Vec<i64> {
        changes.iter().map(|change| change.revision).collect()
    };
    let all: Vec<i64> = revisions(&first_half)
        .into_iter()
        .chain(revisions(&second_half))
        .collect();
    assert_eq!(all, (1..=WRITERS * EACH).collect::<Vec<_>>());
    assert_eq!(
        revisions(&joined),
        (joined_at + 1..=WRITERS * EACH).collect::<Vec<_>>()
    );
    assert!(
        first_half
            .iter()
            .all(|change| change.r#type() == EventType::Created && change.note.is_some())
    );
}

async fn clients_that_stop_reading_do_not_slow_anyone_else(backend: Backend) {
    // Far more than the 6 that used to freeze every user's forwarded calls.
    const STALLED_CONNECTIONS: usize = 4;
    const STALLED_PER_CONNECTION: usize = 8;
    let suite = spawn_suite(backend).await;
    let mallory = suite.sign_up().await;
    let mut notes = suite.notes();
    // About 1.2 MiB of notes: each ListNotes answer is a full page of about 1 MiB.
    for n in 0..6 {
        create(&mut notes, &mallory, format!("big {n}"), 200 * 1024).await;
    }
    let mut stalled = Vec::new();
    for _ in 0..STALLED_CONNECTIONS {
        stalled.push(
            stall::open_list_notes(suite.gateway_addr, &mallory.token, STALLED_PER_CONNECTION)
                .await,
        );
    }

    // A bystander's unary calls and watch go on as if the stalled clients were not there.
    let ada = suite.sign_up().await;
    let mut ada_watch = watch(&suite, &ada, 0).await;
    for n in 0..20 {
        create(&mut notes, &ada, format!("note {n}"), 1024).await;
        let mut list = ada.request(ListNotesRequest {
            page_size: 5,
            ..ListNotesRequest::default()
        });
        list.set_timeout(Duration::from_secs(5));
        notes.list_notes(list).await.expect("list");
    }
    let changes = changes_until(&mut ada_watch, 20).await;
    assert_eq!(changes.len(), 20);
    // Mallory's own calls on other connections go on too.
    let mut list = mallory.request(ListNotesRequest::default());
    list.set_timeout(Duration::from_secs(5));
    let page = notes.list_notes(list).await.expect("list").into_inner();
    assert!(!page.notes.is_empty());
    drop(stalled);
}

/// A gateway beside the suite's, with short default deadline and stall timeout.
async fn impatient_gateway(suite: &TestSuite, key: &token::SigningKey) -> shell::Spawned {
    let config = gateway::GatewayConfig {
        default_deadline: Duration::from_millis(300),
        stream_stall_timeout: Duration::from_millis(300),
        ..e2e::gateway_config(
            format!("http://{}", suite.users_addr),
            format!("http://{}", suite.notes_addr),
        )
    };
    e2e::spawn_gateway(&config, key).await
}

async fn suite_and_impatient_gateway(
    backend: Backend,
) -> (TestSuite, shell::Spawned, tempfile::TempDir) {
    let (suite, key, keys) = e2e::spawn_suite_with_key(backend).await;
    let gateway = impatient_gateway(&suite, &key).await;
    (suite, gateway, keys)
}

async fn streams_are_not_cut_by_the_default_deadline(backend: Backend) {
    let (suite, gateway, _keys) = suite_and_impatient_gateway(backend).await;
    let ada = suite.sign_up().await;
    let mut notes = NotesServiceClient::new(e2e::channel(gateway.address).await);

    // An import that takes several times the gateway's default deadline of 300 ms.
    let items = futures_util::stream::unfold(0, |n| async move {
        if n == 10 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let item = ImportNotesRequest {
            note: note(format!("imported {n}"), String::new()),
            request_id: new_request_id(),
        };
        Some((item, n + 1))
    });
    let summary = notes
        .import_notes(ada.request(items))
        .await
        .expect("the import outlives the default deadline")
        .into_inner();
    assert_eq!(summary.created_count, 10, "{summary:?}");

    // A watch that stays open past the default deadline still delivers.
    let mut stream = notes
        .watch_notes(ada.request(WatchNotesRequest {
            after_revision: 10,
            start_from_now: false,
        }))
        .await
        .expect("watch")
        .into_inner();
    // Waiting out the default deadline is the point of this test.
    tokio::time::sleep(Duration::from_millis(600)).await;
    create(&mut suite.notes(), &ada, "late".into(), 10).await;
    let changes = changes_until(&mut stream, 11).await;
    assert_eq!(changes.last().map(|change| change.revision), Some(11));

    // A client deadline still bounds a stream.
    let mut request = ada.request(WatchNotesRequest {
        after_revision: 11,
        start_from_now: false,
    });
    request.set_timeout(Duration::from_millis(200));
    let mut stream = notes
        .watch_notes(request)
        .await
        .expect("watch")
        .into_inner();
    let ended = tokio::time::timeout(PATIENCE, async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => {}
                Ok(None) => panic!("the stream ended without a status"),
                Err(status) => return status,
            }
        }
    })
    .await
    .expect("the deadline ends the stream");
    assert_eq!(ended.code(), Code::DeadlineExceeded, "{ended:?}");
}

async fn a_watcher_that_stops_reading_is_told_watch_too_slow(backend: Backend) {
    let (suite, gateway, _keys) = suite_and_impatient_gateway(backend).await;
    let ada = suite.sign_up().await;
    let watch = stall::open_watch(gateway.address, &ada.token).await;
    // Far more than the HTTP/2 windows between notes, the gateway and the client hold.
    let mut notes = suite.notes();
    for n in 0..60 {
        create(&mut notes, &ada, format!("note {n}"), 8 * 1024).await;
    }
    // Longer than the gateway's stall timeout of 300 ms, without reading.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = tokio::time::timeout(PATIENCE, stall::status_at_end(watch))
        .await
        .expect("the stalled watch was ended");
    assert_error(&status, Code::ResourceExhausted, "WATCH_TOO_SLOW");
}

async fn a_client_that_leaves_cancels_its_upstream_watch(backend: Backend) {
    let suite = spawn_suite(backend).await;
    let ada = suite.sign_up().await;
    // More watches, one after the other, than one user may hold at once (32): each one left
    // must be closed at notes too.
    for _ in 0..40 {
        let opened = tokio::time::timeout(PATIENCE, async {
            loop {
                match suite
                    .notes()
                    .watch_notes(ada.request(WatchNotesRequest::default()))
                    .await
                {
                    Ok(stream) => return stream.into_inner(),
                    // The previous watch's cancellation may still be on its way to notes.
                    Err(status) if status.code() == Code::ResourceExhausted => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(status) => panic!("watch: {status:?}"),
                }
            }
        })
        .await
        .expect("the watches left were closed upstream");
        drop(opened);
    }
}

database::backend_tests!(
    a_watch_through_the_gateway_is_gapless_under_concurrent_writers,
    clients_that_stop_reading_do_not_slow_anyone_else,
    streams_are_not_cut_by_the_default_deadline,
    a_watcher_that_stops_reading_is_told_watch_too_slow,
    a_client_that_leaves_cancels_its_upstream_watch,
);

/// Clients that open calls and stop reading their answers, on raw HTTP/2 connections whose
/// windows then stay shut.
mod stall {
    use std::net::SocketAddr;

    use bytes::{BufMut as _, Bytes, BytesMut};
    use http_body_util::{BodyExt as _, Full};
    use hyper::body::Incoming;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use proto::notes::{ListNotesRequest, WatchNotesRequest};

    pub(super) struct Stalled {
        _responses: Vec<http::Response<Incoming>>,
        _sender: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    }

    async fn connect(address: SocketAddr) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
        let stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        // The protocol's default windows, as most clients have: a stream that is not read
        // takes 64 KiB and then waits, and the connection has room for every stream here.
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(65_535)
            .initial_connection_window_size(16 * 65_535)
            .handshake(TokioIo::new(stream))
            .await
            .expect("HTTP/2 handshake");
        tokio::spawn(connection);
        sender
    }

    fn request(
        address: SocketAddr,
        path: &str,
        token: &str,
        message: &impl prost::Message,
    ) -> http::Request<Full<Bytes>> {
        let encoded = message.encode_to_vec();
        let mut frame = BytesMut::with_capacity(5 + encoded.len());
        frame.put_u8(0);
        frame.put_u32(u32::try_from(encoded.len()).expect("small"));
        frame.put_slice(&encoded);
        http::Request::post(format!("http://{address}{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(frame.freeze()))
            .expect("request")
    }

    /// `count` ListNotes calls on one connection, each read up to its first frame and no
    /// further.
    pub(super) async fn open_list_notes(address: SocketAddr, token: &str, count: usize) -> Stalled {
        let mut sender = connect(address).await;
        let mut responses = Vec::new();
        for _ in 0..count {
            let list = ListNotesRequest {
                page_size: 100,
                ..ListNotesRequest::default()
            };
            let path = "/notesuite.notes.v1.NotesService/ListNotes";
            let mut response = tokio::time::timeout(
                super::PATIENCE,
                sender.send_request(request(address, path, token, &list)),
            )
            .await
            .expect("in time")
            .expect("answer headers");
            // The answer is flowing: its first bytes are here.
            let first = tokio::time::timeout(super::PATIENCE, response.body_mut().frame())
                .await
                .expect("in time");
            assert!(
                matches!(&first, Some(Ok(frame)) if frame.is_data()),
                "the answer's first bytes, not {first:?}"
            );
            responses.push(response);
        }
        Stalled {
            _responses: responses,
            _sender: sender,
        }
    }

    /// A watch read up to its first event (the heartbeat that ends the replay).
    pub(super) async fn open_watch(address: SocketAddr, token: &str) -> http::Response<Incoming> {
        let mut sender = connect(address).await;
        let path = "/notesuite.notes.v1.NotesService/WatchNotes";
        let mut response = tokio::time::timeout(
            super::PATIENCE,
            sender.send_request(request(address, path, token, &WatchNotesRequest::default())),
        )
        .await
        .expect("in time")
        .expect("answer headers");
        let first = tokio::time::timeout(super::PATIENCE, response.body_mut().frame())
            .await
            .expect("in time");
        assert!(matches!(first, Some(Ok(frame)) if frame.is_data()));
        tokio::spawn(async move {
            // Keeps the connection open while the response is held.
            let _sender = sender;
            std::future::pending::<()>().await;
        });
        response
    }

    /// Reads the rest of `response` and returns the status its trailers carry.
    pub(super) async fn status_at_end(response: http::Response<Incoming>) -> tonic::Status {
        let collected = response
            .into_body()
            .collect()
            .await
            .expect("the answer ends with trailers, not a reset");
        let trailers = collected.trailers().expect("trailers");
        tonic::Status::from_header_map(trailers).expect("a grpc-status")
    }
}
