use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Where a service keeps its data. Parsed once, when the configuration is read, so that a
/// typo fails before any port is bound.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A `sqlite://PATH` URL (a plain path is accepted and turned into one).
    Sqlite(String),
    /// A `postgres://` or `postgresql://` URL.
    Postgres(String),
}

impl DatabaseUrl {
    /// Parses a `--database-url` value.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err("is empty: give a postgres:// URL or a sqlite://PATH".into());
        }
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            // Parsing the options now names a malformed URL at start-up, not at first use.
            // The driver's message is not repeated: it may quote the URL, password included.
            sqlx::postgres::PgConnectOptions::from_str(raw)
                .map_err(|_| "is not a valid PostgreSQL URL".to_owned())?;
            return Ok(Self::Postgres(raw.to_owned()));
        }
        if raw.starts_with("sqlite:") {
            sqlx::sqlite::SqliteConnectOptions::from_str(raw)
                .map_err(|error| format!("is not a valid SQLite URL: {error}"))?;
            return Ok(Self::Sqlite(raw.to_owned()));
        }
        if raw.contains("://") {
            return Err(format!(
                "has an unsupported scheme {:?}: use postgres://, postgresql:// or sqlite://",
                raw.split("://").next().unwrap_or_default()
            ));
        }
        Ok(Self::Sqlite(format!("sqlite://{raw}")))
    }

    /// The URL with its password masked, for logs and error messages.
    pub fn redacted(&self) -> String {
        match self {
            Self::Sqlite(url) => url.clone(),
            Self::Postgres(url) => redact_password(url),
        }
    }
}

/// Never prints the password, so that configuration can be logged safely.
impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Masks the password of the URL's user info and of a `password=` query parameter (both are
/// honoured by the PostgreSQL driver).
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let authority = match authority.rsplit_once('@') {
        Some((credentials, host)) if credentials.contains(':') => {
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{user}:***@{host}")
        }
        _ => authority.to_owned(),
    };
    let mut redacted = format!("{scheme}://{authority}{path}");
    if let Some(query) = query {
        let parameters: Vec<String> = query
            .split('&')
            .map(|parameter| match parameter.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => parameter.to_owned(),
            })
            .collect();
        redacted.push('?');
        redacted.push_str(&parameters.join("&"));
    }
    redacted
}

/// PostgreSQL's limit on identifiers, database names included (longer ones are truncated,
/// and two truncated names can collide).
const MAX_POSTGRES_NAME: usize = 63;

/// `url` naming the database `name` instead of its own: `postgres://HOST/OLD?…` becomes
/// `postgres://HOST/NAME?…`. Refused when the URL picks its database with a `dbname=`
/// parameter (which would win over the path) or when `name` is too long for PostgreSQL.
pub fn postgres_url_with_database(url: &str, name: &str) -> Result<String, String> {
    if name.is_empty() || name.len() > MAX_POSTGRES_NAME {
        return Err(format!(
            "database name {name:?} must be 1 to {MAX_POSTGRES_NAME} bytes"
        ));
    }
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    if query.is_some_and(|query| {
        query
            .split('&')
            .any(|parameter| parameter.split('=').next() == Some("dbname"))
    }) {
        return Err("names its database with dbname=: name it in the path instead".into());
    }
    let authority_start = base.find("://").map_or(0, |scheme| scheme + 3);
    let authority_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |slash| authority_start + slash);
    let mut with_name = format!("{}/{name}", &base[..authority_end]);
    if let Some(query) = query {
        with_name.push('?');
        with_name.push_str(query);
    }
    Ok(with_name)
}

/// The database a PostgreSQL URL names (its path), if any.
pub fn postgres_database_name(url: &str) -> Option<&str> {
    let base = url.split('?').next().unwrap_or(url);
    let authority_start = base.find("://")? + 3;
    let slash = base[authority_start..].find('/')? + authority_start;
    Some(&base[slash + 1..]).filter(|name| !name.is_empty())
}

/// A clap parser for `--database-url`: its errors never repeat the value, which may hold a
/// password (clap's own "invalid value '…'" would print it).
#[derive(Debug, Clone, Copy, Default)]
pub struct DatabaseUrlParser;

impl clap::builder::TypedValueParser for DatabaseUrlParser {
    type Value = DatabaseUrl;

    fn parse_ref(
        &self,
        command: &clap::Command,
        argument: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<DatabaseUrl, clap::Error> {
        let flag = argument.map_or_else(|| "--database-url".to_owned(), ToString::to_string);
        let invalid = |reason: String| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("{flag}: {reason}\n"),
            )
            .with_cmd(command)
        };
        let raw = value
            .to_str()
            .ok_or_else(|| invalid("is not valid UTF-8".into()))?;
        DatabaseUrl::parse(raw).map_err(invalid)
    }
}

/// The database pool's bounds. Every setting has a flag and an environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct PoolConfig {
    /// Most database connections open at once (per process). On SQLite these are the
    /// readers; the one writer at a time has three connections of its own.
    #[arg(long = "database-max-connections", env = "NOTESUITE_DATABASE_MAX_CONNECTIONS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_connections: u32,

    /// How long start-up waits for its first database connection (TCP, TLS, authentication),
    /// the one migrations run on, before it fails naming the database. Connections the pool
    /// opens later are bounded by the acquire timeout.
    #[arg(long = "database-connect-timeout", env = "NOTESUITE_DATABASE_CONNECT_TIMEOUT", default_value = "5s", value_parser = parse_timeout)]
    pub connect_timeout: Duration,

    /// How long a call waits for a pooled connection (including opening one) before it fails
    /// with UNAVAILABLE (DATABASE_UNAVAILABLE): the bound on a call while the database is down.
    #[arg(long = "database-acquire-timeout", env = "NOTESUITE_DATABASE_ACQUIRE_TIMEOUT", default_value = "2s", value_parser = parse_timeout)]
    pub acquire_timeout: Duration,

    /// Longest one SQL statement may run (PostgreSQL `statement_timeout`; SQLite: the longest
    /// wait for the database's write lock).
    #[arg(long = "database-statement-timeout", env = "NOTESUITE_DATABASE_STATEMENT_TIMEOUT", default_value = "10s", value_parser = parse_timeout)]
    pub statement_timeout: Duration,

    /// Longest a PostgreSQL session may sit inside a transaction without running a statement
    /// (`idle_in_transaction_session_timeout`) before the server ends it. A replica that
    /// freezes mid-transaction (SIGSTOP, a paused VM, a stuck thread) would otherwise hold its
    /// row locks, and stall every write of the users it locked, for as long as it stays frozen.
    /// Our transactions never wait on anything but their own statements. Unused by SQLite (one
    /// process holds the database).
    #[arg(long = "database-idle-in-transaction-timeout", env = "NOTESUITE_DATABASE_IDLE_IN_TRANSACTION_TIMEOUT", default_value = "5s", value_parser = parse_timeout)]
    pub idle_in_transaction_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_connections: 8,
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(10),
            idle_in_transaction_timeout: Duration::from_secs(5),
        }
    }
}

/// A timeout between 1 ms and 1 hour: zero would fail every call, and anything longer is a
/// typo for a unit.
fn parse_timeout(raw: &str) -> Result<Duration, String> {
    let timeout = humantime::parse_duration(raw).map_err(|error| error.to_string())?;
    if timeout < Duration::from_millis(1) || timeout > Duration::from_secs(3600) {
        return Err("must be between 1ms and 1h".into());
    }
    Ok(timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_picks_the_backend() {
        assert!(matches!(
            DatabaseUrl::parse("postgres://u@h/db"),
            Ok(DatabaseUrl::Postgres(_))
        ));
        assert!(matches!(
            DatabaseUrl::parse("postgresql://u@h:5433/db"),
            Ok(DatabaseUrl::Postgres(_))
        ));
        assert_eq!(
            DatabaseUrl::parse("sqlite://notes.db"),
            Ok(DatabaseUrl::Sqlite("sqlite://notes.db".into()))
        );
        assert_eq!(
            DatabaseUrl::parse("/var/lib/notes.db"),
            Ok(DatabaseUrl::Sqlite("sqlite:///var/lib/notes.db".into()))
        );
        let error = DatabaseUrl::parse("mysql://h/db").expect_err("unsupported");
        assert!(error.contains("\"mysql\""), "{error}");
    }

    #[test]
    fn passwords_never_reach_the_logs() {
        let url = DatabaseUrl::parse("postgres://app:s3cret@db:5432/notes").expect("valid");
        assert_eq!(url.to_string(), "postgres://app:***@db:5432/notes");
        assert!(!format!("{url:?}").contains("s3cret"));
        let no_password = DatabaseUrl::parse("postgres://app@db/notes").expect("valid");
        assert_eq!(no_password.to_string(), "postgres://app@db/notes");
    }

    #[test]
    fn a_password_parameter_is_masked_too() {
        let url = DatabaseUrl::parse("postgres://app@db/notes?sslmode=require&password=s3cret")
            .expect("valid");
        assert_eq!(
            url.to_string(),
            "postgres://app@db/notes?sslmode=require&password=***"
        );
    }

    #[test]
    fn another_database_on_the_same_server() {
        assert_eq!(
            postgres_url_with_database("postgres://u:p@h:5432/demo?sslmode=require", "demo_users"),
            Ok("postgres://u:p@h:5432/demo_users?sslmode=require".to_owned())
        );
        assert_eq!(
            postgres_url_with_database("postgres://h", "x"),
            Ok("postgres://h/x".to_owned())
        );
        assert!(postgres_url_with_database("postgres://h/db?dbname=other", "x").is_err());
        assert!(postgres_url_with_database("postgres://h/db", &"n".repeat(64)).is_err());
        assert_eq!(
            postgres_database_name("postgres://h:1/demo?x=1"),
            Some("demo")
        );
        assert_eq!(postgres_database_name("postgres://h"), None);
    }

    #[test]
    fn timeouts_must_be_usable() {
        assert!(parse_timeout("0s").is_err());
        assert!(parse_timeout("2h").is_err());
        assert_eq!(parse_timeout("250ms"), Ok(Duration::from_millis(250)));
    }
}
