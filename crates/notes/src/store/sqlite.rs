//! The embedded SQLite store: one file, WAL journal, embedded migrations, one writer at a
//! time (see [`database::SqliteDatabase`]).

use std::time::SystemTime;

use database::{PoolConfig, SqliteDatabase, WriteTransaction};
use futures_util::TryStreamExt as _;
use sqlx::Sqlite;

use super::{
    CreateRequest, DEFAULT_LOG_RETENTION, EarlierRequest, ListQuery, ListedPage, NoteStore,
    NoteWrite, PURGE_CHUNK, PageRowParts, fill_page, from_micros, to_micros, within_budget,
};
use crate::domain::{
    Change, ChangeEvent, Content, Note, NoteId, OwnerId, RequestId, Revision, Tags, Title,
};
use crate::error::Error;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Debug, Clone)]
pub struct SqliteNoteStore {
    database: SqliteDatabase,
    log_retention: i64,
}

impl SqliteNoteStore {
    /// Opens (creating if missing) the database at `url`, e.g. `sqlite://notes.db`, and
    /// applies pending migrations.
    pub async fn open(url: &str, pool: &PoolConfig) -> Result<Self, Error> {
        let database = SqliteDatabase::open(url, pool, "notes", &MIGRATOR).await?;
        Ok(Self {
            database,
            log_retention: i64::from(DEFAULT_LOG_RETENTION),
        })
    }

    /// Keeps `changes` changes per owner in the change log (at least one).
    #[must_use]
    pub fn with_log_retention(mut self, changes: u32) -> Self {
        self.log_retention = i64::from(changes.max(1));
        self
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

/// A row of a listing: the owner's revision and the listing's total, and a note unless the
/// listing is empty.
#[derive(sqlx::FromRow)]
struct PageRow {
    owner_revision: i64,
    total: i64,
    id: Option<String>,
    owner_id: Option<String>,
    title: Option<String>,
    content: Option<String>,
    tags: Option<String>,
    revision: Option<i64>,
    create_time: Option<i64>,
    update_time: Option<i64>,
}

impl PageRow {
    fn into_parts(self) -> Result<PageRowParts, Error> {
        let note = match (self.id, self.owner_id, self.title, self.content, self.tags) {
            (Some(id), Some(owner_id), Some(title), Some(content), Some(tags)) => {
                Some(Note::try_from(NoteRow {
                    id,
                    owner_id,
                    title,
                    content,
                    tags,
                    revision: self.revision.unwrap_or_default(),
                    create_time: self.create_time.unwrap_or_default(),
                    update_time: self.update_time.unwrap_or_default(),
                })?)
            }
            _ => None,
        };
        Ok(PageRowParts {
            revision: Revision::from_stored(self.owner_revision),
            total: u64::try_from(self.total).unwrap_or(0),
            note,
        })
    }
}

/// A row of the change log.
#[derive(sqlx::FromRow)]
struct ChangeRow {
    revision: i64,
    kind: i64,
    note_id: String,
    title: Option<String>,
    content: Option<String>,
    tags: Option<String>,
    create_time: Option<i64>,
    update_time: Option<i64>,
}

impl ChangeRow {
    fn into_change(self, owner: &OwnerId) -> Result<Change, Error> {
        let revision = Revision::from_stored(self.revision);
        let id = NoteId::parse(&self.note_id)
            .map_err(|_| Error::Corrupt(format!("note id {:?}", self.note_id)))?;
        let note = || Note {
            id,
            owner: owner.clone(),
            title: Title::from_stored(self.title.clone().unwrap_or_default()),
            content: Content::from_stored(self.content.clone().unwrap_or_default()),
            tags: Tags::from_stored(self.tags.as_deref().unwrap_or_default()),
            revision,
            create_time: from_micros(self.create_time.unwrap_or_default()),
            update_time: from_micros(self.update_time.unwrap_or_default()),
        };
        let event = match self.kind {
            1 => ChangeEvent::Created(note()),
            2 => ChangeEvent::Updated(note()),
            3 => ChangeEvent::Deleted(id),
            kind => return Err(Error::Corrupt(format!("change kind {kind}"))),
        };
        Ok(Change { revision, event })
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
        let (revision, purge_time): (i64, Option<i64>) = sqlx::query_as(
            "INSERT INTO owner_revisions (owner_id, revision) VALUES (?, 1)
             ON CONFLICT (owner_id) DO UPDATE SET revision = revision + 1
             RETURNING revision, purge_time",
        )
        .bind(owner.as_str())
        .fetch_one(transaction.connection())
        .await?;
        if purge_time.is_some() {
            transaction.rollback().await;
            return Err(Error::AccountDeleted);
        }
        Ok(SqliteNoteWrite {
            transaction,
            owner: owner.clone(),
            revision: Revision::from_stored(revision),
            log_retention: self.log_retention,
        })
    }

    async fn purge(&self, owner: &OwnerId, now: SystemTime) -> Result<u64, Error> {
        // 1. Marked purged in a transaction of its own (the one write slot: no write of the
        //    owner runs meanwhile), so every later write is refused whatever happens next.
        let mut transaction = self.database.write().await?;
        let marked = sqlx::query(
            "INSERT INTO owner_revisions (owner_id, revision, purge_time) VALUES (?1, 0, ?2)
             ON CONFLICT (owner_id) DO UPDATE SET purge_time = COALESCE(purge_time, ?2)",
        )
        .bind(owner.as_str())
        .bind(to_micros(now))
        .execute(transaction.connection())
        .await
        .map(drop);
        transaction.finish(marked.map_err(Error::from)).await?;
        // 2. Deleted in chunks, each in its own write transaction: other users' writes get
        //    the write slot between chunks (see `PURGE_CHUNK`).
        let mut purged = 0;
        for (table, key) in [
            ("note_changes", "revision"),
            ("create_requests", "request_id"),
            ("note_tags", "tag, note_id"),
            ("notes", "id"),
        ] {
            loop {
                let mut transaction = self.database.write().await?;
                let deleted = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM {table} WHERE owner_id = ?1 AND ({key}) IN
                     (SELECT {key} FROM {table} WHERE owner_id = ?1 LIMIT ?2)"
                )))
                .bind(owner.as_str())
                .bind(PURGE_CHUNK)
                .execute(transaction.connection())
                .await
                .map(|done| done.rows_affected());
                let deleted = transaction.finish(deleted.map_err(Error::from)).await?;
                if table == "notes" {
                    purged += deleted;
                }
                if deleted < PURGE_CHUNK as u64 {
                    break;
                }
            }
        }
        Ok(purged)
    }

    async fn purged_since(
        &self,
        since: SystemTime,
        limit: u32,
    ) -> Result<Vec<(OwnerId, SystemTime)>, Error> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT owner_id, purge_time FROM owner_revisions
             WHERE purge_time >= ?1 ORDER BY purge_time LIMIT ?2",
        )
        .bind(to_micros(since))
        .bind(i64::from(limit))
        .fetch_all(&mut *self.database.connection().await?)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(owner, purged)| (OwnerId::from_stored(owner), from_micros(purged)))
            .collect())
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
            Some(tag) => sqlx::query_as::<_, PageRow>(
                "SELECT r.owner_revision, r.total, page.*
                 FROM (SELECT COALESCE(MAX(revision), 0) AS owner_revision,
                              COALESCE((SELECT note_count FROM owner_tag_counts
                                        WHERE owner_id = ?1 AND tag = ?2), 0) AS total
                       FROM owner_revisions WHERE owner_id = ?1) r
                 LEFT JOIN (
                 SELECT id, owner_id, title, content, tags, revision, create_time, update_time
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
                 ) page ON 1
                 ORDER BY page.id DESC",
            )
            .bind(owner.as_str())
            .bind(tag.as_str())
            .bind(before)
            .bind(limit)
            .bind(budget),
            None => sqlx::query_as::<_, PageRow>(
                "SELECT r.owner_revision, r.total, page.*
                 FROM (SELECT COALESCE(MAX(revision), 0) AS owner_revision,
                              COALESCE(MAX(note_count), 0) AS total
                       FROM owner_revisions WHERE owner_id = ?1) r
                 LEFT JOIN (
                 SELECT id, owner_id, title, content, tags, revision, create_time, update_time
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
                 ) page ON 1
                 ORDER BY page.id DESC",
            )
            .bind(owner.as_str())
            .bind(before)
            .bind(limit)
            .bind(budget),
        };
        let rows = statement
            .fetch(&mut *connection)
            .map_err(Error::from)
            .and_then(|row| async { row.into_parts() });
        fill_page(rows, &query).await
    }

    async fn changes(
        &self,
        owner: &OwnerId,
        after: Revision,
        limit: u32,
        byte_budget: usize,
    ) -> Result<Vec<Change>, Error> {
        let budget = i64::try_from(byte_budget).unwrap_or(i64::MAX);
        let rows = sqlx::query_as::<_, ChangeRow>(
            "SELECT revision, kind, note_id, title, content, tags, create_time, update_time
             FROM (
                 SELECT c.*,
                        COALESCE(octet_length(c.title) + octet_length(c.content), 0) AS size,
                        SUM(COALESCE(octet_length(c.title) + octet_length(c.content), 0))
                            OVER (ORDER BY c.revision ROWS UNBOUNDED PRECEDING) AS through
                 FROM note_changes c
                 WHERE c.owner_id = ?1 AND c.revision > ?2
                 ORDER BY c.revision LIMIT ?3
             )
             WHERE through - size < ?4
             ORDER BY revision",
        )
        .bind(owner.as_str())
        .bind(after.get())
        .bind(i64::from(limit.max(1)))
        .bind(budget)
        .fetch_all(&mut *self.database.connection().await?)
        .await?;
        let mut changes = rows
            .into_iter()
            .map(|row| row.into_change(owner))
            .collect::<Result<Vec<_>, _>>()?;
        within_budget(&mut changes, byte_budget);
        Ok(changes)
    }

    async fn revision(&self, owner: &OwnerId) -> Result<Revision, Error> {
        let revision: Option<i64> =
            sqlx::query_scalar("SELECT revision FROM owner_revisions WHERE owner_id = ?")
                .bind(owner.as_str())
                .fetch_optional(&mut *self.database.connection().await?)
                .await?;
        Ok(Revision::from_stored(revision.unwrap_or(0)))
    }

    async fn revisions(&self, owners: &[OwnerId]) -> Result<Vec<(OwnerId, Revision)>, Error> {
        let mut connection = self.database.connection().await?;
        let mut found = Vec::with_capacity(owners.len());
        for owner in owners {
            let revision: Option<i64> =
                sqlx::query_scalar("SELECT revision FROM owner_revisions WHERE owner_id = ?")
                    .bind(owner.as_str())
                    .fetch_optional(&mut *connection)
                    .await?;
            if let Some(revision) = revision {
                found.push((owner.clone(), Revision::from_stored(revision)));
            }
        }
        Ok(found)
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
    log_retention: i64,
}

impl SqliteNoteWrite {
    /// Logs `event` under `revision` and prunes the owner's log to its retention.
    async fn log(&mut self, revision: Revision, event: &ChangeEvent) -> Result<(), Error> {
        let note = match event {
            ChangeEvent::Created(note) | ChangeEvent::Updated(note) => Some(note),
            ChangeEvent::Deleted(_) => None,
        };
        sqlx::query(
            "INSERT INTO note_changes (owner_id, revision, kind, note_id, title, content, tags, create_time, update_time)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(self.owner.as_str())
        .bind(revision.get())
        .bind(i64::from(event.kind()))
        .bind(event.note_id().to_string())
        .bind(note.map(|note| note.title.as_str()))
        .bind(note.map(|note| note.content.as_str()))
        .bind(note.map(|note| note.tags.joined()))
        .bind(note.map(|note| to_micros(note.create_time)))
        .bind(note.map(|note| to_micros(note.update_time)))
        .execute(self.transaction.connection())
        .await?;
        sqlx::query("DELETE FROM note_changes WHERE owner_id = ? AND revision <= ?")
            .bind(self.owner.as_str())
            .bind(revision.get() - self.log_retention)
            .execute(self.transaction.connection())
            .await?;
        Ok(())
    }

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

/// Rows per multi-row statement: at most 9 columns each, far below SQLite's 32,766 bound
/// on a statement's parameters.
const ROWS_PER_STATEMENT: usize = 256;

impl NoteWrite for SqliteNoteWrite {
    fn revision(&self) -> Revision {
        self.revision
    }

    async fn take_more(&mut self, more: u32) -> Result<(), Error> {
        if more > 0 {
            sqlx::query("UPDATE owner_revisions SET revision = revision + ? WHERE owner_id = ?")
                .bind(i64::from(more))
                .bind(self.owner.as_str())
                .execute(self.transaction.connection())
                .await?;
        }
        Ok(())
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

    async fn earlier_requests(
        &mut self,
        request_ids: &[RequestId],
    ) -> Result<Vec<(RequestId, EarlierRequest)>, Error> {
        let mut found = Vec::new();
        for chunk in request_ids.chunks(ROWS_PER_STATEMENT) {
            let mut query = sqlx::QueryBuilder::<Sqlite>::new(
                "SELECT request_id, fingerprint, note_id FROM create_requests WHERE owner_id = ",
            );
            query.push_bind(self.owner.as_str());
            query.push(" AND request_id IN (");
            let mut ids = query.separated(", ");
            for request_id in chunk {
                ids.push_bind(request_id.to_string());
            }
            query.push(")");
            let rows: Vec<(String, Vec<u8>, String)> = query
                .build_query_as()
                .fetch_all(self.transaction.connection())
                .await?;
            for (request_id, fingerprint, note_id) in rows {
                found.push((
                    RequestId::parse(&request_id)
                        .map_err(|_| Error::Corrupt(format!("request id {request_id:?}")))?,
                    EarlierRequest {
                        fingerprint: fingerprint
                            .try_into()
                            .map_err(|_| Error::Corrupt("request fingerprint".into()))?,
                        note_id: NoteId::parse(&note_id)
                            .map_err(|_| Error::Corrupt(format!("note id {note_id:?}")))?,
                    },
                ));
            }
        }
        Ok(found)
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
        self.log(note.revision, &ChangeEvent::Created(note.clone()))
            .await?;
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

    async fn insert_many(&mut self, notes: &[(Note, Option<CreateRequest>)]) -> Result<(), Error> {
        // Each table's rows in multi-row statements: one per table and chunk instead of
        // several per note.
        for chunk in notes.chunks(ROWS_PER_STATEMENT) {
            let mut query = sqlx::QueryBuilder::<Sqlite>::new(
                "INSERT INTO notes (id, owner_id, title, content, tags, revision, create_time, update_time) ",
            );
            query.push_values(chunk, |mut row, (note, _)| {
                row.push_bind(note.id.to_string())
                    .push_bind(self.owner.as_str())
                    .push_bind(note.title.as_str())
                    .push_bind(note.content.as_str())
                    .push_bind(note.tags.joined())
                    .push_bind(note.revision.get())
                    .push_bind(to_micros(note.create_time))
                    .push_bind(to_micros(note.update_time));
            });
            query.build().execute(self.transaction.connection()).await?;

            let tags: Vec<(String, &str)> = chunk
                .iter()
                .flat_map(|(note, _)| {
                    note.tags
                        .iter()
                        .map(|tag| (note.id.to_string(), tag.as_str()))
                })
                .collect();
            for tags in tags.chunks(ROWS_PER_STATEMENT) {
                let mut query = sqlx::QueryBuilder::<Sqlite>::new(
                    "INSERT INTO note_tags (owner_id, tag, note_id) ",
                );
                query.push_values(tags, |mut row, (note_id, tag)| {
                    row.push_bind(self.owner.as_str())
                        .push_bind(*tag)
                        .push_bind(note_id.as_str());
                });
                query.build().execute(self.transaction.connection()).await?;
            }

            let mut query = sqlx::QueryBuilder::<Sqlite>::new(
                "INSERT INTO note_changes (owner_id, revision, kind, note_id, title, content, tags, create_time, update_time) ",
            );
            query.push_values(chunk, |mut row, (note, _)| {
                row.push_bind(self.owner.as_str())
                    .push_bind(note.revision.get())
                    .push_bind(i64::from(ChangeEvent::CREATED_KIND))
                    .push_bind(note.id.to_string())
                    .push_bind(note.title.as_str())
                    .push_bind(note.content.as_str())
                    .push_bind(note.tags.joined())
                    .push_bind(to_micros(note.create_time))
                    .push_bind(to_micros(note.update_time));
            });
            query.build().execute(self.transaction.connection()).await?;

            let requests: Vec<(&Note, &CreateRequest)> = chunk
                .iter()
                .filter_map(|(note, request)| request.as_ref().map(|request| (note, request)))
                .collect();
            if !requests.is_empty() {
                let mut query = sqlx::QueryBuilder::<Sqlite>::new(
                    "INSERT INTO create_requests (owner_id, request_id, fingerprint, note_id, create_time) ",
                );
                query.push_values(requests, |mut row, (note, request)| {
                    row.push_bind(self.owner.as_str())
                        .push_bind(request.request_id.to_string())
                        .push_bind(request.fingerprint.to_vec())
                        .push_bind(note.id.to_string())
                        .push_bind(to_micros(note.create_time));
                });
                query.build().execute(self.transaction.connection()).await?;
            }
        }
        if let Some(newest) = notes.iter().map(|(note, _)| note.revision).max() {
            sqlx::query("DELETE FROM note_changes WHERE owner_id = ? AND revision <= ?")
                .bind(self.owner.as_str())
                .bind(newest.get() - self.log_retention)
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
        self.insert_tags(note.id, &note.tags).await?;
        self.log(note.revision, &ChangeEvent::Updated(note.clone()))
            .await
    }

    async fn remove(&mut self, id: NoteId, revision: Revision) -> Result<(), Error> {
        // Its tag rows go with it (ON DELETE CASCADE).
        sqlx::query("DELETE FROM notes WHERE owner_id = ? AND id = ?")
            .bind(self.owner.as_str())
            .bind(id.to_string())
            .execute(self.transaction.connection())
            .await?;
        self.log(revision, &ChangeEvent::Deleted(id)).await
    }

    async fn commit(self) -> Result<(), Error> {
        Ok(self.transaction.commit().await?)
    }

    async fn rollback(self) {
        self.transaction.rollback().await;
    }
}
