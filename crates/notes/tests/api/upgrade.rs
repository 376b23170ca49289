//! A SQLite file written before the tag index existed keeps answering tag filters once the
//! new binary migrates it.

use std::time::SystemTime;

use database::PoolConfig;
use database::testing::TestDatabase;
use notes::domain::{OwnerId, Tag};
use notes::store::{ListQuery, NoteStore, SqliteNoteStore};
use sqlx::migrate::Migrator;

#[tokio::test]
async fn notes_stored_before_the_tag_index_are_found_by_tag_after_the_upgrade() {
    let database = TestDatabase::sqlite();
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(database.url().trim_start_matches("sqlite://"))
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.expect("open");
    let migrations = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    let migrator = Migrator::new(migrations).await.expect("migrations");
    migrator
        .run_to(1, &pool)
        .await
        .expect("the schema before the tag index");
    let owner = "01900000-0000-7000-8000-0000000000aa";
    let micros = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_micros() as i64;
    for (id, tags) in [
        ("01900000-0000-7000-8000-000000000001", "home,todo"),
        ("01900000-0000-7000-8000-000000000002", "todo"),
        ("01900000-0000-7000-8000-000000000003", ""),
    ] {
        sqlx::query(
            "INSERT INTO notes (id, owner_id, title, content, tags, revision, create_time, update_time)
             VALUES (?, ?, 'Old', '', ?, 1, ?, ?)",
        )
        .bind(id)
        .bind(owner)
        .bind(tags)
        .bind(micros)
        .bind(micros)
        .execute(&pool)
        .await
        .expect("an old row");
    }
    pool.close().await;

    let store = SqliteNoteStore::open(database.url(), &PoolConfig::default())
        .await
        .expect("the new binary migrates");
    let owner = OwnerId::from_verified_token(owner.into());
    for (tag, expected) in [("todo", 2), ("home", 1), ("work", 0)] {
        let tag = Tag::parse(tag).expect("tag");
        let page = store
            .list(
                &owner,
                ListQuery {
                    tag: Some(&tag),
                    before: None,
                    limit: 10,
                    byte_budget: 1 << 20,
                },
            )
            .await
            .expect("list");
        assert_eq!(page.notes.len(), expected, "tag {tag:?}");
        assert_eq!(page.total, expected as u64, "tag {tag:?}");
    }
}
