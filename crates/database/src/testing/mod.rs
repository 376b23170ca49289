//! Fresh databases for tests, on either backend, and [`backend_tests!`](crate::backend_tests)
//! to run one test body on both.
//!
//! PostgreSQL tests use the server named by `NOTESUITE_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`): each test gets a database of its own with
//! a random name, dropped when the test ends. A missing server fails the test with a message
//! saying so; it never skips (the test command decides, loudly, what not to run).

mod scratch;

use std::time::Duration;

pub use scratch::ScratchCluster;
use sqlx::{Connection as _, PgConnection};

/// The backends every store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server tests create their databases on.
pub fn postgres_server_url() -> String {
    std::env::var("NOTESUITE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database that exists for one test.
#[derive(Debug)]
pub struct TestDatabase {
    url: String,
    /// PostgreSQL databases to drop when the test ends.
    postgres_names: Vec<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    /// A new, empty database on `backend`.
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => Self::sqlite(),
            Backend::Postgres => Self::postgres().await,
        }
    }

    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir for a test database");
        Self {
            url: format!("sqlite://{}", dir.path().join("test.db").display()),
            postgres_names: Vec::new(),
            _dir: Some(dir),
        }
    }

    pub async fn postgres() -> Self {
        let server = postgres_server_url();
        let name = format!("notesuite_test_{}", uuid::Uuid::now_v7().simple());
        let mut admin = connect_admin(&server).await;
        // The name is ours (a UUID), not input: safe to splice.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|error| panic!("cannot create test database {name}: {error}"));
        let _ = admin.close().await;
        Self {
            url: with_database(&server, &name),
            postgres_names: vec![name],
            _dir: None,
        }
    }

    /// A fresh database name on the test server, not created: for `up --database-url`, which
    /// creates `NAME_SUFFIX` for each of `suffixes` itself. They are dropped when the test ends.
    pub fn postgres_names_for(suffixes: &[&str]) -> Self {
        let server = postgres_server_url();
        let name = format!("notesuite_test_{}", uuid::Uuid::now_v7().simple());
        Self {
            url: with_database(&server, &name),
            postgres_names: suffixes
                .iter()
                .map(|suffix| format!("{name}_{suffix}"))
                .collect(),
            _dir: None,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn backend(&self) -> Backend {
        if self.url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let names = std::mem::take(&mut self.postgres_names);
        if names.is_empty() {
            return;
        }
        // Drop runs inside the test's runtime, which cannot be blocked on: a thread of its
        // own drops the database (FORCE ends sessions the test left open).
        let server = postgres_server_url();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime to drop a test database");
            runtime.block_on(async {
                let mut admin = connect_admin(&server).await;
                for name in names {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await;
                }
            });
        })
        .join();
        if dropped.is_err() {
            eprintln!("could not drop a test database");
        }
    }
}

async fn connect_admin(server: &str) -> PgConnection {
    match tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(server)).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(error)) => panic!(
            "PostgreSQL tests need a server at {server} (set NOTESUITE_TEST_POSTGRES to \
             another one): {error}. `scripts/test` runs without them, saying so, only where \
             no server is reachable and NOTESUITE_REQUIRE_POSTGRES is unset."
        ),
        Err(_) => panic!("PostgreSQL at {server} did not answer within 10 s"),
    }
}

/// `server` with its database path replaced by `name`.
pub fn with_database(server: &str, name: &str) -> String {
    crate::postgres_url_with_database(server, name)
        .unwrap_or_else(|reason| panic!("test database {name}: {reason}"))
}

/// Runs each named `async fn name(backend: Backend)` as two tests, `sqlite::name` and
/// `postgres::name`, so that one body judges both backends.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::testing::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::testing::Backend::Postgres).await
                }
            )*
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_name_replaces_the_path() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            with_database("postgres://u@h?sslmode=disable", "t1"),
            "postgres://u@h/t1?sslmode=disable"
        );
    }
}
