//! The upload journal of a media node: one SQLite row per recording, from the moment its file
//! starts being written in the local spool until the object store holds a verified copy.
//!
//! It is the durable truth about which spool files still need uploading: a process that dies
//! mid-recording or mid-upload leaves rows that [`Journal::recover`] puts back in the queue on
//! the next start. It owns no files and does no I/O besides its database; time is always an
//! argument (unix milliseconds), never read from the clock.
//!
//! The API is synchronous (SQLite with `synchronous=FULL` fsyncs on every commit): async callers
//! run it in `spawn_blocking` or on a dedicated thread.
//!
//! States: `recording` -> [`finish`](Journal::finish) -> `pending` ->
//! [`mark_uploading`](Journal::mark_uploading) -> `uploading` -> `done`, or back to `pending`
//! ([`mark_retry`](Journal::mark_retry), [`release`](Journal::release)), or `failed`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, params};

/// The schema version this build writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS upload_jobs (
    recording_id    INTEGER PRIMARY KEY,
    file            TEXT NOT NULL,
    object_key      TEXT NOT NULL,
    state           TEXT NOT NULL
                    CHECK (state IN ('recording', 'pending', 'uploading', 'done', 'failed')),
    duration_ms     INTEGER,
    size            INTEGER,
    sha256          TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    error           TEXT,
    updated_ms      INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS upload_jobs_due ON upload_jobs (state, next_attempt_ms);
";

const COLUMNS: &str = "recording_id, file, object_key, state, duration_ms, size, sha256, attempts, \
                       next_attempt_ms, error, updated_ms";

/// Where a recording is on its way to the object store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// The pipeline is writing the spool file.
    Recording,
    /// The file is final and waits for an upload attempt (at `next_attempt_ms`).
    Pending,
    /// An upload is in progress.
    Uploading,
    /// The object store holds a verified copy; the spool file is gone.
    Done,
    /// Given up; the spool file is kept for an operator.
    Failed,
}

impl State {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Recording => "recording",
            State::Pending => "pending",
            State::Uploading => "uploading",
            State::Done => "done",
            State::Failed => "failed",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for State {
    type Err = String;

    fn from_str(s: &str) -> Result<State, String> {
        Ok(match s {
            "recording" => State::Recording,
            "pending" => State::Pending,
            "uploading" => State::Uploading,
            "done" => State::Done,
            "failed" => State::Failed,
            other => return Err(format!("unknown state {other:?}")),
        })
    }
}

/// One row of the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The gateway's recording id.
    pub recording_id: i64,
    /// The spool file.
    pub file: PathBuf,
    /// Where the file goes in the object store.
    pub object_key: String,
    pub state: State,
    /// Length of the recording, when the caller knew it.
    pub duration_ms: Option<i64>,
    /// Size of the uploaded object (set when done).
    pub size: Option<u64>,
    /// Hex SHA-256 of the uploaded object (set when done).
    pub sha256: Option<String>,
    /// Upload attempts that failed.
    pub attempts: u32,
    /// When a pending job is due (unix ms).
    pub next_attempt_ms: i64,
    /// The last failure.
    pub error: Option<String>,
    /// Last change of the row (unix ms).
    pub updated_ms: i64,
}

/// What a journal operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("journal database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("recording {0} is already in the journal")]
    Exists(i64),
    #[error("recording {0} is not in the journal")]
    NotFound(i64),
    #[error("recording {id} is {state}, expected {expected}")]
    WrongState {
        id: i64,
        state: State,
        expected: &'static str,
    },
    #[error("the spool path is not UTF-8: {0:?}")]
    PathNotUtf8(PathBuf),
    #[error("journal row {id} is corrupt: {what}")]
    Corrupt { id: i64, what: String },
    #[error("the journal has schema version {0}, newer than this build ({SCHEMA_VERSION})")]
    NewerSchema(i64),
}

/// The job journal (see the module docs). `Send + Sync`: share it in an `Arc`.
pub struct Journal {
    /// The one connection. A `std` mutex: every operation is a short synchronous transaction and
    /// nothing awaits while holding it.
    conn: Mutex<Connection>,
}

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal").finish_non_exhaustive()
    }
}

impl Journal {
    /// Opens (creating if needed) the journal at `path`: WAL, `synchronous=FULL`, schema created.
    pub fn open(path: impl AsRef<Path>) -> Result<Journal, Error> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(Error::NewerSchema(version));
        }
        conn.execute_batch(SCHEMA)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        Ok(Journal {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while the lock was held cannot leave a half-done change: every change is one
        // statement or a transaction that rolls back when dropped. So the poison is ignored.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A recording starts writing `file`; it will be uploaded to `object_key`.
    pub fn begin(
        &self,
        recording_id: i64,
        file: &Path,
        object_key: &str,
        now_ms: i64,
    ) -> Result<(), Error> {
        let file_text = file
            .to_str()
            .ok_or_else(|| Error::PathNotUtf8(file.to_path_buf()))?;
        let inserted = self.conn().execute(
            "INSERT INTO upload_jobs (recording_id, file, object_key, state, attempts,
                                      next_attempt_ms, updated_ms)
             VALUES (?1, ?2, ?3, 'recording', 0, ?4, ?4)",
            params![recording_id, file_text, object_key, now_ms],
        );
        match inserted {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == ErrorCode::ConstraintViolation =>
            {
                Err(Error::Exists(recording_id))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The recording stopped and its file is final: it is due for upload now.
    pub fn finish(&self, recording_id: i64, duration_ms: i64, now_ms: i64) -> Result<(), Error> {
        self.transition(
            recording_id,
            "state = 'pending', duration_ms = ?2, next_attempt_ms = ?3, updated_ms = ?3",
            "state = 'recording'",
            "recording",
            params![recording_id, duration_ms, now_ms],
        )
    }

    /// Sets the duration of a recording (e.g. one [`recover`](Journal::recover)ed without it).
    pub fn set_duration(
        &self,
        recording_id: i64,
        duration_ms: i64,
        now_ms: i64,
    ) -> Result<(), Error> {
        self.transition(
            recording_id,
            "duration_ms = ?2, updated_ms = ?3",
            "state IN ('recording', 'pending', 'uploading')",
            "recording, pending or uploading",
            params![recording_id, duration_ms, now_ms],
        )
    }

    /// At start-up: the rows of a process that died. Recordings still `recording` become
    /// `pending` (their spool file is playable up to the kill; duration unknown) and their ids
    /// are returned; interrupted uploads (`uploading`) become `pending` again. All due now.
    pub fn recover(&self, now_ms: i64) -> Result<Vec<i64>, Error> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let ids = {
            let mut stmt = tx.prepare(
                "SELECT recording_id FROM upload_jobs WHERE state = 'recording'
                 ORDER BY recording_id",
            )?;
            stmt.query_map([], |r| r.get::<_, i64>(0))?
                .collect::<Result<Vec<_>, _>>()?
        };
        tx.execute(
            "UPDATE upload_jobs SET state = 'pending', duration_ms = NULL,
                    next_attempt_ms = ?1, updated_ms = ?1
             WHERE state = 'recording'",
            [now_ms],
        )?;
        tx.execute(
            "UPDATE upload_jobs SET state = 'pending', next_attempt_ms = ?1, updated_ms = ?1
             WHERE state = 'uploading'",
            [now_ms],
        )?;
        tx.commit()?;
        Ok(ids)
    }

    /// Pending jobs due at `now_ms`, the longest waiting first.
    pub fn due(&self, now_ms: i64) -> Result<Vec<Job>, Error> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM upload_jobs
             WHERE state = 'pending' AND next_attempt_ms <= ?1
             ORDER BY next_attempt_ms, recording_id"
        ))?;
        let rows = stmt.query_map([now_ms], RawJob::read)?;
        rows.map(|r| r?.into_job()).collect()
    }

    /// When the earliest pending job is due, if any job is pending.
    pub fn next_due_ms(&self) -> Result<Option<i64>, Error> {
        Ok(self.conn().query_row(
            "SELECT MIN(next_attempt_ms) FROM upload_jobs WHERE state = 'pending'",
            [],
            |r| r.get(0),
        )?)
    }

    /// One job.
    pub fn get(&self, recording_id: i64) -> Result<Option<Job>, Error> {
        self.conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM upload_jobs WHERE recording_id = ?1"),
                [recording_id],
                RawJob::read,
            )
            .optional()?
            .map(RawJob::into_job)
            .transpose()
    }

    /// Every job, by recording id (for operators and tests).
    pub fn list(&self) -> Result<Vec<Job>, Error> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM upload_jobs ORDER BY recording_id"
        ))?;
        let rows = stmt.query_map([], RawJob::read)?;
        rows.map(|r| r?.into_job()).collect()
    }

    /// A pending job starts uploading. Fails unless it is `pending`, so one job never has two
    /// uploads at once.
    pub fn mark_uploading(&self, recording_id: i64, now_ms: i64) -> Result<(), Error> {
        self.transition(
            recording_id,
            "state = 'uploading', updated_ms = ?2",
            "state = 'pending'",
            "pending",
            params![recording_id, now_ms],
        )
    }

    /// The upload is verified: the object store holds `size` bytes hashing to `sha256`.
    pub fn mark_done(
        &self,
        recording_id: i64,
        size: u64,
        sha256: &str,
        now_ms: i64,
    ) -> Result<(), Error> {
        // Sizes beyond i64::MAX bytes do not exist; saturating keeps this total.
        let size = i64::try_from(size).unwrap_or(i64::MAX);
        self.transition(
            recording_id,
            "state = 'done', size = ?2, sha256 = ?3, error = NULL, updated_ms = ?4",
            "state = 'uploading'",
            "uploading",
            params![recording_id, size, sha256, now_ms],
        )
    }

    /// An attempt failed: one more attempt counted, due again at `next_attempt_ms`.
    pub fn mark_retry(
        &self,
        recording_id: i64,
        error: &str,
        next_attempt_ms: i64,
        now_ms: i64,
    ) -> Result<(), Error> {
        self.transition(
            recording_id,
            "state = 'pending', attempts = attempts + 1, error = ?2, next_attempt_ms = ?3,
             updated_ms = ?4",
            "state IN ('pending', 'uploading')",
            "pending or uploading",
            params![recording_id, error, next_attempt_ms, now_ms],
        )
    }

    /// Given up: the last attempt failed (counted) with `error`.
    pub fn mark_failed(&self, recording_id: i64, error: &str, now_ms: i64) -> Result<(), Error> {
        self.transition(
            recording_id,
            "state = 'failed', attempts = attempts + 1, error = ?2, updated_ms = ?3",
            "state IN ('pending', 'uploading')",
            "pending or uploading",
            params![recording_id, error, now_ms],
        )
    }

    /// An operator tries a `failed` job again: pending, due now, attempts from zero.
    pub fn retry_failed(&self, recording_id: i64, now_ms: i64) -> Result<(), Error> {
        self.transition(
            recording_id,
            "state = 'pending', attempts = 0, next_attempt_ms = ?2, updated_ms = ?2",
            "state = 'failed'",
            "failed",
            params![recording_id, now_ms],
        )
    }

    /// An upload was interrupted without failing (shutdown): pending again, due now, no attempt
    /// counted.
    pub fn release(&self, recording_id: i64, now_ms: i64) -> Result<(), Error> {
        self.transition(
            recording_id,
            "state = 'pending', next_attempt_ms = ?2, updated_ms = ?2",
            "state = 'uploading'",
            "uploading",
            params![recording_id, now_ms],
        )
    }

    /// `UPDATE ... SET {set} WHERE recording_id = ?1 AND {from}`; when no row changed, tells why.
    fn transition(
        &self,
        recording_id: i64,
        set: &str,
        from: &str,
        expected: &'static str,
        params: &[&dyn rusqlite::ToSql],
    ) -> Result<(), Error> {
        let conn = self.conn();
        let changed = conn.execute(
            &format!("UPDATE upload_jobs SET {set} WHERE recording_id = ?1 AND {from}"),
            params,
        )?;
        if changed == 1 {
            return Ok(());
        }
        let state: Option<String> = conn
            .query_row(
                "SELECT state FROM upload_jobs WHERE recording_id = ?1",
                [recording_id],
                |r| r.get(0),
            )
            .optional()?;
        match state {
            None => Err(Error::NotFound(recording_id)),
            Some(state) => Err(Error::WrongState {
                id: recording_id,
                state: parse_state(recording_id, &state)?,
                expected,
            }),
        }
    }
}

fn parse_state(id: i64, state: &str) -> Result<State, Error> {
    state.parse().map_err(|what| Error::Corrupt { id, what })
}

/// A row as SQLite types, checked into a [`Job`] afterwards (so a bad row is an error, not a
/// panic).
struct RawJob {
    recording_id: i64,
    file: String,
    object_key: String,
    state: String,
    duration_ms: Option<i64>,
    size: Option<i64>,
    sha256: Option<String>,
    attempts: i64,
    next_attempt_ms: i64,
    error: Option<String>,
    updated_ms: i64,
}

impl RawJob {
    fn read(r: &Row<'_>) -> rusqlite::Result<RawJob> {
        Ok(RawJob {
            recording_id: r.get(0)?,
            file: r.get(1)?,
            object_key: r.get(2)?,
            state: r.get(3)?,
            duration_ms: r.get(4)?,
            size: r.get(5)?,
            sha256: r.get(6)?,
            attempts: r.get(7)?,
            next_attempt_ms: r.get(8)?,
            error: r.get(9)?,
            updated_ms: r.get(10)?,
        })
    }

    fn into_job(self) -> Result<Job, Error> {
        let id = self.recording_id;
        let corrupt = |what: String| Error::Corrupt { id, what };
        Ok(Job {
            recording_id: id,
            file: PathBuf::from(self.file),
            object_key: self.object_key,
            state: parse_state(id, &self.state)?,
            duration_ms: self.duration_ms,
            size: self
                .size
                .map(u64::try_from)
                .transpose()
                .map_err(|_| corrupt(format!("negative size {:?}", self.size)))?,
            sha256: self.sha256,
            attempts: u32::try_from(self.attempts)
                .map_err(|_| corrupt(format!("attempts {}", self.attempts)))?,
            next_attempt_ms: self.next_attempt_ms,
            error: self.error,
            updated_ms: self.updated_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_journal() -> (tempfile::TempDir, Journal) {
        let dir = tempfile::tempdir().expect("temp dir");
        let journal = Journal::open(dir.path().join("jobs.db")).expect("open");
        (dir, journal)
    }

    #[test]
    fn journal_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Journal>();
    }

    #[test]
    fn a_job_walks_through_its_states() {
        let (_dir, j) = temp_journal();
        j.begin(7, Path::new("/spool/7.webm"), "rec/7.webm", 100)
            .unwrap();
        assert!(matches!(
            j.begin(7, Path::new("/x"), "y", 101),
            Err(Error::Exists(7))
        ));
        assert_eq!(j.due(1_000).unwrap(), vec![], "recording is never due");
        assert_eq!(j.next_due_ms().unwrap(), None);

        j.finish(7, 60_000, 200).unwrap();
        let job = j.get(7).unwrap().unwrap();
        assert_eq!(job.state, State::Pending);
        assert_eq!(job.duration_ms, Some(60_000));
        assert_eq!(job.next_attempt_ms, 200);
        assert_eq!(j.due(199).unwrap(), vec![]);
        assert_eq!(j.due(200).unwrap(), vec![job]);
        assert_eq!(j.next_due_ms().unwrap(), Some(200));

        j.mark_uploading(7, 210).unwrap();
        assert!(matches!(
            j.mark_uploading(7, 211),
            Err(Error::WrongState {
                state: State::Uploading,
                ..
            })
        ));
        j.mark_retry(7, "store down", 5_000, 220).unwrap();
        let job = j.get(7).unwrap().unwrap();
        assert_eq!(
            (job.state, job.attempts, job.next_attempt_ms),
            (State::Pending, 1, 5_000)
        );
        assert_eq!(job.error.as_deref(), Some("store down"));

        j.mark_uploading(7, 5_000).unwrap();
        j.mark_done(7, 1234, "abcd", 5_100).unwrap();
        let job = j.get(7).unwrap().unwrap();
        assert_eq!(job.state, State::Done);
        assert_eq!(
            (job.size, job.sha256.as_deref(), job.error),
            (Some(1234), Some("abcd"), None)
        );
        assert_eq!(job.updated_ms, 5_100);
        assert!(matches!(j.finish(7, 1, 1), Err(Error::WrongState { .. })));
        assert!(matches!(j.mark_done(8, 1, "", 1), Err(Error::NotFound(8))));
        assert_eq!(j.get(8).unwrap(), None);
    }

    #[test]
    fn recover_requeues_what_a_dead_process_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.db");
        {
            let j = Journal::open(&path).unwrap();
            j.begin(1, Path::new("/s/1"), "k/1", 0).unwrap();
            j.begin(2, Path::new("/s/2"), "k/2", 0).unwrap();
            j.finish(2, 10, 0).unwrap();
            j.mark_uploading(2, 1).unwrap();
            j.begin(3, Path::new("/s/3"), "k/3", 0).unwrap();
            j.finish(3, 10, 0).unwrap();
            j.mark_uploading(3, 1).unwrap();
            j.mark_failed(3, "gone", 2).unwrap();
        }
        let j = Journal::open(&path).unwrap();
        assert_eq!(j.recover(50).unwrap(), vec![1]);
        let states: Vec<_> = j
            .list()
            .unwrap()
            .into_iter()
            .map(|job| (job.recording_id, job.state, job.duration_ms))
            .collect();
        assert_eq!(
            states,
            vec![
                (1, State::Pending, None),
                (2, State::Pending, Some(10)),
                (3, State::Failed, Some(10)),
            ]
        );
        assert_eq!(j.due(50).unwrap().len(), 2);
        j.retry_failed(3, 55).unwrap();
        let job = j.get(3).unwrap().unwrap();
        assert_eq!((job.state, job.attempts), (State::Pending, 0));
        assert!(matches!(
            j.retry_failed(3, 56),
            Err(Error::WrongState { .. })
        ));
        j.set_duration(1, 42, 60).unwrap();
        assert_eq!(j.get(1).unwrap().unwrap().duration_ms, Some(42));
        assert_eq!(j.recover(70).unwrap(), Vec::<i64>::new());
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.db");
        drop(Journal::open(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        assert!(matches!(Journal::open(&path), Err(Error::NewerSchema(_))));
    }
}
