//! Faults the SQLite file meets in real life, injected: another process holding the write
//! lock. The store answers UNAVAILABLE while it lasts, never INTERNAL, and heals the moment it
//! ends: no connection is left poisoned by the failed transactions.

use std::time::Duration;

use database::PoolConfig;
use database::testing::Backend;
use proto::notes::CreateNoteRequest;
use sqlx::Connection as _;
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::helpers::{assert_error, draft, spawn_notes_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_lock_held_elsewhere_is_unavailable_and_heals_when_released() {
    let notes = spawn_notes_with(
        Backend::Sqlite,
        PoolConfig {
            max_connections: 4,
            statement_timeout: Duration::from_millis(300),
            ..PoolConfig::default()
        },
    )
    .await;
    let ada = notes.new_user();
    let create = |title: &str| {
        ada.request(CreateNoteRequest {
            note: Some(draft(title, "", &[])),
            request_id: String::new(),
        })
    };
    notes
        .client()
        .create_note(create("before"))
        .await
        .expect("create");

    // Another process (a backup, an operator's sqlite3 shell) takes the write lock and keeps it.
    let mut other = sqlx::SqliteConnection::connect(notes.database.url())
        .await
        .expect("second connection");
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .expect("hold the write lock");
    // Several failed writes in a row, each a failed transaction the store must clean up.
    for attempt in 0..6 {
        let status = notes
            .client()
            .create_note(create(&format!("locked {attempt}")))
            .await
            .expect_err("the file is locked");
        assert_error(&status, Code::Unavailable, "DATABASE_UNAVAILABLE");
        assert!(status.get_error_details().retry_info().is_some());
    }
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut other)
        .await
        .expect("release");
    other.close().await.expect("close");

    // Writes work again at once: no failed transaction left its connection unusable.
    for attempt in 0..12 {
        notes
            .client()
            .create_note(create(&format!("after {attempt}")))
            .await
            .expect("writes work again");
    }
}
