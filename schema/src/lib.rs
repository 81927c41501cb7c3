//! The database: connection pool and (as the product grows) schema, models and migrations.
//!
//! Knows nothing about HTTP or GraphQL. Blocking diesel work runs on the pool's blocking threads
//! (`deadpool_diesel::Object::interact`), never on the async executor's threads.
//!
//! SQLite is the default backend. Every connection is set up with WAL journaling, foreign keys on
//! and a busy timeout before the pool hands it out.

use std::path::{Path, PathBuf};
use std::time::Duration;

use deadpool_diesel::sqlite::{Hook, HookError, Manager, Pool as SqlitePool, Runtime};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;

/// How long a connection waits for a lock held by another writer before failing with `SQLITE_BUSY`.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the database lives, parsed from a database URL.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DatabaseLocation {
    /// An SQLite file (`sqlite://path`, `sqlite:path` or a plain path).
    SqliteFile(PathBuf),
}

/// A database URL that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlError {
    #[error("the database URL is empty")]
    Empty,
    #[error("unsupported database scheme `{0}`: supported is sqlite:// (a file path)")]
    UnsupportedScheme(String),
}

impl DatabaseLocation {
    /// Parses `sqlite://./data/classroom.db`, `sqlite:data.db` or a plain path.
    pub fn parse(url: &str) -> Result<DatabaseLocation, UrlError> {
        let url = url.trim();
        if url.is_empty() {
            return Err(UrlError::Empty);
        }
        let path = if let Some(rest) = url.strip_prefix("sqlite://") {
            rest
        } else if let Some(rest) = url.strip_prefix("sqlite:") {
            rest
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
    #[error("cannot build the connection pool: {0}")]
    Build(String),
    #[error("no database connection available: {0}")]
    Pool(String),
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("database task failed: {0}")]
    Interact(String),
}

/// A pool of database connections. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: SqlitePool,
}

impl Db {
    /// Opens (creating if needed) the database and checks that a connection works.
    pub async fn open(location: &DatabaseLocation, max_connections: usize) -> Result<Db, DbError> {
        let DatabaseLocation::SqliteFile(path) = location;
        create_parent_dir(path)?;
        let manager = Manager::new(path.to_string_lossy(), Runtime::Tokio1);
        let pool = SqlitePool::builder(manager)
            .max_size(max_connections.max(1))
            .post_create(Hook::async_fn(|conn, _metrics| {
                Box::pin(async move {
                    conn.interact(configure_sqlite)
                        .await
                        .map_err(|e| HookError::message(e.to_string()))?
                        .map_err(|e| HookError::message(e.to_string()))
                })
            }))
            .build()
            .map_err(|e| DbError::Build(e.to_string()))?;
        let db = Db { pool };
        db.ping().await?;
        tracing::info!(path = %path.display(), "database open");
        Ok(db)
    }

    /// Runs `SELECT 1` on a pooled connection: proves the database is reachable.
    pub async fn ping(&self) -> Result<(), DbError> {
        self.interact(|conn| diesel::sql_query("SELECT 1").execute(conn).map(|_| ()))
            .await
    }

    /// Runs blocking diesel work on a pooled connection, off the async executor's threads.
    pub async fn interact<T, F>(&self, f: F) -> Result<T, DbError>
    where
        F: FnOnce(&mut SqliteConnection) -> QueryResult<T> + Send + 'static,
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

fn configure_sqlite(conn: &mut SqliteConnection) -> QueryResult<()> {
    conn.batch_execute(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
         PRAGMA busy_timeout = {};",
        BUSY_TIMEOUT.as_millis()
    ))
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
            DatabaseLocation::parse("mysql://localhost/x"),
            Err(UrlError::UnsupportedScheme("mysql".into()))
        );
    }

    #[derive(QueryableByName)]
    struct Pragma {
        #[diesel(sql_type = diesel::sql_types::Text)]
        value: String,
    }

    fn pragma(conn: &mut SqliteConnection, name: &str) -> QueryResult<String> {
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
