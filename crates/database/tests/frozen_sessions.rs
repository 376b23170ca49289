//! A replica that freezes inside a transaction (SIGSTOP, a paused VM) must not hold its row
//! locks, and with them every write of the users it locked, for as long as it stays frozen.

use std::time::Duration;

use database::testing::{Backend, TestDatabase};
use database::{PoolConfig, PostgresDatabase};
use sqlx::migrate::Migrator;

#[tokio::test]
async fn a_transaction_left_idle_loses_its_locks_and_cannot_commit() {
    let database = TestDatabase::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().expect("migrations dir");
    std::fs::write(
        dir.path().join("0001_rows.sql"),
        "CREATE TABLE rows (id BIGINT PRIMARY KEY, n BIGINT NOT NULL); INSERT INTO rows VALUES (1, 0);",
    )
    .expect("write migration");
    let migrator = Migrator::new(dir.path()).await.expect("migrations load");
    let config = PoolConfig {
        // Far beyond the bound checked below: only the idle timeout can free the row.
        statement_timeout: Duration::from_secs(60),
        idle_in_transaction_timeout: Duration::from_millis(300),
        ..PoolConfig::default()
    };
    let store = PostgresDatabase::open(database.url(), &config, "test", &migrator)
        .await
        .expect("open");

    // The "frozen replica": it locks the row, then never runs another statement.
    let mut frozen = store.write().await.expect("begin");
    sqlx::query("UPDATE rows SET n = n + 1 WHERE id = 1")
        .execute(&mut *frozen.connection())
        .await
        .expect("lock the row");

    // Another replica's write of the same row goes through once the server ends the frozen
    // session, not after the statement timeout.
    let mut other = store.write().await.expect("begin");
    tokio::time::timeout(
        Duration::from_secs(10),
        sqlx::query("UPDATE rows SET n = n + 10 WHERE id = 1").execute(&mut *other.connection()),
    )
    .await
    .expect("the frozen transaction's lock is released by its idle timeout")
    .expect("update");
    other.commit().await.expect("commit");

    // The frozen one wakes up to find its transaction gone: its write never lands.
    assert!(
        frozen.commit().await.is_err(),
        "a timed-out transaction cannot commit"
    );
    let n: i64 = sqlx::query_scalar("SELECT n FROM rows WHERE id = 1")
        .fetch_one(store.pool())
        .await
        .expect("read");
    assert_eq!(n, 10);
}
