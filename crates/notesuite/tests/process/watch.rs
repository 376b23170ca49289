//! A watcher outlives the notes process it watches through: killed (SIGKILL) or drained
//! (SIGTERM), the process goes, and the client resumes from its last revision on another
//! replica of the same PostgreSQL database, missing nothing and receiving nothing twice.

use std::time::Duration;

use database::testing::TestDatabase;
use proto::notes::notes_service_client::NotesServiceClient;
use proto::notes::watch_notes_response::EventType;
use proto::notes::{CreateNoteRequest, Note, WatchNotesRequest};
use tonic::transport::Channel;

use crate::support::{PATIENCE, Service, keygen};

const NOTES: i64 = 150;

async fn notes_replica(database: &TestDatabase, public_key: &str) -> Service {
    Service::start(
        &[
            "notes",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "off",
            "--jwt-public-key",
            public_key,
            "--drain-delay",
            "100ms",
            "--shutdown-grace",
            "2s",
        ],
        &[("NOTESUITE_DATABASE_URL", database.url().to_owned())],
    )
    .await
}

fn authorized<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    request
}

/// Watches from `after` on `channel` until the stream breaks or `NOTES` arrives; returns
/// the revisions of the changes received, in arrival order, and how the stream ended.
async fn watch_until(
    channel: Channel,
    token: &str,
    after: i64,
    mut on_change: impl FnMut(i64),
) -> (Vec<i64>, Option<tonic::Status>) {
    let mut client = NotesServiceClient::new(channel);
    let mut received = Vec::new();
    let mut stream = match client
        .watch_notes(authorized(
            WatchNotesRequest {
                after_revision: after,
                start_from_now: false,
            },
            token,
        ))
        .await
    {
        Ok(response) => response.into_inner(),
        Err(status) => return (received, Some(status)),
    };
    loop {
        match stream.message().await {
            Ok(Some(event)) if event.r#type() == EventType::Heartbeat => {}
            Ok(Some(event)) => {
                received.push(event.revision);
                on_change(event.revision);
                if event.revision >= NOTES {
                    return (received, None);
                }
            }
            Ok(None) => return (received, None),
            Err(status) => return (received, Some(status)),
        }
    }
}

async fn resume_after_the_watched_replica_goes(signal: &str) {
    let database = TestDatabase::postgres().await;
    let keys = tempfile::tempdir().expect("temp dir");
    let (private_key, public_key) = keygen(keys.path());
    let issuer = token::Issuer::new(
        &token::SigningKey::read_pem_file(std::path::Path::new(&private_key)).expect("key"),
        Duration::from_secs(900),
    );
    let token = issuer
        .user_token(&uuid::Uuid::now_v7().to_string())
        .expect("sign")
        .token;
    let watched = notes_replica(&database, &public_key).await;
    let survivor = notes_replica(&database, &public_key).await;

    // A writer creates notes one after the other through the surviving replica.
    let writer = {
        let channel = survivor.channel().await;
        let token = token.clone();
        tokio::spawn(async move {
            let mut client = NotesServiceClient::new(channel);
            for n in 0..NOTES {
                client
                    .create_note(authorized(
                        CreateNoteRequest {
                            note: Some(Note {
                                title: format!("note {n}"),
                                ..Note::default()
                            }),
                            request_id: uuid::Uuid::now_v7().to_string(),
                        },
                        &token,
                    ))
                    .await
                    .expect("create");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };

    // Watch on the other replica; take it down a third of the way.
    let (stop_at, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut stop_at = Some(stop_at);
    let first = tokio::time::timeout(
        PATIENCE,
        watch_until(watched.channel().await, &token, 0, |revision| {
            if revision == NOTES / 3
                && let Some(stop) = stop_at.take()
            {
                let _ = stop.send(());
            }
        }),
    );
    let kill = async {
        let _ = stopped.await;
        watched.signal(signal);
    };
    let ((mut received, ended), ()) =
        tokio::join!(async { first.await.expect("the first stream ends") }, kill);
    let ended = ended.expect("the watched replica's stream broke");
    if signal == "-TERM" {
        // A drain ends streams with UNAVAILABLE: resume elsewhere.
        assert_eq!(ended.code(), tonic::Code::Unavailable, "{ended:?}");
    }
    let last = received.last().copied().unwrap_or(0);
    assert!(
        (NOTES / 3..NOTES).contains(&last),
        "stopped mid-stream at {last}"
    );

    let (rest, ended) = tokio::time::timeout(
        PATIENCE,
        watch_until(survivor.channel().await, &token, last, |_| {}),
    )
    .await
    .expect("the resumed stream catches up");
    assert!(ended.is_none(), "{ended:?}");
    received.extend(rest);
    assert_eq!(received, (1..=NOTES).collect::<Vec<_>>());
    writer.await.expect("writer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_watcher_resumes_on_another_replica_after_kill_9() {
    resume_after_the_watched_replica_goes("-KILL").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_watcher_resumes_on_another_replica_after_sigterm() {
    resume_after_the_watched_replica_goes("-TERM").await;
}
