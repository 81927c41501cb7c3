//! Uploads finished recordings from the local spool to the object store, durably: every job is a
//! row of the [`Journal`], and a spool file is deleted only once the store holds a copy verified
//! by size and SHA-256 read back.
//!
//! The [`Uploader`] takes due jobs from the journal one at a time. Per job: the file is read and
//! hashed on a blocking thread while its 8 MiB parts go to the store as a multipart upload
//! ([`WriteMultipart`]); then `head` must give the local size and a `get` read back must hash to
//! the local SHA-256; only then is the job `done` and the spool file removed. A failed attempt is
//! retried at [`next_attempt`] (exponential backoff), and after [`RetryPolicy::max_attempts`] the
//! job is `failed`, its spool file kept. A spool file that vanished or an object key the store
//! refuses fail at once: no retry can fix them.
//!
//! It never reads the clock in [`Uploader::run_once`] (time is an argument); only
//! [`Uploader::run`], the long-lived loop, does. It never panics on what it reads.

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::journal::{self, Job, Journal};

/// Size of one part of a multipart upload (S3 wants at least 5 MiB but for the last).
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// Parts uploading at the same time: with the part being read and the one queued, at most
/// 4 × [`PART_SIZE`] of a file are in memory.
const PARTS_IN_FLIGHT: usize = 2;

/// The shortest pause of [`Uploader::run`] between two rounds, so that a job the journal cannot
/// move on (its row is broken) does not spin the loop.
const MIN_PAUSE: Duration = Duration::from_secs(1);

/// When a failed upload is tried again, and when to give up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Wait after the first failure; doubled after each further one.
    pub base_delay: Duration,
    /// The longest wait between two attempts.
    pub max_delay: Duration,
    /// Failed attempts after which the job is `failed`.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    /// 5 s, 10 s, 20 s ... up to 10 min between attempts; gives up after 40 failed attempts
    /// (about 5 hours of store outage).
    fn default() -> RetryPolicy {
        RetryPolicy {
            base_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(600),
            max_attempts: 40,
        }
    }
}

impl RetryPolicy {
    /// Whether a job that has failed `attempts` times is given up.
    pub fn exhausted(&self, attempts: u32) -> bool {
        attempts >= self.max_attempts
    }
}

/// When to try again a job that had failed `attempts` times before the attempt that just failed
/// at `now_ms`: `base_delay × 2^attempts`, at most `max_delay`, later. Pure and total.
pub fn next_attempt(attempts: u32, now_ms: i64, policy: &RetryPolicy) -> i64 {
    let base = policy.base_delay.as_millis();
    let max = policy.max_delay.as_millis();
    let delay = 1u128
        .checked_shl(attempts)
        .and_then(|factor| base.checked_mul(factor))
        .map_or(max, |delay| delay.min(max));
    now_ms.saturating_add(i64::try_from(delay).unwrap_or(i64::MAX))
}

/// What the uploader tells the rest of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UploadEvent {
    /// At least `uploaded` of `total` bytes are acknowledged by the store. May be dropped when
    /// the receiver lags.
    Progress {
        recording_id: i64,
        uploaded: u64,
        total: u64,
    },
    /// The store holds a verified copy; the spool file is gone.
    Uploaded {
        recording_id: i64,
        object_key: String,
        size: u64,
        sha256: String,
        duration_ms: Option<i64>,
    },
    /// An attempt failed; the job is due again at `next_attempt_ms` (unix ms).
    Retrying {
        recording_id: i64,
        attempts: u32,
        next_attempt_ms: i64,
        error: String,
    },
    /// Given up; the spool file is kept.
    Failed { recording_id: i64, error: String },
}

/// Why one upload attempt failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("the spool file {0:?} is missing")]
    SpoolMissing(PathBuf),
    #[error("reading the spool file {path:?}: {source}")]
    Spool { path: PathBuf, source: io::Error },
    #[error("invalid object key {key:?}: {source}")]
    InvalidKey {
        key: String,
        source: object_store::path::Error,
    },
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("verification: the store holds {stored} bytes, the spool file has {local}")]
    SizeMismatch { local: u64, stored: u64 },
    #[error("verification: the store's copy hashes to {stored}, the spool file to {local}")]
    HashMismatch { local: String, stored: String },
    #[error(transparent)]
    Journal(#[from] journal::Error),
    #[error("a blocking task failed: {0}")]
    Task(String),
    #[error("interrupted by shutdown")]
    Cancelled,
}

impl Error {
    /// No retry can fix it.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Error::SpoolMissing(_) | Error::InvalidKey { .. })
    }
}

/// Takes due jobs from the [`Journal`] and uploads them to the object store.
pub struct Uploader {
    /// The durable job list.
    journal: Arc<Journal>,
    /// Where recordings go.
    store: Arc<dyn ObjectStore>,
    /// Backoff and giving up.
    policy: RetryPolicy,
    /// Interrupts an upload in progress (set by [`Uploader::run`]; never cancelled otherwise).
    shutdown: CancellationToken,
}

impl fmt::Debug for Uploader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Uploader")
            .field("store", &format_args!("{}", self.store))
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Where events go: collected (for [`Uploader::run_once`]) or sent on a bounded channel.
enum Sink<'a> {
    Collect(Vec<UploadEvent>),
    Channel(&'a mpsc::Sender<UploadEvent>),
}

impl Sink<'_> {
    /// A progress event: dropped if the channel is full.
    fn progress(&mut self, event: UploadEvent) {
        match self {
            Sink::Collect(events) => events.push(event),
            Sink::Channel(tx) => {
                let _ = tx.try_send(event);
            }
        }
    }

    /// An event that must not be lost: waits for room in the channel.
    async fn emit(&mut self, event: UploadEvent) {
        match self {
            Sink::Collect(events) => events.push(event),
            Sink::Channel(tx) => {
                if tx.send(event).await.is_err() {
                    tracing::debug!("upload event receiver gone");
                }
            }
        }
    }
}

/// The unix time in milliseconds by the system clock.
pub fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Uploader {
    pub fn new(
        journal: Arc<Journal>,
        store: Arc<dyn ObjectStore>,
        policy: RetryPolicy,
    ) -> Uploader {
        Uploader {
            journal,
            store,
            policy,
            shutdown: CancellationToken::new(),
        }
    }

    /// Processes every job due at `now_ms`, one after the other, and returns what happened
    /// (progress events included).
    pub async fn run_once(&self, now_ms: i64) -> Vec<UploadEvent> {
        let mut sink = Sink::Collect(Vec::new());
        self.process_due(now_ms, &mut sink).await;
        match sink {
            Sink::Collect(events) => events,
            Sink::Channel(_) => Vec::new(),
        }
    }

    /// The uploader's loop: a round of due jobs on each `wake` and whenever the earliest pending
    /// job falls due, until `shutdown`. An upload in progress at shutdown is aborted and its job
    /// put back in the queue (not counted as an attempt). Final events wait for room in
    /// `events`; progress events are dropped when it is full.
    pub async fn run(
        mut self,
        events: mpsc::Sender<UploadEvent>,
        wake: Arc<Notify>,
        shutdown: CancellationToken,
    ) {
        self.shutdown = shutdown.clone();
        let mut sink = Sink::Channel(&events);
        while !shutdown.is_cancelled() {
            self.process_due(unix_now_ms(), &mut sink).await;
            let pause = match self.blocking(|j| j.next_due_ms()).await {
                Ok(Some(due)) => {
                    let wait = due.saturating_sub(unix_now_ms()).max(0);
                    Some(Duration::from_millis(wait.unsigned_abs()).max(MIN_PAUSE))
                }
                Ok(None) => None,
                Err(e) => {
                    tracing::error!(error = %e, "upload journal unreadable");
                    Some(self.policy.base_delay.max(MIN_PAUSE))
                }
            };
            let sleep = async {
                match pause {
                    Some(pause) => tokio::time::sleep(pause).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = wake.notified() => {}
                _ = sleep => {}
            }
        }
    }

    async fn process_due(&self, now_ms: i64, sink: &mut Sink<'_>) {
        let jobs = match self.blocking(move |j| j.due(now_ms)).await {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::error!(error = %e, "upload journal unreadable");
                return;
            }
        };
        for job in jobs {
            if self.shutdown.is_cancelled() {
                return;
            }
            self.process(job, now_ms, sink).await;
        }
    }

    /// One attempt at one job, and its outcome written to the journal.
    async fn process(&self, job: Job, now_ms: i64, sink: &mut Sink<'_>) {
        let id = job.recording_id;
        if let Err(e) = self.blocking(move |j| j.mark_uploading(id, now_ms)).await {
            // Another uploader took it, or the row changed meanwhile: not ours to do.
            tracing::warn!(recording_id = id, error = %e, "upload job skipped");
            return;
        }
        match self.attempt(&job, sink).await {
            Ok((size, sha256)) => {
                let hash = sha256.clone();
                let marked = self
                    .blocking(move |j| j.mark_done(id, size, &hash, now_ms))
                    .await;
                if let Err(e) = marked {
                    // The copy is in the store but the journal does not say so: keep the file;
                    // the job stays `uploading` until the next start puts it back in the queue.
                    tracing::error!(recording_id = id, error = %e, "upload done but not journaled");
                    return;
                }
                // Only after the journal says `done`: a crash before this line leaves a spool
                // file to clean up, never a job whose only copy is gone.
                if let Err(e) = tokio::fs::remove_file(&job.file).await {
                    tracing::warn!(recording_id = id, file = ?job.file, error = %e,
                        "uploaded spool file not removed");
                }
                tracing::info!(recording_id = id, size, key = %job.object_key, "recording uploaded");
                sink.emit(UploadEvent::Uploaded {
                    recording_id: id,
                    object_key: job.object_key,
                    size,
                    sha256,
                    duration_ms: job.duration_ms,
                })
                .await;
            }
            Err(Error::Cancelled) => {
                if let Err(e) = self.blocking(move |j| j.release(id, now_ms)).await {
                    tracing::warn!(recording_id = id, error = %e, "interrupted upload not released");
                }
            }
            Err(e) => self.failed(&job, e, now_ms, sink).await,
        }
    }

    /// Records a failed attempt: retry later, or give up.
    async fn failed(&self, job: &Job, error: Error, now_ms: i64, sink: &mut Sink<'_>) {
        let id = job.recording_id;
        let attempts = job.attempts.saturating_add(1);
        let text = error.to_string();
        if error.is_permanent() || self.policy.exhausted(attempts) {
            tracing::error!(recording_id = id, attempts, error = %text, "upload failed");
            let t = text.clone();
            if let Err(e) = self.blocking(move |j| j.mark_failed(id, &t, now_ms)).await {
                tracing::error!(recording_id = id, error = %e, "upload failure not journaled");
            }
            sink.emit(UploadEvent::Failed {
                recording_id: id,
                error: text,
            })
            .await;
        } else {
            let at = next_attempt(job.attempts, now_ms, &self.policy);
            tracing::warn!(recording_id = id, attempts, next_attempt_ms = at, error = %text,
                "upload attempt failed");
            let t = text.clone();
            if let Err(e) = self
                .blocking(move |j| j.mark_retry(id, &t, at, now_ms))
                .await
            {
                tracing::error!(recording_id = id, error = %e, "upload retry not journaled");
            }
            sink.emit(UploadEvent::Retrying {
                recording_id: id,
                attempts,
                next_attempt_ms: at,
                error: text,
            })
            .await;
        }
    }

    /// Uploads and verifies one file; returns its size and hex SHA-256.
    async fn attempt(&self, job: &Job, sink: &mut Sink<'_>) -> Result<(u64, String), Error> {
        let key = ObjectPath::parse(&job.object_key).map_err(|source| Error::InvalidKey {
            key: job.object_key.clone(),
            source,
        })?;
        let total = tokio::fs::metadata(&job.file)
            .await
            .map_err(|e| spool_error(&job.file, e))?
            .len();

        // The file is read and hashed on a blocking thread, one part at a time.
        let (parts_tx, mut parts) = mpsc::channel::<Bytes>(1);
        let path = job.file.clone();
        let reader = tokio::task::spawn_blocking(move || read_parts(&path, parts_tx));

        let upload = self.cancellable(self.store.put_multipart(&key)).await??;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut sent = 0u64;
        let mut acknowledged = 0u64;
        let transfer = async {
            while let Some(part) = self.cancellable(parts.recv()).await? {
                sent += part.len() as u64;
                // Exactly one part: `put` starts its upload at once.
                writer.put(part);
                self.cancellable(writer.wait_for_capacity(PARTS_IN_FLIGHT))
                    .await??;
                // All but at most PARTS_IN_FLIGHT - 1 parts are done.
                let done = (sent / PART_SIZE as u64).saturating_sub(PARTS_IN_FLIGHT as u64 - 1)
                    * PART_SIZE as u64;
                if done > acknowledged {
                    acknowledged = done;
                    sink.progress(UploadEvent::Progress {
                        recording_id: job.recording_id,
                        uploaded: done,
                        total,
                    });
                }
            }
            Ok::<(), Error>(())
        }
        .await;
        // The channel is closed once the reader returned; if the transfer stopped early, dropping
        // the receiver lets the reader stop too.
        drop(parts);
        if let Err(e) = transfer {
            abort(writer).await;
            return Err(e);
        }
        let (size, sha256) = match reader.await {
            Ok(Ok(read)) => read,
            Ok(Err(e)) => {
                abort(writer).await;
                return Err(spool_error(&job.file, e));
            }
            Err(e) => {
                abort(writer).await;
                return Err(Error::Task(e.to_string()));
            }
        };
        // On failure `finish` aborts the upload itself.
        self.cancellable(writer.finish()).await??;
        sink.progress(UploadEvent::Progress {
            recording_id: job.recording_id,
            uploaded: size,
            total: size,
        });

        self.cancellable(self.verify(&key, size, &sha256)).await??;
        Ok((size, sha256))
    }

    /// The store's object has `size` bytes that hash to `sha256`.
    async fn verify(&self, key: &ObjectPath, size: u64, sha256: &str) -> Result<(), Error> {
        let stored = self.store.head(key).await?.size;
        if stored != size {
            return Err(Error::SizeMismatch {
                local: size,
                stored,
            });
        }
        let mut stream = self.store.get(key).await?.into_stream();
        let mut hasher = Sha256::new();
        let mut read = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            read += chunk.len() as u64;
            hasher.update(&chunk);
        }
        if read != size {
            return Err(Error::SizeMismatch {
                local: size,
                stored: read,
            });
        }
        let stored = hex::encode(hasher.finalize());
        if stored != sha256 {
            return Err(Error::HashMismatch {
                local: sha256.to_owned(),
                stored,
            });
        }
        Ok(())
    }

    /// `fut`, or [`Error::Cancelled`] at shutdown.
    async fn cancellable<T>(&self, fut: impl Future<Output = T>) -> Result<T, Error> {
        tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => Err(Error::Cancelled),
            out = fut => Ok(out),
        }
    }

    /// Runs a journal operation on the blocking pool.
    async fn blocking<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Journal) -> Result<T, journal::Error> + Send + 'static,
    {
        let journal = Arc::clone(&self.journal);
        match tokio::task::spawn_blocking(move || f(&journal)).await {
            Ok(result) => Ok(result?),
            Err(e) => Err(Error::Task(e.to_string())),
        }
    }
}

/// Aborts a multipart upload, best effort (a store may keep orphan parts until its lifecycle
/// rules remove them).
async fn abort(writer: WriteMultipart) {
    if let Err(e) = writer.abort().await {
        tracing::debug!(error = %e, "multipart upload not aborted");
    }
}

fn spool_error(path: &Path, e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::NotFound {
        Error::SpoolMissing(path.to_path_buf())
    } else {
        Error::Spool {
            path: path.to_path_buf(),
            source: e,
        }
    }
}

/// Reads `path` in [`PART_SIZE`] pieces into `parts` (blocking) and returns its size and hex
/// SHA-256. Stops early, without error, when the receiver is gone.
fn read_parts(path: &Path, parts: mpsc::Sender<Bytes>) -> io::Result<(u64, String)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    loop {
        let mut buf = BytesMut::zeroed(PART_SIZE);
        let mut filled = 0;
        while filled < PART_SIZE {
            match file.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            break;
        }
        buf.truncate(filled);
        hasher.update(&buf);
        size += filled as u64;
        if parts.blocking_send(buf.freeze()).is_err() {
            break;
        }
        if filled < PART_SIZE {
            break;
        }
    }
    Ok((size, hex::encode(hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(60),
            max_attempts: 5,
        }
    }

    #[test]
    fn backoff_doubles_from_the_base() {
        let p = policy();
        assert_eq!(next_attempt(0, 1_000, &p), 3_000);
        assert_eq!(next_attempt(1, 1_000, &p), 5_000);
        assert_eq!(next_attempt(2, 1_000, &p), 9_000);
        assert_eq!(next_attempt(4, 0, &p), 32_000);
    }

    #[test]
    fn backoff_is_capped_and_never_overflows() {
        let p = policy();
        assert_eq!(next_attempt(5, 0, &p), 60_000);
        assert_eq!(next_attempt(6, 0, &p), 60_000);
        assert_eq!(next_attempt(127, 0, &p), 60_000);
        assert_eq!(next_attempt(128, 0, &p), 60_000);
        assert_eq!(next_attempt(u32::MAX, 0, &p), 60_000);
        assert_eq!(next_attempt(3, i64::MAX - 5, &p), i64::MAX);
        let huge = RetryPolicy {
            base_delay: Duration::MAX,
            max_delay: Duration::MAX,
            max_attempts: 1,
        };
        assert_eq!(next_attempt(3, 0, &huge), i64::MAX);
    }

    #[test]
    fn gives_up_after_max_attempts() {
        let p = policy();
        assert!(!p.exhausted(4));
        assert!(p.exhausted(5));
        assert!(RetryPolicy::default().exhausted(40));
    }

    #[test]
    fn reads_a_file_in_parts_and_hashes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..PART_SIZE + 10).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let (tx, mut rx) = mpsc::channel(4);
        let (size, sha) = read_parts(&path, tx).unwrap();
        assert_eq!(size, data.len() as u64);
        assert_eq!(sha, hex::encode(Sha256::digest(&data)));
        let mut lens = Vec::new();
        while let Ok(part) = rx.try_recv() {
            lens.push(part.len());
        }
        assert_eq!(lens, vec![PART_SIZE, 10]);
    }

    #[test]
    fn the_event_stays_small() {
        assert!(std::mem::size_of::<UploadEvent>() <= 96);
    }
}
