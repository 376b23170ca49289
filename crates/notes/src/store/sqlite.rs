//! The embedded SQLite store: one file, WAL journal, embedded migrations, one writer at a
//! time (see [`database::SqliteDatabase`]).

use database::{PoolConfig, SqliteDatabase, WriteTransaction};
use futures_util::TryStreamExt as _;
use sqlx::Sqlite;

use super::{
    CreateRequest, EarlierRequest, ListQuery, ListedPage, NoteStore, NoteWrite, fill_page,
    from_micros, to_micros,
};
use crate::domain::{Content, Note, NoteId, OwnerId, RequestId, Revision, Tag, Tags, Title};
use crate::error::Error;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Debug, Clone)]
pub struct SqliteNoteStore {
    database: SqliteDatabase,
}

impl SqliteNoteStore {
    /// Opens (creating if missing) the database at `url`, e.g. `sqlite://notes.db`, and
    /// applies pending migrations.
    pub async fn open(url: &str, pool: &PoolConfig) -> Result<Self, Error> {
        let database = SqliteDatabase::open(url, pool, "notes", &MIGRATOR).await?;
        Ok(Self { database })
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

async fn select_note(
    executor: impl sqlx::SqliteExecutor<'_>,
    owner: &OwnerId,
    id: NoteId,
) -> Result<Option<Note>, Error> {
    sqlx::query_as::<_, NoteRow>(
        "SELECT n.id, n.owner_id, n.title, n.content, n.tags, n.revision, n.create_time, n.update_time
         FROM notes n WHERE n.owner_id = ? AND n.id = ?",
    )
    .bind(owner.as_str())
    .bind(id.to_string())
    .fetch_optional(executor)
    .await?
    .map(Note::try_from)
    .transpose()
}

impl NoteStore for SqliteNoteStore {
    type Write = SqliteNoteWrite;

    async fn write(&self, owner: &OwnerId) -> Result<SqliteNoteWrite, Error> {
        let mut transaction = self.database.write().await?;
        let revision: i64 = sqlx::query_scalar(
            "INSERT INTO owner_revisions (owner_id, revision) VALUES (?, 1)
             ON CONFLICT (owner_id) DO UPDATE SET revision = revision + 1
             RETURNING revision",
        )
        .bind(owner.as_str())
        .fetch_one(transaction.connection())
        .await?;
        Ok(SqliteNoteWrite {
            transaction,
            owner: owner.clone(),
            revision: Revision::from_stored(revision),
        })
    }

    async fn get(&self, owner: &OwnerId, id: NoteId) -> Result<Option<Note>, Error> {
        select_note(&mut *self.database.connection().await?, owner, id).await
    }

    async fn list(&self, owner: &OwnerId, query: ListQuery<'_>) -> Result<ListedPage, Error> {
        let before = query.before.unwrap_or(NoteId::MAX).to_string();
        let limit = i64::from(query.limit) + 1;
        let mut connection = self.database.connection().await?;
        let budget = i64::try_from(query.byte_budget).unwrap_or(i64::MAX);
        // The page is cut in SQL too (see the PostgreSQL store): sqlx reads rows ahead, and
        // rows of big notes past the budget would be read into memory only to be dropped.
        let statement = match query.tag {
            // The tag index (owner, tag, note id) serves the filter and the order.
            Some(tag) => sqlx::query_as::<_, NoteRow>(
                "SELECT id, owner_id, title, content, tags, revision, create_time, update_time
                 FROM (
                     SELECT n.id, n.owner_id, n.title, n.content, n.tags, n.revision,
                            n.create_time, n.update_time,
                            octet_length(n.title) + octet_length(n.content) AS size,
                            SUM(octet_length(n.title) + octet_length(n.content))
                                OVER (ORDER BY t.note_id DESC ROWS UNBOUNDED PRECEDING) AS through
                     FROM note_tags t JOIN notes n ON n.id = t.note_id
                     WHERE t.owner_id = ?1 AND t.tag = ?2 AND t.note_id < ?3
                     ORDER BY t.note_id DESC LIMIT ?4
                 )
                 WHERE through - size < ?5
                 ORDER BY id DESC",
            )
            .bind(owner.as_str())
            .bind(tag.as_str())
            .bind(before)
            .bind(limit)
            .bind(budget),
            None => sqlx::query_as::<_, NoteRow>(
                "SELECT id, owner_id, title, content, tags, revision, create_time, update_time
                 FROM (
                     SELECT n.id, n.owner_id, n.title, n.content, n.tags, n.revision,
                            n.create_time, n.update_time,
                            octet_length(n.title) + octet_length(n.content) AS size,
                            SUM(octet_length(n.title) + octet_length(n.content))
                                OVER (ORDER BY n.id DESC ROWS UNBOUNDED PRECEDING) AS through
                     FROM notes n
                     WHERE n.owner_id = ?1 AND n.id < ?2
                     ORDER BY n.id DESC LIMIT ?3
                 )
                 WHERE through - size < ?4
                 ORDER BY id DESC",
            )
            .bind(owner.as_str())
            .bind(before)
            .bind(limit)
            .bind(budget),
        };
        let rows = statement
            .fetch(&mut *connection)
            .map_err(Error::from)
            .and_then(|row| async { Note::try_from(row) });
        fill_page(rows, &query).await
    }

    async fn count(&self, owner: &OwnerId, tag: Option<&Tag>) -> Result<u64, Error> {
        let mut connection = self.database.connection().await?;
        let count: i64 = match tag {
            Some(tag) => {
                sqlx::query_scalar("SELECT COUNT(*) FROM note_tags WHERE owner_id = ? AND tag = ?")
                    .bind(owner.as_str())
                    .bind(tag.as_str())
                    .fetch_one(&mut *connection)
                    .await?
            }
            None => {
                sqlx::query_scalar("SELECT COUNT(*) FROM notes WHERE owner_id = ?")
                    .bind(owner.as_str())
                    .fetch_one(&mut *connection)
                    .await?
            }
        };
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn check_writable(&self) -> Result<(), String> {
        self.database.check_writable().await
    }
}

#[derive(Debug)]
pub struct SqliteNoteWrite {
    transaction: WriteTransaction<Sqlite>,
    owner: OwnerId,
    revision: Revision,
}

impl SqliteNoteWrite {
    async fn insert_tags(&mut self, id: NoteId, tags: &Tags) -> Result<(), Error> {
        for tag in tags.iter() {
            sqlx::query("INSERT INTO note_tags (owner_id, tag, note_id) VALUES (?, ?, ?)")
                .bind(self.owner.as_str())
                .bind(tag.as_str())
                .bind(id.to_string())
                .execute(self.transaction.connection())
                .await?;
        }
        Ok(())
    }
}

impl NoteWrite for SqliteNoteWrite {
    fn revision(&self) -> Revision {
        self.revision
    }

    async fn earlier_request(
        &mut self,
        request_id: RequestId,
    ) -> Result<Option<EarlierRequest>, Error> {
        let earlier: Option<(Vec<u8>, String)> = sqlx::query_as(
            "SELECT fingerprint, note_id FROM create_requests WHERE owner_id = ? AND request_id = ?",
        )
        .bind(self.owner.as_str())
        .bind(request_id.to_string())
        .fetch_optional(self.transaction.connection())
        .await?;
        earlier
            .map(|(fingerprint, note_id)| {
                Ok(EarlierRequest {
                    fingerprint: fingerprint
                        .try_into()
                        .map_err(|_| Error::Corrupt("request fingerprint".into()))?,
                    note_id: NoteId::parse(&note_id)
                        .map_err(|_| Error::Corrupt(format!("note id {note_id:?}")))?,
                })
            })
            .transpose()
    }

    async fn note(&mut self, id: NoteId) -> Result<Option<Note>, Error> {
        select_note(self.transaction.connection(), &self.owner, id).await
    }

    async fn insert(&mut self, note: &Note, request: Option<CreateRequest>) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO notes (id, owner_id, title, content, tags, revision, create_time, update_time)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(note.id.to_string())
        .bind(self.owner.as_str())
        .bind(note.title.as_str())
        .bind(note.content.as_str())
        .bind(note.tags.joined())
        .bind(note.revision.get())
        .bind(to_micros(note.create_time))
        .bind(to_micros(note.update_time))
        .execute(self.transaction.connection())
        .await?;
        self.insert_tags(note.id, &note.tags).await?;
        if let Some(request) = request {
            sqlx::query(
                "INSERT INTO create_requests (owner_id, request_id, fingerprint, note_id, create_time)
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(self.owner.as_str())
            .bind(request.request_id.to_string())
            .bind(request.fingerprint.as_slice())
            .bind(note.id.to_string())
            .bind(to_micros(note.create_time))
            .execute(self.transaction.connection())
            .await?;
        }
        Ok(())
    }

    async fn replace(&mut self, note: &Note) -> Result<(), Error> {
        sqlx::query(
            "UPDATE notes SET title = ?, content = ?, tags = ?, revision = ?, update_time = ?
             WHERE owner_id = ? AND id = ?",
        )
        .bind(note.title.as_str())
        .bind(note.content.as_str())
        .bind(note.tags.joined())
        .bind(note.revision.get())
        .bind(to_micros(note.update_time))
        .bind(self.owner.as_str())
        .bind(note.id.to_string())
        .execute(self.transaction.connection())
        .await?;
        sqlx::query("DELETE FROM note_tags WHERE note_id = ?")
            .bind(note.id.to_string())
            .execute(self.transaction.connection())
            .await?;
        self.insert_tags(note.id, &note.tags).await
    }

    async fn remove(&mut self, id: NoteId) -> Result<(), Error> {
        // Its tag rows go with it (ON DELETE CASCADE).
        sqlx::query("DELETE FROM notes WHERE owner_id = ? AND id = ?")
            .bind(self.owner.as_str())
            .bind(id.to_string())
            .execute(self.transaction.connection())
            .await?;
        Ok(())
    }

    async fn commit(self) -> Result<(), Error> {
        Ok(self.transaction.commit().await?)
    }

    async fn rollback(self) {
        self.transaction.rollback().await;
    }
}
