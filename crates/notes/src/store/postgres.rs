//! The PostgreSQL store: what a cluster runs, several replicas of notes on one database.
//! Every write is one READ COMMITTED transaction that starts by taking the owner's revision
//! row (see `migrations/postgres/0001_notes.sql` for why that leaves no hole).

use std::time::SystemTime;

use database::{PoolConfig, PostgresDatabase, WriteTransaction};
use futures_util::TryStreamExt as _;
use sqlx::Postgres;
use uuid::Uuid;

use super::{
    CreateRequest, DEFAULT_LOG_RETENTION, EarlierRequest, ListQuery, ListedPage, NoteStore,
    NoteWrite, PURGE_CHUNK, PageRowParts, fill_page, from_micros, to_micros, within_budget,
};
use crate::domain::{
    Change, ChangeEvent, Content, Note, NoteId, OwnerId, RequestId, Revision, Tags, Title,
};
use crate::error::Error;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, Clone)]
pub struct PostgresNoteStore {
    database: PostgresDatabase,
    log_retention: i64,
}

impl PostgresNoteStore {
    /// Connects to `url` and applies pending migrations (safe with replicas starting at once).
    pub async fn open(url: &str, pool: &PoolConfig) -> Result<Self, Error> {
        let database = PostgresDatabase::open(url, pool, "notes", &MIGRATOR).await?;
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

    /// The database, for the change feed's listener and notifier.
    pub(crate) fn database(&self) -> &PostgresDatabase {
        &self.database
    }
}

#[derive(sqlx::FromRow)]
struct NoteRow {
    id: Uuid,
    owner_id: String,
    title: String,
    content: String,
    tags: Vec<String>,
    revision: i64,
    create_time: i64,
    update_time: i64,
}

impl From<NoteRow> for Note {
    fn from(row: NoteRow) -> Self {
        Note {
            id: NoteId::from_uuid(row.id),
            owner: OwnerId::from_verified_token(row.owner_id),
            title: Title::from_stored(row.title),
            content: Content::from_stored(row.content),
            tags: Tags::from_stored_list(row.tags),
            revision: Revision::from_stored(row.revision),
            create_time: from_micros(row.create_time),
            update_time: from_micros(row.update_time),
        }
    }
}

/// A row of a listing: the owner's revision and the listing's total, and a note unless the
/// listing is empty.
#[derive(sqlx::FromRow)]
struct PageRow {
    owner_revision: i64,
    total: i64,
    id: Option<Uuid>,
    owner_id: Option<String>,
    title: Option<String>,
    content: Option<String>,
    tags: Option<Vec<String>>,
    revision: Option<i64>,
    create_time: Option<i64>,
    update_time: Option<i64>,
}

impl PageRow {
    fn into_parts(self) -> PageRowParts {
        let note = match (self.id, self.owner_id, self.title, self.content, self.tags) {
            (Some(id), Some(owner_id), Some(title), Some(content), Some(tags)) => {
                Some(Note::from(NoteRow {
                    id,
                    owner_id,
                    title,
                    content,
                    tags,
                    revision: self.revision.unwrap_or_default(),
                    create_time: self.create_time.unwrap_or_default(),
                    update_time: self.update_time.unwrap_or_default(),
                }))
            }
            _ => None,
        };
        PageRowParts {
            revision: Revision::from_stored(self.owner_revision),
            total: u64::try_from(self.total).unwrap_or(0),
            note,
        }
    }
}

/// A row of the change log.
#[derive(sqlx::FromRow)]
struct ChangeRow {
    revision: i64,
    kind: i16,
    note_id: Uuid,
    title: Option<String>,
    content: Option<String>,
    tags: Option<Vec<String>>,
    create_time: Option<i64>,
    update_time: Option<i64>,
}

impl ChangeRow {
    fn into_change(self, owner: &OwnerId) -> Result<Change, Error> {
        let revision = Revision::from_stored(self.revision);
        let note = || Note {
            id: NoteId::from_uuid(self.note_id),
            owner: owner.clone(),
            title: Title::from_stored(self.title.clone().unwrap_or_default()),
            content: Content::from_stored(self.content.clone().unwrap_or_default()),
            tags: Tags::from_stored_list(self.tags.clone().unwrap_or_default()),
            revision,
            create_time: from_micros(self.create_time.unwrap_or_default()),
            update_time: from_micros(self.update_time.unwrap_or_default()),
        };
        let event = match self.kind {
            1 => ChangeEvent::Created(note()),
            2 => ChangeEvent::Updated(note()),
            3 => ChangeEvent::Deleted(NoteId::from_uuid(self.note_id)),
            kind => return Err(Error::Corrupt(format!("change kind {kind}"))),
        };
        Ok(Change { revision, event })
    }
}

async fn select_note(
    executor: impl sqlx::PgExecutor<'_>,
    owner: &OwnerId,
    id: NoteId,
) -> Result<Option<Note>, Error> {
    Ok(sqlx::query_as::<_, NoteRow>(
        "SELECT n.id, n.owner_id, n.title, n.content, n.tags, n.revision, n.create_time, n.update_time
         FROM notes n WHERE n.owner_id = $1 AND n.id = $2",
    )
    .bind(owner.as_str())
    .bind(id.as_uuid())
    .fetch_optional(executor)
    .await?
    .map(Note::from))
}

impl NoteStore for PostgresNoteStore {
    type Write = PostgresNoteWrite;

    async fn write(&self, owner: &OwnerId) -> Result<PostgresNoteWrite, Error> {
        let mut transaction = self.database.write().await?;
        let (revision, purge_time): (i64, Option<i64>) = sqlx::query_as(
            "INSERT INTO owner_revisions AS r (owner_id, revision) VALUES ($1, 1)
             ON CONFLICT (owner_id) DO UPDATE SET revision = r.revision + 1
             RETURNING revision, purge_time",
        )
        .bind(owner.as_str())
        .fetch_one(transaction.connection())
        .await?;
        // Read under the row's lock: a purge that committed while this waited is seen.
        if purge_time.is_some() {
            transaction.rollback().await;
            return Err(Error::AccountDeleted);
        }
        Ok(PostgresNoteWrite {
            transaction,
            owner: owner.clone(),
            revision: Revision::from_stored(revision),
            log_retention: self.log_retention,
        })
    }

    async fn purge(&self, owner: &OwnerId, now: SystemTime) -> Result<u64, Error> {
        // 1. Marked purged under the owner's row lock (it waits for a write in progress) and
        //    committed at once: every later write is refused, whatever happens next.
        let mut transaction = self.database.write().await?;
        let marked = sqlx::query(
            "INSERT INTO owner_revisions AS r (owner_id, revision, purge_time) VALUES ($1, 0, $2)
             ON CONFLICT (owner_id) DO UPDATE SET purge_time = COALESCE(r.purge_time, $2)",
        )
        .bind(owner.as_str())
        .bind(to_micros(now))
        .execute(transaction.connection())
        .await
        .map(drop);
        transaction.finish(marked.map_err(Error::from)).await?;
        // 2. Deleted in chunks, each statement its own transaction (see `PURGE_CHUNK`). Tag
        //    rows before notes: by the owner's range, rather than a cascade per note.
        let mut connection = self.database.connection().await?;
        for table in ["note_changes", "create_requests", "note_tags"] {
            loop {
                let deleted = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM {table} WHERE ctid IN
                     (SELECT ctid FROM {table} WHERE owner_id = $1 LIMIT $2)"
                )))
                .bind(owner.as_str())
                .bind(PURGE_CHUNK)
                .execute(&mut *connection)
                .await?
                .rows_affected();
                if deleted < PURGE_CHUNK as u64 {
                    break;
                }
            }
        }
        let mut purged = 0;
        loop {
            let deleted = sqlx::query(
                "DELETE FROM notes WHERE id IN
                 (SELECT id FROM notes WHERE owner_id = $1 LIMIT $2)",
            )
            .bind(owner.as_str())
            .bind(PURGE_CHUNK)
            .execute(&mut *connection)
            .await?
            .rows_affected();
            purged += deleted;
            if deleted < PURGE_CHUNK as u64 {
                return Ok(purged);
            }
        }
    }

    async fn purged_since(
        &self,
        since: SystemTime,
        limit: u32,
    ) -> Result<Vec<(OwnerId, SystemTime)>, Error> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT owner_id, purge_time FROM owner_revisions
             WHERE purge_time >= $1 ORDER BY purge_time LIMIT $2",
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
        let before = query.before.unwrap_or(NoteId::MAX).as_uuid();
        let limit = i64::from(query.limit) + 1;
        let mut connection = self.database.connection().await?;
        let budget = i64::try_from(query.byte_budget).unwrap_or(i64::MAX);
        // The page is cut in SQL too, so that the server sends the notes that fit and one more
        // at most, never `limit` big notes for `fill_page` to drop: `through` is how many
        // bytes the page holds up to and including each note, and sizes are read from the
        // values' headers, without detoasting them. The owner's revision comes from the same
        // statement, hence the same snapshot: the page reflects every change up to it.
        let statement = match query.tag {
            Some(tag) => sqlx::query_as::<_, PageRow>(
                "SELECT r.owner_revision, r.total, page.*
                 FROM (SELECT COALESCE(MAX(revision), 0) AS owner_revision,
                              COALESCE((SELECT note_count FROM owner_tag_counts
                                        WHERE owner_id = $1 AND tag = $2), 0) AS total
                       FROM owner_revisions WHERE owner_id = $1) r
                 LEFT JOIN (
                 SELECT id, owner_id, title, content, tags, revision, create_time, update_time
                 FROM (
                     SELECT n.id, n.owner_id, n.title, n.content, n.tags, n.revision,
                            n.create_time, n.update_time,
                            octet_length(n.title) + octet_length(n.content) AS size,
                            SUM(octet_length(n.title) + octet_length(n.content))
                                OVER (ORDER BY t.note_id DESC ROWS UNBOUNDED PRECEDING) AS through
                     FROM note_tags t JOIN notes n ON n.id = t.note_id
                     WHERE t.owner_id = $1 AND t.tag = $2 AND t.note_id < $3
                     ORDER BY t.note_id DESC LIMIT $4
                 ) page
                 WHERE through - size < $5
                 ) page ON true
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
                       FROM owner_revisions WHERE owner_id = $1) r
                 LEFT JOIN (
                 SELECT id, owner_id, title, content, tags, revision, create_time, update_time
                 FROM (
                     SELECT n.id, n.owner_id, n.title, n.content, n.tags, n.revision,
                            n.create_time, n.update_time,
                            octet_length(n.title) + octet_length(n.content) AS size,
                            SUM(octet_length(n.title) + octet_length(n.content))
                                OVER (ORDER BY n.id DESC ROWS UNBOUNDED PRECEDING) AS through
                     FROM notes n
                     WHERE n.owner_id = $1 AND n.id < $2
                     ORDER BY n.id DESC LIMIT $3
                 ) page
                 WHERE through - size < $4
                 ) page ON true
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
            .map_ok(PageRow::into_parts);
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
        // Cut by size in SQL as listings are: `through` is the bytes up to each change.
        let rows = sqlx::query_as::<_, ChangeRow>(
            "SELECT revision, kind, note_id, title, content, tags, create_time, update_time
             FROM (
                 SELECT c.*,
                        COALESCE(octet_length(c.title) + octet_length(c.content), 0) AS size,
                        SUM(COALESCE(octet_length(c.title) + octet_length(c.content), 0))
                            OVER (ORDER BY c.revision ROWS UNBOUNDED PRECEDING) AS through
                 FROM note_changes c
                 WHERE c.owner_id = $1 AND c.revision > $2
                 ORDER BY c.revision LIMIT $3
             ) batch
             WHERE through - size < $4
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
            sqlx::query_scalar("SELECT revision FROM owner_revisions WHERE owner_id = $1")
                .bind(owner.as_str())
                .fetch_optional(&mut *self.database.connection().await?)
                .await?;
        Ok(Revision::from_stored(revision.unwrap_or(0)))
    }

    async fn revisions(&self, owners: &[OwnerId]) -> Result<Vec<(OwnerId, Revision)>, Error> {
        let ids: Vec<&str> = owners.iter().map(OwnerId::as_str).collect();
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT owner_id, revision FROM owner_revisions WHERE owner_id = ANY($1::text[])",
        )
        .bind(ids)
        .fetch_all(&mut *self.database.connection().await?)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(owner, revision)| {
                (
                    OwnerId::from_verified_token(owner),
                    Revision::from_stored(revision),
                )
            })
            .collect())
    }

    fn start_change_feed(
        &self,
        hub: &crate::watch::ChangeHub,
        stop: &tokio_util::sync::CancellationToken,
    ) {
        crate::watch::postgres::start(hub, self, stop);
    }

    async fn check_writable(&self) -> Result<(), String> {
        self.database.check_writable().await
    }
}

#[derive(Debug)]
pub struct PostgresNoteWrite {
    transaction: WriteTransaction<Postgres>,
    owner: OwnerId,
    revision: Revision,
    log_retention: i64,
}

impl NoteWrite for PostgresNoteWrite {
    fn revision(&self) -> Revision {
        self.revision
    }

    async fn take_more(&mut self, more: u32) -> Result<(), Error> {
        if more > 0 {
            sqlx::query("UPDATE owner_revisions SET revision = revision + $2 WHERE owner_id = $1")
                .bind(self.owner.as_str())
                .bind(i64::from(more))
                .execute(self.transaction.connection())
                .await?;
        }
        Ok(())
    }

    async fn earlier_request(
        &mut self,
        request_id: RequestId,
    ) -> Result<Option<EarlierRequest>, Error> {
        let earlier: Option<(Vec<u8>, Uuid)> = sqlx::query_as(
            "SELECT fingerprint, note_id FROM create_requests WHERE owner_id = $1 AND request_id = $2",
        )
        .bind(self.owner.as_str())
        .bind(request_id.as_uuid())
        .fetch_optional(self.transaction.connection())
        .await?;
        earlier
            .map(|(fingerprint, note_id)| {
                Ok(EarlierRequest {
                    fingerprint: fingerprint
                        .try_into()
                        .map_err(|_| Error::Corrupt("request fingerprint".into()))?,
                    note_id: NoteId::from_uuid(note_id),
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
        if request_ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = request_ids.iter().map(RequestId::as_uuid).collect();
        let rows: Vec<(Uuid, Vec<u8>, Uuid)> = sqlx::query_as(
            "SELECT request_id, fingerprint, note_id FROM create_requests
             WHERE owner_id = $1 AND request_id = ANY ($2)",
        )
        .bind(self.owner.as_str())
        .bind(ids)
        .fetch_all(self.transaction.connection())
        .await?;
        rows.into_iter()
            .map(|(request_id, fingerprint, note_id)| {
                Ok((
                    RequestId::from_uuid(request_id),
                    EarlierRequest {
                        fingerprint: fingerprint
                            .try_into()
                            .map_err(|_| Error::Corrupt("request fingerprint".into()))?,
                        note_id: NoteId::from_uuid(note_id),
                    },
                ))
            })
            .collect()
    }

    async fn insert(&mut self, note: &Note, request: Option<CreateRequest>) -> Result<(), Error> {
        // One round trip for the note, its tag rows, its change-log row (and the log's
        // pruning) and its idempotency record.
        sqlx::query(
            "WITH note AS (
                 INSERT INTO notes (id, owner_id, title, content, tags, revision, create_time, update_time)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ), tags AS (
                 INSERT INTO note_tags (owner_id, tag, note_id)
                 SELECT $2, tag, $1 FROM unnest($5::text[]) AS tag
             ), change AS (
                 INSERT INTO note_changes (owner_id, revision, kind, note_id, title, content, tags, create_time, update_time)
                 VALUES ($2, $6, 1, $1, $3, $4, $5, $7, $8)
             ), pruned AS (
                 DELETE FROM note_changes WHERE owner_id = $2 AND revision <= $6 - $11
             )
             INSERT INTO create_requests (owner_id, request_id, fingerprint, note_id, create_time)
             SELECT $2, $9, $10, $1, $7 WHERE $9::uuid IS NOT NULL",
        )
        .bind(note.id.as_uuid())
        .bind(self.owner.as_str())
        .bind(note.title.as_str())
        .bind(note.content.as_str())
        .bind(note.tags.as_strs())
        .bind(note.revision.get())
        .bind(to_micros(note.create_time))
        .bind(to_micros(note.update_time))
        .bind(request.map(|request| request.request_id.as_uuid()))
        .bind(request.map(|request| request.fingerprint.to_vec()))
        .bind(self.log_retention)
        .execute(self.transaction.connection())
        .await?;
        Ok(())
    }

    async fn insert_many(&mut self, notes: &[(Note, Option<CreateRequest>)]) -> Result<(), Error> {
        let Some(newest) = notes.iter().map(|(note, _)| note.revision).max() else {
            return Ok(());
        };
        // One round trip for the batch: the rows go as arrays, one per column (tags joined
        // with commas, which no tag contains), and the statement is `insert`'s, set-wise.
        sqlx::query(
            "WITH input AS (
                 SELECT id, title, content, string_to_array(tags, ',') AS tags, revision,
                        create_time, update_time, request_id, fingerprint
                 FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::bigint[],
                             $7::bigint[], $8::bigint[], $9::uuid[], $10::bytea[])
                      AS i(id, title, content, tags, revision, create_time, update_time,
                           request_id, fingerprint)
             ), note AS (
                 INSERT INTO notes (id, owner_id, title, content, tags, revision, create_time, update_time)
                 SELECT id, $1, title, content, tags, revision, create_time, update_time FROM input
             ), tags AS (
                 INSERT INTO note_tags (owner_id, tag, note_id)
                 SELECT $1, tag, input.id FROM input, unnest(input.tags) AS tag
             ), change AS (
                 INSERT INTO note_changes (owner_id, revision, kind, note_id, title, content, tags, create_time, update_time)
                 SELECT $1, revision, 1, id, title, content, tags, create_time, update_time FROM input
             ), pruned AS (
                 DELETE FROM note_changes WHERE owner_id = $1 AND revision <= $11 - $12
             )
             INSERT INTO create_requests (owner_id, request_id, fingerprint, note_id, create_time)
             SELECT $1, request_id, fingerprint, id, create_time FROM input
             WHERE request_id IS NOT NULL",
        )
        .bind(self.owner.as_str())
        .bind(notes.iter().map(|(note, _)| note.id.as_uuid()).collect::<Vec<_>>())
        .bind(notes.iter().map(|(note, _)| note.title.as_str()).collect::<Vec<_>>())
        .bind(notes.iter().map(|(note, _)| note.content.as_str()).collect::<Vec<_>>())
        .bind(notes.iter().map(|(note, _)| note.tags.joined()).collect::<Vec<_>>())
        .bind(notes.iter().map(|(note, _)| note.revision.get()).collect::<Vec<_>>())
        .bind(notes.iter().map(|(note, _)| to_micros(note.create_time)).collect::<Vec<_>>())
        .bind(notes.iter().map(|(note, _)| to_micros(note.update_time)).collect::<Vec<_>>())
        .bind(
            notes
                .iter()
                .map(|(_, request)| request.map(|request| request.request_id.as_uuid()))
                .collect::<Vec<_>>(),
        )
        .bind(
            notes
                .iter()
                .map(|(_, request)| request.map(|request| request.fingerprint.to_vec()))
                .collect::<Vec<_>>(),
        )
        .bind(newest.get())
        .bind(self.log_retention)
        .execute(self.transaction.connection())
        .await?;
        Ok(())
    }

    async fn replace(&mut self, note: &Note) -> Result<(), Error> {
        sqlx::query(
            "WITH note AS (
                 UPDATE notes SET title = $3, content = $4, tags = $5, revision = $6, update_time = $7
                 WHERE owner_id = $1 AND id = $2
             ), dropped AS (
                 DELETE FROM note_tags WHERE note_id = $2 AND NOT (tag = ANY ($5::text[]))
             ), change AS (
                 INSERT INTO note_changes (owner_id, revision, kind, note_id, title, content, tags, create_time, update_time)
                 SELECT $1, $6, 2, $2, $3, $4, $5, create_time, $7 FROM notes WHERE owner_id = $1 AND id = $2
             ), pruned AS (
                 DELETE FROM note_changes WHERE owner_id = $1 AND revision <= $6 - $8
             )
             INSERT INTO note_tags (owner_id, tag, note_id)
             SELECT $1, tag, $2 FROM unnest($5::text[]) AS tag
             ON CONFLICT DO NOTHING",
        )
        .bind(self.owner.as_str())
        .bind(note.id.as_uuid())
        .bind(note.title.as_str())
        .bind(note.content.as_str())
        .bind(note.tags.as_strs())
        .bind(note.revision.get())
        .bind(to_micros(note.update_time))
        .bind(self.log_retention)
        .execute(self.transaction.connection())
        .await?;
        Ok(())
    }

    async fn remove(&mut self, id: NoteId, revision: Revision) -> Result<(), Error> {
        // Its tag rows go with it (ON DELETE CASCADE).
        sqlx::query(
            "WITH note AS (
                 DELETE FROM notes WHERE owner_id = $1 AND id = $2
             ), change AS (
                 INSERT INTO note_changes (owner_id, revision, kind, note_id)
                 VALUES ($1, $3, 3, $2)
             )
             DELETE FROM note_changes WHERE owner_id = $1 AND revision <= $3 - $4",
        )
        .bind(self.owner.as_str())
        .bind(id.as_uuid())
        .bind(revision.get())
        .bind(self.log_retention)
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
