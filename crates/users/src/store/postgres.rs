//! The PostgreSQL store: what a cluster runs, several replicas of users on one database. The
//! unique index on the normalised email holds even when replicas race.

use std::time::SystemTime;

use database::{PoolConfig, PostgresDatabase};
use sqlx::Postgres;
use sqlx::pool::PoolConnection;
use uuid::Uuid;

use super::{AccountDeletion, UserStore, from_micros, to_micros, unique_violation_is_email};
use crate::domain::{DisplayName, Email, User, UserChanges, UserId, Version};
use crate::error::Error;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, Clone)]
pub struct PostgresUserStore {
    database: PostgresDatabase,
}

impl PostgresUserStore {
    /// Connects to `url` and applies pending migrations (safe with replicas starting at once).
    pub async fn open(url: &str, pool: &PoolConfig) -> Result<Self, Error> {
        let database = PostgresDatabase::open(url, pool, "users", &MIGRATOR).await?;
        Ok(Self { database })
    }

    async fn connection(&self) -> Result<PoolConnection<Postgres>, Error> {
        Ok(self.database.connection().await?)
    }
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: Uuid,
    email: String,
    display_name: String,
    version: i64,
    create_time: i64,
    update_time: i64,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        User {
            id: UserId::from_uuid(row.id),
            email: Email::from_stored(row.email),
            display_name: DisplayName::from_stored(row.display_name),
            version: Version::from_stored(row.version),
            create_time: from_micros(row.create_time),
            update_time: from_micros(row.update_time),
        }
    }
}

const USER_COLUMNS: &str = "id, email, display_name, version, create_time, update_time";

impl UserStore for PostgresUserStore {
    async fn insert(&self, user: &User, password_hash: &str) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO users (id, email, email_key, display_name, password_hash, version, create_time, update_time)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(user.id.as_uuid())
        .bind(user.email.as_str())
        .bind(user.email.key())
        .bind(user.display_name.as_str())
        .bind(password_hash)
        .bind(user.version.get())
        .bind(to_micros(user.create_time))
        .bind(to_micros(user.update_time))
        .execute(&mut *self.connection().await?)
        .await
        .map_err(unique_violation_is_email)?;
        Ok(())
    }

    async fn get(&self, id: UserId) -> Result<Option<User>, Error> {
        Ok(sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id = $1"
        )))
        .bind(id.as_uuid())
        .fetch_optional(&mut *self.connection().await?)
        .await?
        .map(User::from))
    }

    async fn get_with_password_hash(&self, email: &Email) -> Result<Option<(User, String)>, Error> {
        let row: Option<(Uuid, String, String, i64, i64, i64, String)> = sqlx::query_as(
            "SELECT id, email, display_name, version, create_time, update_time, password_hash
             FROM users WHERE email_key = $1",
        )
        .bind(email.key())
        .fetch_optional(&mut *self.connection().await?)
        .await?;
        Ok(row.map(
            |(id, email, display_name, version, create_time, update_time, hash)| {
                let user = User::from(UserRow {
                    id,
                    email,
                    display_name,
                    version,
                    create_time,
                    update_time,
                });
                (user, hash)
            },
        ))
    }

    async fn get_many(&self, ids: &[UserId]) -> Result<Vec<User>, Error> {
        let ids: Vec<Uuid> = ids.iter().map(UserId::as_uuid).collect();
        Ok(sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id = ANY ($1)"
        )))
        .bind(ids)
        .fetch_all(&mut *self.connection().await?)
        .await?
        .into_iter()
        .map(User::from)
        .collect())
    }

    async fn list(&self, after: Option<UserId>, limit: u32) -> Result<Vec<User>, Error> {
        // The nil UUID sorts before every id: one query shape for every page.
        let after = after.map_or(Uuid::nil(), |id| id.as_uuid());
        Ok(sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id > $1 ORDER BY id LIMIT $2"
        )))
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&mut *self.connection().await?)
        .await?
        .into_iter()
        .map(User::from)
        .collect())
    }

    async fn update(
        &self,
        id: UserId,
        expected: Version,
        changes: &UserChanges,
        now: SystemTime,
    ) -> Result<User, Error> {
        // A single compare-and-set statement: no read-modify-write window.
        let updated = sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(format!(
            "UPDATE users SET
                email = COALESCE($1, email),
                email_key = COALESCE($2, email_key),
                display_name = COALESCE($3, display_name),
                version = version + 1,
                update_time = $4
             WHERE id = $5 AND version = $6
             RETURNING {USER_COLUMNS}"
        )))
        .bind(changes.email.as_ref().map(Email::as_str))
        .bind(changes.email.as_ref().map(Email::key))
        .bind(changes.display_name.as_ref().map(DisplayName::as_str))
        .bind(to_micros(now))
        .bind(id.as_uuid())
        .bind(expected.get())
        .fetch_optional(&mut *self.connection().await?)
        .await
        .map_err(unique_violation_is_email)?;
        match updated {
            Some(row) => Ok(User::from(row)),
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
        // One statement: the account and its deletion record go together or not at all.
        let deleted = sqlx::query(
            "WITH deleted AS (
                 DELETE FROM users WHERE id = $1 AND ($2::bigint IS NULL OR version = $2)
                 RETURNING id
             )
             INSERT INTO account_deletions (user_id, delete_time)
             SELECT id, $3 FROM deleted
             ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(id.as_uuid())
        .bind(expected.map(Version::get))
        .bind(to_micros(now))
        .execute(&mut *self.connection().await?)
        .await?
        .rows_affected();
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
        let rows: Vec<(Uuid, i64, Option<i64>)> = sqlx::query_as(
            "SELECT user_id, delete_time, purge_time FROM account_deletions
             WHERE delete_time >= $1 AND (NOT $2 OR purge_time IS NULL)
             ORDER BY delete_time, user_id LIMIT $3",
        )
        .bind(since.map_or(0, to_micros))
        .bind(pending_only)
        .bind(i64::from(limit))
        .fetch_all(&mut *self.connection().await?)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(user_id, delete_time, purge_time)| AccountDeletion {
                user_id: UserId::from_uuid(user_id),
                delete_time: from_micros(delete_time),
                purge_time: purge_time.map(from_micros),
            })
            .collect())
    }

    async fn confirm_purged(&self, id: UserId, now: SystemTime) -> Result<(), Error> {
        let found = sqlx::query(
            "UPDATE account_deletions SET purge_time = COALESCE(purge_time, $2) WHERE user_id = $1",
        )
        .bind(id.as_uuid())
        .bind(to_micros(now))
        .execute(&mut *self.connection().await?)
        .await?
        .rows_affected();
        if found == 0 {
            return Err(Error::UserNotFound);
        }
        Ok(())
    }

    async fn check_writable(&self) -> Result<(), String> {
        self.database.check_writable().await
    }
}
