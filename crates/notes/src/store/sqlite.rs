//! The embedded SQLite store: one file, WAL journal, embedded migrations.
//!
//! Every write runs in a `BEGIN IMMEDIATE` transaction: it takes SQLite's write lock up front,
//! so that a transaction that read first never fails to upgrade to a writer (SQLITE_BUSY).

use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime};

use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

use super::{CreateRequest, NoteStore, from_micros, to_micros};
use crate::domain::{
    Content, Note, NoteDraft, NoteId, NotePatch, OwnerId, Revision, Tag, Tags, Title,
};
use crate::error::Error;

#[derive(Debug, Clone)]
pub struct SqliteNoteStore {
    pool: SqlitePool,
    metrics: telemetry::PoolMetrics,
}

impl SqliteNoteStore {
    /// Opens (creating if missing) the database at `url`, e.g. `sqlite://notes.db`, and
    /// applies pending migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, Error> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // With WAL, NORMAL loses at most the last transactions on power loss, never
            // consistency; FULL would fsync every commit.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        let observed = pool.clone();
        let metrics = telemetry::PoolMetrics::register("notes", max_connections, move || {
            (
                observed.size(),
                u32::try_from(observed.num_idle()).unwrap_or(u32::MAX),
            )
        });
        Ok(Self { pool, metrics })
    }

    /// A pooled connection; the wait for it is measured.
    async fn connection(&self) -> Result<PoolConnection<Sqlite>, Error> {
        let started = Instant::now();
        let connection = self.pool.acquire().await?;
        self.metrics.record_wait(started.elapsed());
        Ok(connection)
    }

    /// A write transaction. The measured wait includes SQLite's write lock, the real point of
    /// contention for writers.
    async fn write_transaction(&self) -> Result<Transaction<'static, Sqlite>, Error> {
        let started = Instant::now();
        let transaction = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        self.metrics.record_wait(started.elapsed());
        Ok(transaction)
    }
}

#[derive(sqlx::FromRow)]
struct NoteRow {
    id: String,
    owner_id: String,
    title: String,
    content: String,
    tags: String,
    revision: i64,
    create_time: i64,
    update_time: i64,
}

impl TryFrom<NoteRow> for Note {
    type Error = Error;

    fn try_from(row: NoteRow) -> Result<Self, Error> {
        Ok(Note {
            id: NoteId::parse(&row.id)
                .map_err(|_| Error::Corrupt(format!("note id {:?}", row.id)))?,
            owner: OwnerId::from_verified_token(row.owner_id),
            title: Title::from_stored(row.title),
            content: Content::from_stored(row.content),
            tags: Tags::from_stored(&row.tags),
            revision: Revision::from_stored(row.revision),
            create_time: from_micros(row.create_time),
            update_time: from_micros(row.update_time),
        })
    }
}

const SELECT_NOTE: &str =
    "SELECT id, owner_id, title, content, tags, revision, create_time, update_time
     FROM notes WHERE owner_id = ? AND id = ?";

/// Takes the owner's next revision inside `transaction`.
async fn next_revision(
    transaction: &mut Transaction<'static, Sqlite>,
    owner: &OwnerId,
) -> Result<Revision, Error> {
    let revision: i64 = sqlx::query_scalar(
        "INSERT INTO owner_revisions (owner_id, revision) VALUES (?, 1)
         ON CONFLICT (owner_id) DO UPDATE SET revision = revision + 1
         RETURNING revision",
    )
    .bind(owner.as_str())
    .fetch_one(&mut **transaction)
    .await?;
    Ok(Revision::from_stored(revision))
}

async fn select_note(
    executor: impl sqlx::SqliteExecutor<'_>,
    owner: &OwnerId,
    id: NoteId,
) -> Result<Option<Note>, Error> {
    sqlx::query_as::<_, NoteRow>(SELECT_NOTE)
        .bind(owner.as_str())
        .bind(id.to_string())
        .fetch_optional(executor)
        .await?
        .map(Note::try_from)
        .transpose()
}

impl NoteStore for SqliteNoteStore {
    async fn create(
        &self,
        owner: &OwnerId,
        draft: &NoteDraft,
        request: Option<CreateRequest>,
        now: SystemTime,
    ) -> Result<Note, Error> {
        let mut transaction = self.write_transaction().await?;
        if let Some(request) = request {
            let earlier: Option<(Vec<u8>, String)> = sqlx::query_as(
                "SELECT fingerprint, note_id FROM create_requests WHERE owner_id = ? AND request_id = ?",
            )
            .bind(owner.as_str())
            .bind(request.request_id.to_string())
            .fetch_optional(&mut *transaction)
            .await?;
            if let Some((fingerprint, note_id)) = earlier {
                if fingerprint != request.fingerprint {
                    return Err(Error::RequestIdReused);
                }
                let note_id = NoteId::parse(&note_id)
                    .map_err(|_| Error::Corrupt(format!("note id {note_id:?}")))?;
                return select_note(&mut *transaction, owner, note_id)
                    .await?
                    .ok_or(Error::NoteNotFound);
            }
        }

        let revision = next_revision(&mut transaction, owner).await?;
        let note = Note {
            id: NoteId::new(),
            owner: owner.clone(),
            title: draft.title.clone(),
            content: draft.content.clone(),
            tags: draft.tags.clone(),
            revision,
            create_time: now,
            update_time: now,
        };
        sqlx::query(
            "INSERT INTO notes (id, owner_id, title, content, tags, revision, create_time, update_time)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(note.id.to_string())
        .bind(owner.as_str())
        .bind(note.title.as_str())
        .bind(note.content.as_str())
        .bind(note.tags.joined())
        .bind(revision.get())
        .bind(to_micros(now))
        .bind(to_micros(now))
        .execute(&mut *transaction)
        .await?;
        if let Some(request) = request {
            sqlx::query(
                "INSERT INTO create_requests (owner_id, request_id, fingerprint, note_id, create_time)
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(owner.as_str())
            .bind(request.request_id.to_string())
            .bind(request.fingerprint.as_slice())
            .bind(note.id.to_string())
            .bind(to_micros(now))
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(note)
    }

    async fn get(&self, owner: &OwnerId, id: NoteId) -> Result<Option<Note>, Error> {
        select_note(&mut *self.connection().await?, owner, id).await
    }

    async fn list(
        &self,
        owner: &OwnerId,
        tag: Option<&Tag>,
        before: Option<NoteId>,
        limit: u32,
    ) -> Result<Vec<Note>, Error> {
        sqlx::query_as::<_, NoteRow>(
            "SELECT id, owner_id, title, content, tags, revision, create_time, update_time
             FROM notes
             WHERE owner_id = ?1
               AND (?2 IS NULL OR id < ?2)
               AND (?3 IS NULL OR instr(',' || tags || ',', ',' || ?3 || ',') > 0)
             ORDER BY id DESC
             LIMIT ?4",
        )
        .bind(owner.as_str())
        .bind(before.map(|id| id.to_string()))
        .bind(tag.map(Tag::as_str))
        .bind(i64::from(limit))
        .fetch_all(&mut *self.connection().await?)
        .await?
        .into_iter()
        .map(Note::try_from)
        .collect()
    }

    async fn count(&self, owner: &OwnerId, tag: Option<&Tag>) -> Result<u64, Error> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM notes
             WHERE owner_id = ?1 AND (?2 IS NULL OR instr(',' || tags || ',', ',' || ?2 || ',') > 0)",
        )
        .bind(owner.as_str())
        .bind(tag.map(Tag::as_str))
        .fetch_one(&mut *self.connection().await?)
        .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn update(
        &self,
        owner: &OwnerId,
        id: NoteId,
        expected: Revision,
        patch: &NotePatch,
        now: SystemTime,
    ) -> Result<Note, Error> {
        let mut transaction = self.write_transaction().await?;
        let current = select_note(&mut *transaction, owner, id)
            .await?
            .ok_or(Error::NoteNotFound)?;
        if current.revision != expected {
            return Err(Error::EtagMismatch);
        }
        let revision = next_revision(&mut transaction, owner).await?;
        let note = Note {
            title: patch.title.clone().unwrap_or(current.title),
            content: patch.content.clone().unwrap_or(current.content),
            tags: patch.tags.clone().unwrap_or(current.tags),
            revision,
            update_time: now,
            ..current
        };
        sqlx::query(
            "UPDATE notes SET title = ?, content = ?, tags = ?, revision = ?, update_time = ?
             WHERE owner_id = ? AND id = ?",
        )
        .bind(note.title.as_str())
        .bind(note.content.as_str())
        .bind(note.tags.joined())
        .bind(revision.get())
        .bind(to_micros(now))
        .bind(owner.as_str())
        .bind(id.to_string())
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(note)
    }

    async fn delete(
        &self,
        owner: &OwnerId,
        id: NoteId,
        expected: Option<Revision>,
    ) -> Result<(), Error> {
        let mut transaction = self.write_transaction().await?;
        let current = select_note(&mut *transaction, owner, id)
            .await?
            .ok_or(Error::NoteNotFound)?;
        if expected.is_some_and(|expected| expected != current.revision) {
            return Err(Error::EtagMismatch);
        }
        // A delete is a change too: it takes a revision, so watchers (and etags) see it.
        next_revision(&mut transaction, owner).await?;
        sqlx::query("DELETE FROM notes WHERE owner_id = ? AND id = ?")
            .bind(owner.as_str())
            .bind(id.to_string())
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), Error> {
        sqlx::query("SELECT 1")
            .execute(&mut *self.connection().await?)
            .await?;
        Ok(())
    }
}
