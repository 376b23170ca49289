//! Migrations as replicas meet them: several starting at once, a migration that fails, and a
//! database migrated by a newer binary.

use std::path::Path;
use std::time::Duration;

use database::testing::{Backend, TestDatabase};
use database::{OpenError, PoolConfig, PostgresDatabase, SqliteDatabase};
use sqlx::migrate::Migrator;

/// A migrations directory holding `files` (name, SQL).
async fn migrator(dir: &Path, files: &[(&str, &str)]) -> Migrator {
    for (name, sql) in files {
        std::fs::write(dir.join(name), sql).expect("write migration");
    }
    Migrator::new(dir).await.expect("migrations load")
}

const FIRST: (&str, &str) = (
    "0001_things.sql",
    "CREATE TABLE things (id BIGINT PRIMARY KEY);",
);
const SECOND: (&str, &str) = ("0002_more.sql", "ALTER TABLE things ADD COLUMN name TEXT;");
const BROKEN: (&str, &str) = (
    "0002_more.sql",
    "ALTER TABLE things ADD COLUMN name TEXT; SELECT * FROM no_such_table;",
);

async fn open(backend: Backend, url: &str, migrator: &Migrator) -> Result<(), OpenError> {
    let config = PoolConfig::default();
    match backend {
        Backend::Sqlite => SqliteDatabase::open(url, &config, "test", migrator)
            .await
            .map(drop),
        Backend::Postgres => PostgresDatabase::open(url, &config, "test", migrator)
            .await
            .map(drop),
    }
}

async fn applied_versions(backend: Backend, url: &str) -> Vec<i64> {
    let query = "SELECT version FROM _sqlx_migrations ORDER BY version";
    match backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(url).await.expect("connect");
            sqlx::query_scalar(query)
                .fetch_all(&pool)
                .await
                .expect("versions")
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(url).await.expect("connect");
            sqlx::query_scalar(query)
                .fetch_all(&pool)
                .await
                .expect("versions")
        }
    }
}

async fn replicas_starting_together_migrate_once(backend: Backend) {
    let database = TestDatabase::new(backend).await;
    let dir = tempfile::tempdir().expect("dir");
    let migrator = migrator(dir.path(), &[FIRST, SECOND]).await;
    let replicas = (0..4).map(|_| open(backend, database.url(), &migrator));
    // All at once: the point is that they race for the migrator's lock.
    let outcomes = futures_util::future::join_all(replicas).await;
    for outcome in outcomes {
        outcome.expect("every replica starts");
    }
    assert_eq!(applied_versions(backend, database.url()).await, [1, 2]);
}

async fn a_failed_migration_blocks_no_other_replica(backend: Backend) {
    let database = TestDatabase::new(backend).await;
    let broken_dir = tempfile::tempdir().expect("dir");
    let broken = migrator(broken_dir.path(), &[FIRST, BROKEN]).await;
    let error = open(backend, database.url(), &broken)
        .await
        .expect_err("a broken migration fails start-up");
    assert!(matches!(error, OpenError::Migrate { .. }), "{error:?}");
    if backend == Backend::Postgres {
        // Right after the failure, before anything else is dropped: no session still holds
        // the migrator's advisory lock (a pooled connection would, for as long as it lived).
        let pool = sqlx::PgPool::connect(database.url())
            .await
            .expect("connect");
        let held: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks
             WHERE locktype = 'advisory' AND granted
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_one(&pool)
        .await
        .expect("pg_locks");
        assert_eq!(
            held, 0,
            "the failed migration's lock was released with its connection"
        );
    }

    // The fixed binary (another replica, or the next rollout) must get the lock at once.
    let fixed_dir = tempfile::tempdir().expect("dir");
    let fixed = migrator(fixed_dir.path(), &[FIRST, SECOND]).await;
    tokio::time::timeout(
        Duration::from_secs(10),
        open(backend, database.url(), &fixed),
    )
    .await
    .expect("the migrator's lock was released when the failed migration ended")
    .expect("the fixed migrations apply");
    assert_eq!(applied_versions(backend, database.url()).await, [1, 2]);
}

async fn a_schema_newer_than_the_binary_is_refused(backend: Backend) {
    let database = TestDatabase::new(backend).await;
    let newer_dir = tempfile::tempdir().expect("dir");
    let newer = migrator(newer_dir.path(), &[FIRST, SECOND]).await;
    open(backend, database.url(), &newer)
        .await
        .expect("newer binary migrates");

    let older_dir = tempfile::tempdir().expect("dir");
    let older = migrator(older_dir.path(), &[FIRST]).await;
    let error = open(backend, database.url(), &older)
        .await
        .expect_err("an older binary refuses the newer schema");
    assert!(
        matches!(
            error,
            OpenError::SchemaNewer {
                applied: 2,
                known: 1,
                ..
            }
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("newer than this binary"), "{message}");
}

database::backend_tests!(
    replicas_starting_together_migrate_once,
    a_failed_migration_blocks_no_other_replica,
    a_schema_newer_than_the_binary_is_refused,
);
