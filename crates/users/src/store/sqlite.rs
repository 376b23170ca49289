//! The embedded SQLite store: one file, WAL journal, embedded migrations.

use std::time::SystemTime;

use database::{PoolConfig, SqliteDatabase};

use super::{AccountDeletion, UserStore, from_micros, to_micros, unique_violation_is_email};
use crate::domain::{DisplayName, Email, User, UserChanges, UserId, Version};
use crate::error::Error;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Debug, Clone)]
pub struct SqliteUserStore {
    database: SqliteDatabase,
}

impl SqliteUserStore {
    /// Opens (creating if missing) the database at `url`, e.g. `sqlite://users.db`, and
    /// applies pending migrations.
    pub async fn open(url: &str, pool: &PoolConfig) -> Result<Self, Error> {
        let database = SqliteDatabase::open(url, pool, "users", &MIGRATOR).await?;
        Ok(Self { database })
    }

    async fn connection(&self) -> Result<database::ReadConnection, Error> {
        Ok(self.database.connection().await?)
    }
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: String,
    email: String,
    display_name: String,
    version: i64,
    create_time: i64,
    update_time: i64,
}

impl TryFrom<UserRow> for User {
    type Error = Error;

    fn try_from(row: UserRow) -> Result<Self, Error> {
        Ok(User {
            id: UserId::parse(&row.id)
                .map_err(|_| Error::Corrupt(format!("user id {:?}", row.id)))?,
            email: Email::from_stored(row.email),
            display_name: DisplayName::from_stored(row.display_name),
            version: Version::from_stored(row.version),
            create_time: from_micros(row.create_time),
            update_time: from_micros(row.update_time),
        })
    }
}

impl UserStore for SqliteUserStore {
    async fn insert(&self, user: &User, password_hash: &str) -> Result<(), Error> {
        let mut write = self.database.write().await?;
        let inserted = sqlx::query(
            "INSERT INTO users (id, email, email_key, display_name, password_hash, version, create_time, update_time)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(user.id.to_string())
        .bind(user.email.as_str())
        .bind(user.email.key())
        .bind(user.display_name.as_str())
        .bind(password_hash)
        .bind(user.version.get())
        .bind(to_micros(user.create_time))
        .bind(to_micros(user.update_time))
        .execute(write.connection())
        .await
        .map_err(unique_violation_is_email);
        write.finish(inserted.map(drop)).await
    }

    async fn get(&self, id: UserId) -> Result<Option<User>, Error> {
        sqlx::query_as::<_, UserRow>(
            "SELECT id, email, display_name, version, create_time, update_time FROM users WHERE id = ?",
        )
        .bind(id.to_string())
        .fetch_optional(&mut *self.connection().await?)
        .await?
        .map(User::try_from)
        .transpose()
    }

    async fn get_with_password_hash(&self, email: &Email) -> Result<Option<(User, String)>, Error> {
        let row: Option<(String, String, String, i64, i64, i64, String)> = sqlx::query_as(
            "SELECT id, email, display_name, version, create_time, update_time, password_hash
             FROM users WHERE email_key = ?",
        )
        .bind(email.key())
        .fetch_optional(&mut *self.connection().await?)
        .await?;
        row.map(
            |(id, email, display_name, version, create_time, update_time, hash)| {
                let user = User::try_from(UserRow {
                    id,
                    email,
                    display_name,
                    version,
                    create_time,
                    update_time,
                })?;
                Ok((user, hash))
            },
        )
        .transpose()
    }

    async fn get_many(&self, ids: &[UserId]) -> Result<Vec<User>, Error> {
        // One statement whatever the number of ids: they travel as a JSON array.
        let ids_json = format!(
            "[{}]",
            ids.iter()
                .map(|id| format!("\"{id}\""))
                .collect::<Vec<_>>()
                .join(",")
        );
        sqlx::query_as::<_, UserRow>(
            "SELECT id, email, display_name, version, create_time, update_time FROM users
             WHERE id IN (SELECT value FROM json_each(?))",
        )
        .bind(ids_json)
        .fetch_all(&mut *self.connection().await?)
        .await?
        .into_iter()
        .map(User::try_from)
        .collect()
    }

    async fn list(&self, after: Option<UserId>, limit: u32) -> Result<Vec<User>, Error> {
        sqlx::query_as::<_, UserRow>(
            "SELECT id, email, display_name, version, create_time, update_time FROM users
             WHERE ?1 IS NULL OR id > ?1 ORDER BY id LIMIT ?2",
        )
        .bind(after.map(|id| id.to_string()))
        .bind(i64::from(limit))
        .fetch_all(&mut *self.connection().await?)
        .await?
        .into_iter()
        .map(User::try_from)
        .collect()
    }

    async fn update(
        &self,
        id: UserId,
        expected: Version,
        changes: &UserChanges,
        now: SystemTime,
    ) -> Result<User, Error> {
        // A single compare-and-set statement: no read-modify-write window.
        let mut write = self.database.write().await?;
        let updated = sqlx::query_as::<_, UserRow>(
            "UPDATE users SET
                email = COALESCE(?1, email),
                email_key = COALESCE(?2, email_key),
                display_name = COALESCE(?3, display_name),
                version = version + 1,
                update_time = ?4
             WHERE id = ?5 AND version = ?6
             RETURNING id, email, display_name, version, create_time, update_time",
        )
        .bind(changes.email.as_ref().map(Email::as_str))
        .bind(changes.email.as_ref().map(Email::key))
        .bind(changes.display_name.as_ref().map(DisplayName::as_str))
        .bind(to_micros(now))
        .bind(id.to_string())
        .bind(expected.get())
        .fetch_optional(write.connection())
        .await
        .map_err(unique_violation_is_email);
        let updated = write.finish(updated).await?;
        match updated {
            Some(row) => User::try_from(row),
            None if self.get(id).await?.is_some() => Err(Error::EtagMismatch),
            None => Err(Error::UserNotFound),
        }
    }

    async fn delete(
        &self,
        id: UserId,
        expected: Option<Version>,
        now: SystemTime,
    ) -> Result<(), Error> {
        let mut write = self.database.write().await?;
        let deleted = async {
            let deleted =
                sqlx::query("DELETE FROM users WHERE id = ?1 AND (?2 IS NULL OR version = ?2)")
                    .bind(id.to_string())
                    .bind(expected.map(Version::get))
                    .execute(write.connection())
                    .await?
                    .rows_affected();
            if deleted > 0 {
                sqlx::query(
                    "INSERT INTO account_deletions (user_id, delete_time) VALUES (?1, ?2)
                     ON CONFLICT (user_id) DO NOTHING",
                )
                .bind(id.to_string())
                .bind(to_micros(now))
                .execute(write.connection())
                .await?;
            }
            Ok::<_, sqlx::Error>(deleted)
        }
        .await;
        let deleted = write.finish(deleted.map_err(Error::from)).await?;
        match deleted {
            0 if self.get(id).await?.is_some() => Err(Error::EtagMismatch),
            0 => Err(Error::UserNotFound),
            _ => Ok(()),
        }
    }

    async fn deletions(
        &self,
        since: Option<SystemTime>,
        pending_only: bool,
        limit: u32,
    ) -> Result<Vec<AccountDeletion>, Error> {
        let rows: Vec<(String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT user_id, delete_time, purge_time FROM account_deletions
             WHERE delete_time >= ?1 AND (NOT ?2 OR purge_time IS NULL)
             ORDER BY delete_time, user_id LIMIT ?3",
        )
        .bind(since.map_or(0, to_micros))
        .bind(pending_only)
        .bind(i64::from(limit))
        .fetch_all(&mut *self.connection().await?)
        .await?;
        rows.into_iter()
            .map(|(user_id, delete_time, purge_time)| {
                Ok(AccountDeletion {
                    user_id: UserId::parse(&user_id)
                        .map_err(|_| Error::Corrupt(format!("deleted account id {user_id:?}")))?,
                    delete_time: from_micros(delete_time),
                    purge_time: purge_time.map(from_micros),
                })
            })
            .collect()
    }

    async fn confirm_purged(&self, id: UserId, now: SystemTime) -> Result<(), Error> {
        let mut write = self.database.write().await?;
        let found = sqlx::query(
            "UPDATE account_deletions SET purge_time = COALESCE(purge_time, ?2) WHERE user_id = ?1",
        )
        .bind(id.to_string())
        .bind(to_micros(now))
        .execute(write.connection())
        .await
        .map(|done| done.rows_affected());
        let found = write.finish(found.map_err(Error::from)).await?;
        if found == 0 {
            return Err(Error::UserNotFound);
        }
        Ok(())
    }

    async fn check_writable(&self) -> Result<(), String> {
        self.database.check_writable().await
    }
}
