//! A call its client cancels stops its work: the database connection it held goes back to the
//! pool at once, and its statement stops on the server, even while that statement is stuck.

use std::time::Duration;

use database::PoolConfig;
use database::testing::Backend;
use proto::notes::{GetNoteRequest, ListNotesRequest};
use sqlx::Connection as _;

use crate::helpers::spawn_notes_with;

/// Statements of this database waiting on a lock, as PostgreSQL sees them.
async fn waiting(observer: &mut sqlx::PgConnection, database: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_stat_activity
         WHERE datname = $1 AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
    )
    .bind(database)
    .fetch_one(observer)
    .await
    .expect("pg_stat_activity")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_list_frees_its_connection_and_stops_its_statement() {
    let notes = spawn_notes_with(
        Backend::Postgres,
        PoolConfig {
            max_connections: 2,
            acquire_timeout: Duration::from_secs(5),
            // Far beyond the waits below: only stopping the statements lets this test pass.
            statement_timeout: Duration::from_secs(120),
            ..PoolConfig::default()
        },
    )
    .await;
    let ada = notes.new_user();
    let note = notes.create(&ada, "readable", &[]).await;
    let database_name = notes
        .database
        .url()
        .rsplit('/')
        .next()
        .expect("a database name")
        .to_owned();

    // Another session locks the tag index: listings by tag wait for it, each holding one of
    // the pool's two connections.
    let mut locker = sqlx::PgConnection::connect(notes.database.url())
        .await
        .expect("connect");
    sqlx::raw_sql("BEGIN; LOCK TABLE note_tags IN ACCESS EXCLUSIVE MODE")
        .execute(&mut locker)
        .await
        .expect("lock");
    let mut observer = sqlx::PgConnection::connect(notes.database.url())
        .await
        .expect("connect");
    let stuck: Vec<_> = (0..2)
        .map(|_| {
            let mut client = notes.client();
            let request = ada.request(ListNotesRequest {
                tag: "x".into(),
                ..ListNotesRequest::default()
            });
            tokio::spawn(async move { client.list_notes(request).await })
        })
        .collect();
    tokio::time::timeout(Duration::from_secs(30), async {
        while waiting(&mut observer, &database_name).await < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("both listings wait on the lock");

    // The clients give up: their calls are reset.
    for call in &stuck {
        call.abort();
    }

    // Their statements stop, and a call that needs a connection gets one, while the lock is
    // still held.
    tokio::time::timeout(Duration::from_secs(30), async {
        while waiting(&mut observer, &database_name).await > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the cancelled statements stop on the server");
    let got = tokio::time::timeout(
        Duration::from_secs(30),
        notes.client().get_note(ada.request(GetNoteRequest {
            id: note.id.clone(),
        })),
    )
    .await
    .expect("not stuck behind the cancelled calls")
    .expect("a connection was free");
    assert_eq!(got.into_inner().note.map(|found| found.id), Some(note.id));

    sqlx::raw_sql("ROLLBACK")
        .execute(&mut locker)
        .await
        .expect("unlock");
}
