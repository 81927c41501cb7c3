//! The database: schema, models (one file per entity), embedded migrations and the connection pool.
//!
//! Knows nothing about HTTP or GraphQL. Model functions take a [`Conn`] and return `QueryResult`.
//! Blocking diesel work runs on the pool's blocking threads ([`Db::interact`]), never on the async
//! executor's threads.
//!
//! Two backends behind one connection type ([`Conn`], a diesel `MultiConnection`): SQLite by default
//! (WAL journaling, foreign keys on and a busy timeout on every connection) and PostgreSQL for
//! several nodes, chosen by the database URL. The models use only types both share (times are Unix
//! milliseconds in `BIGINT` columns).

pub mod models;
pub mod schema;

use std::path::{Path, PathBuf};
use std::time::Duration;

use deadpool::managed::{Hook, HookError};
use deadpool_diesel::Runtime;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

/// How long a connection waits for a lock held by another writer before failing with `SQLITE_BUSY`.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Migrations of each backend (same tables; SQL differs in identity columns).
pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// A connection to either backend. Every model function takes one.
#[derive(diesel::MultiConnection)]
pub enum Conn {
    Postgres(diesel::PgConnection),
    Sqlite(diesel::SqliteConnection),
}

/// Runs `f` in a SQLite transaction that takes the write lock when it begins (`BEGIN IMMEDIATE`).
///
/// A deferred transaction (diesel's default `BEGIN`) that reads and then writes cannot upgrade its
/// lock once another connection has committed since its read: it fails at once with "database is
/// locked", whatever the busy timeout. An immediate one waits for the lock (up to the busy
/// timeout) before it reads, so concurrent read-then-write transactions run one after the other.
/// Nested transactions inside `f` are savepoints, as usual.
fn sqlite_immediate_transaction<T, E, F>(conn: &mut Conn, f: F) -> Result<T, TxError<E>>
where
    F: FnOnce(&mut Conn) -> Result<T, TxError<E>>,
{
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    let Conn::Sqlite(sqlite) = conn else {
        return conn.transaction(f);
    };
    AnsiTransactionManager::begin_transaction_sql(sqlite, "BEGIN IMMEDIATE")?;
    let result = f(conn);
    let Conn::Sqlite(sqlite) = conn else {
        // The backend of a connection does not change under `f`.
        return Err(diesel::result::Error::BrokenTransactionManager.into());
    };
    match result {
        Ok(value) => {
            if let Err(e) = AnsiTransactionManager::commit_transaction(sqlite) {
                let _ = AnsiTransactionManager::rollback_transaction(sqlite);
                return Err(e.into());
            }
            Ok(value)
        }
        Err(e) => {
            AnsiTransactionManager::rollback_transaction(sqlite)?;
            Err(e)
        }
    }
}

/// Now, in Unix milliseconds (the unit of every time column).
pub fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// Where the database lives, parsed from a database URL.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DatabaseLocation {
    /// An SQLite file (`sqlite://path`, `sqlite:path` or a plain path).
    SqliteFile(PathBuf),
    /// A PostgreSQL server (`postgres://` or `postgresql://` URL, passed to libpq as is).
    Postgres(String),
}

/// A database URL that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlError {
    #[error("the database URL is empty")]
    Empty,
    #[error(
        "unsupported database scheme `{0}`: supported are sqlite:// (a file path) and postgres://"
    )]
    UnsupportedScheme(String),
}

impl DatabaseLocation {
    /// Parses `sqlite://./data/classroom.db`, `sqlite:data.db`, a plain path, or `postgres://...`.
    pub fn parse(url: &str) -> Result<DatabaseLocation, UrlError> {
        let url = url.trim();
        if url.is_empty() {
            return Err(UrlError::Empty);
        }
        let path = if let Some(rest) = url.strip_prefix("sqlite://") {
            rest
        } else if let Some(rest) = url.strip_prefix("sqlite:") {
            rest
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseLocation::Postgres(url.to_owned()));
        } else if let Some((scheme, _)) = url.split_once("://") {
            return Err(UrlError::UnsupportedScheme(scheme.to_owned()));
        } else {
            url
        };
        if path.is_empty() {
            return Err(UrlError::Empty);
        }
        Ok(DatabaseLocation::SqliteFile(PathBuf::from(path)))
    }

    /// Which backend, for logs.
    pub fn backend(&self) -> &'static str {
        match self {
            DatabaseLocation::SqliteFile(_) => "sqlite",
            DatabaseLocation::Postgres(_) => "postgres",
        }
    }
}

/// Why the pool could not be opened or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    #[error("cannot create the database directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("cannot build the connection pool: {0}")]
    Build(String),
    #[error("no database connection available: {0}")]
    Pool(String),
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("migrations failed: {0}")]
    Migrate(String),
    #[error("database task failed: {0}")]
    Interact(String),
}

impl DbError {
    /// A write broke a unique constraint (the thing exists already).
    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            DbError::Query(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            ))
        )
    }
}

type Manager = deadpool_diesel::Manager<Conn>;
type Pool = deadpool_diesel::Pool<Manager>;

/// A pool of database connections. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    backend: &'static str,
}

impl Db {
    /// Opens (creating an SQLite file if needed) the database, checks that a connection works and
    /// applies pending migrations.
    pub async fn open(location: &DatabaseLocation, max_connections: usize) -> Result<Db, DbError> {
        let url = match location {
            DatabaseLocation::SqliteFile(path) => {
                create_parent_dir(path)?;
                path.to_string_lossy().into_owned()
            }
            DatabaseLocation::Postgres(url) => {
                // `Conn::establish` tries each backend in turn and hides why each failed; connect once
                // directly so a wrong password or a stopped server is reported as such.
                let probe = url.clone();
                tokio::task::spawn_blocking(move || {
                    diesel::PgConnection::establish(&probe).map(drop)
                })
                .await
                .map_err(|e| DbError::Interact(e.to_string()))?
                .map_err(|e| DbError::Connect(e.to_string()))?;
                url.clone()
            }
        };
        let manager = Manager::new(url, Runtime::Tokio1);
        let pool = Pool::builder(manager)
            .max_size(max_connections.max(1))
            .post_create(Hook::async_fn(
                |conn: &mut deadpool_diesel::Connection<Conn>, _metrics| {
                    Box::pin(async move {
                        conn.interact(configure)
                            .await
                            .map_err(|e| HookError::message(e.to_string()))?
                            .map_err(|e| HookError::message(e.to_string()))
                    })
                },
            ))
            .build()
            .map_err(|e| DbError::Build(e.to_string()))?;
        let db = Db {
            pool,
            backend: location.backend(),
        };
        db.ping().await?;
        let applied = db.migrate().await?;
        tracing::info!(
            backend = db.backend,
            migrations_applied = applied,
            "database open"
        );
        Ok(db)
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// Applies pending migrations; returns how many ran.
    pub async fn migrate(&self) -> Result<usize, DbError> {
        let conn = self
            .pool
            .get()
            .await
            .map_err(|e| DbError::Pool(e.to_string()))?;
        conn.interact(|conn| {
            let applied = match conn {
                Conn::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
                Conn::Postgres(c) => c
                    .run_pending_migrations(POSTGRES_MIGRATIONS)
                    .map(|v| v.len()),
            };
            applied.map_err(|e| DbError::Migrate(e.to_string()))
        })
        .await
        .map_err(|e| DbError::Interact(e.to_string()))?
    }

    /// Runs `SELECT 1` on a pooled connection: proves the database is reachable.
    pub async fn ping(&self) -> Result<(), DbError> {
        self.interact(|conn| diesel::sql_query("SELECT 1").execute(conn).map(|_| ()))
            .await
    }

    /// Runs blocking diesel work on a pooled connection, off the async executor's threads.
    pub async fn interact<T, F>(&self, f: F) -> Result<T, DbError>
    where
        F: FnOnce(&mut Conn) -> QueryResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let conn = self
            .pool
            .get()
            .await
            .map_err(|e| DbError::Pool(e.to_string()))?;
        conn.interact(f)
            .await
            .map_err(|e| DbError::Interact(e.to_string()))?
            .map_err(DbError::Query)
    }

    /// Like [`Db::interact`], inside one transaction: all of `f`'s writes land, or none.
    pub async fn transaction<T, E, F>(&self, f: F) -> Result<Result<T, E>, DbError>
    where
        F: FnOnce(&mut Conn) -> Result<T, TxError<E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let conn = self
            .pool
            .get()
            .await
            .map_err(|e| DbError::Pool(e.to_string()))?;
        let result = conn
            .interact(move |conn| match conn {
                Conn::Sqlite(_) => sqlite_immediate_transaction(conn, f),
                Conn::Postgres(_) => conn.transaction(f),
            })
            .await
            .map_err(|e| DbError::Interact(e.to_string()))?;
        match result {
            Ok(v) => Ok(Ok(v)),
            Err(TxError::Abort(e)) => Ok(Err(e)),
            Err(TxError::Db(e)) => Err(DbError::Query(e)),
        }
    }

    /// Connections open now and the most the pool will open.
    pub fn pool_status(&self) -> (usize, usize) {
        let status = self.pool.status();
        (status.size, status.max_size)
    }

    /// Closes the pool: idle connections close now, busy ones when returned.
    pub fn close(&self) {
        self.pool.close();
    }
}

/// Why a transaction rolled back: a database error, or the caller's own reason (`Abort`).
#[derive(Debug)]
pub enum TxError<E> {
    Db(diesel::result::Error),
    Abort(E),
}

impl<E> From<diesel::result::Error> for TxError<E> {
    fn from(e: diesel::result::Error) -> Self {
        TxError::Db(e)
    }
}

fn create_parent_dir(path: &Path) -> Result<(), DbError> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|source| DbError::CreateDir {
                path: dir.to_owned(),
                source,
            })
        }
        _ => Ok(()),
    }
}

/// Per-connection setup.
fn configure(conn: &mut Conn) -> QueryResult<()> {
    match conn {
        Conn::Sqlite(c) => c.batch_execute(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
             PRAGMA busy_timeout = {};",
            BUSY_TIMEOUT.as_millis()
        )),
        Conn::Postgres(c) => c.batch_execute("SET TIME ZONE 'UTC'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_to_sqlite_files_or_name_the_problem() {
        let file = |p: &str| Ok(DatabaseLocation::SqliteFile(PathBuf::from(p)));
        assert_eq!(
            DatabaseLocation::parse("sqlite://./data/classroom.db"),
            file("./data/classroom.db")
        );
        assert_eq!(
            DatabaseLocation::parse("sqlite:///var/db/c.db"),
            file("/var/db/c.db")
        );
        assert_eq!(DatabaseLocation::parse("sqlite:c.db"), file("c.db"));
        assert_eq!(DatabaseLocation::parse("data/c.db"), file("data/c.db"));
        assert_eq!(DatabaseLocation::parse("  "), Err(UrlError::Empty));
        assert_eq!(DatabaseLocation::parse("sqlite://"), Err(UrlError::Empty));
        assert_eq!(
            DatabaseLocation::parse("postgres://u@127.0.0.1:5432/db"),
            Ok(DatabaseLocation::Postgres(
                "postgres://u@127.0.0.1:5432/db".into()
            ))
        );
        assert_eq!(
            DatabaseLocation::parse("mysql://localhost/x"),
            Err(UrlError::UnsupportedScheme("mysql".into()))
        );
    }

    #[derive(QueryableByName)]
    struct Pragma {
        #[diesel(sql_type = diesel::sql_types::Text)]
        value: String,
    }

    fn pragma(conn: &mut Conn, name: &str) -> QueryResult<String> {
        diesel::sql_query(format!(
            "SELECT CAST((SELECT * FROM pragma_{name}) AS TEXT) AS value"
        ))
        .get_result::<Pragma>(conn)
        .map(|p| p.value)
    }

    #[tokio::test]
    async fn open_creates_the_file_and_configures_every_connection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/test.db");
        let db = Db::open(&DatabaseLocation::SqliteFile(path.clone()), 2)
            .await
            .unwrap();
        assert!(path.exists(), "database file created");
        let (journal, fks, busy) = db
            .interact(|c| {
                Ok((
                    pragma(c, "journal_mode")?,
                    pragma(c, "foreign_keys")?,
                    pragma(c, "busy_timeout")?,
                ))
            })
            .await
            .unwrap();
        assert_eq!(journal, "wal");
        assert_eq!(fks, "1");
        assert_eq!(busy, BUSY_TIMEOUT.as_millis().to_string());
        db.ping().await.unwrap();
        db.close();
        assert!(db.ping().await.is_err(), "a closed pool refuses work");
    }
}
