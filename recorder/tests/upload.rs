//! The upload of finished recordings: journal + uploader against real stores (local files,
//! in memory, and S3 as served by moto on loopback), with faults injected by a wrapping store.
//! Time is injected (`now_ms`); nothing sleeps to synchronise.

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
    UploadPart,
};
use recorder::journal::{Journal, State};
use recorder::upload::{PART_SIZE, RetryPolicy, UploadEvent, Uploader};
use sha2::{Digest, Sha256};

#[path = "support/moto.rs"]
mod moto;
use moto::Moto;

// ---------------------------------------------------------------------------------------------
// Fixtures

/// A spool directory, a journal in it, and a file to record into.
struct Spool {
    dir: tempfile::TempDir,
    journal: Arc<Journal>,
}

impl Spool {
    fn new() -> Spool {
        let dir = tempfile::tempdir().expect("temp dir");
        let journal = Arc::new(Journal::open(dir.path().join("jobs.db")).expect("open journal"));
        Spool { dir, journal }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a recording's spool file and starts its job.
    fn record(&self, id: i64, data: &[u8], now_ms: i64) -> PathBuf {
        let file = self.path(&format!("{id}.webm"));
        std::fs::write(&file, data).expect("write spool file");
        self.journal
            .begin(id, &file, &key(id), now_ms)
            .expect("begin");
        file
    }
}

fn key(id: i64) -> String {
    format!("recordings/{id}.webm")
}

/// Deterministic bytes that differ from part to part.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        base_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(60),
        max_attempts,
    }
}

async fn stored(store: &dyn ObjectStore, id: i64) -> Vec<u8> {
    store
        .get(&ObjectPath::from(key(id)))
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes")
        .to_vec()
}

/// The events but progress.
fn outcomes(events: &[UploadEvent]) -> Vec<&UploadEvent> {
    events
        .iter()
        .filter(|e| !matches!(e, UploadEvent::Progress { .. }))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// A store that fails on demand

/// Wraps a store: fails uploads or parts, corrupts reads, and records whether a watched file
/// still existed when the store's copy was read back.
#[derive(Debug)]
struct Faulty {
    inner: Arc<dyn ObjectStore>,
    /// `put_multipart` calls left to fail.
    fail_uploads: AtomicU32,
    /// Part numbers (1-based, counted over all uploads) that fail.
    fail_parts: Arc<Mutex<HashSet<u32>>>,
    /// Parts started so far.
    parts: Arc<AtomicU32>,
    /// `put_multipart` calls so far.
    uploads: AtomicU32,
    /// Parts never complete (and `stalled` is notified when one starts).
    stall_parts: Arc<AtomicBool>,
    stalled: Arc<tokio::sync::Notify>,
    /// Reads (not `head`) return the object with its first byte flipped.
    corrupt_reads: AtomicBool,
    /// For each read: did this file exist?
    watch: Mutex<Option<PathBuf>>,
    seen_at_read: Mutex<Vec<bool>>,
}

impl Faulty {
    fn new(inner: Arc<dyn ObjectStore>) -> Faulty {
        Faulty {
            inner,
            fail_uploads: AtomicU32::new(0),
            fail_parts: Arc::default(),
            parts: Arc::default(),
            uploads: AtomicU32::new(0),
            stall_parts: Arc::default(),
            stalled: Arc::default(),
            corrupt_reads: AtomicBool::new(false),
            watch: Mutex::new(None),
            seen_at_read: Mutex::new(Vec::new()),
        }
    }

    fn uploads(&self) -> u32 {
        self.uploads.load(Ordering::SeqCst)
    }
}

fn injected(what: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "Faulty",
        source: format!("injected failure: {what}").into(),
    }
}

impl fmt::Display for Faulty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Faulty {
    async fn put_opts(
        &self,
        location: &ObjectPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjectPath,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.uploads.fetch_add(1, Ordering::SeqCst);
        let left = self.fail_uploads.load(Ordering::SeqCst);
        if left > 0 {
            self.fail_uploads.store(left - 1, Ordering::SeqCst);
            return Err(injected("put_multipart"));
        }
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(FaultyUpload {
            inner,
            fail_parts: Arc::clone(&self.fail_parts),
            parts: Arc::clone(&self.parts),
            stall_parts: Arc::clone(&self.stall_parts),
            stalled: Arc::clone(&self.stalled),
        }))
    }

    async fn get_opts(
        &self,
        location: &ObjectPath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        if options.head {
            return self.inner.get_opts(location, options).await;
        }
        if let Some(file) = self.watch.lock().unwrap().as_ref() {
            self.seen_at_read.lock().unwrap().push(file.exists());
        }
        let result = self.inner.get_opts(location, options).await?;
        if !self.corrupt_reads.load(Ordering::SeqCst) {
            return Ok(result);
        }
        let (meta, range, attributes) = (
            result.meta.clone(),
            result.range.clone(),
            result.attributes.clone(),
        );
        let mut bytes = result.bytes().await?.to_vec();
        if let Some(first) = bytes.first_mut() {
            *first ^= 0xff;
        }
        let stream = futures_util::stream::once(async move { Ok(Bytes::from(bytes)) }).boxed();
        Ok(GetResult {
            payload: GetResultPayload::Stream(stream),
            meta,
            range,
            attributes,
            extensions: Default::default(),
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<ObjectPath>>,
    ) -> BoxStream<'static, object_store::Result<ObjectPath>> {
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &ObjectPath,
        to: &ObjectPath,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[derive(Debug)]
struct FaultyUpload {
    inner: Box<dyn MultipartUpload>,
    fail_parts: Arc<Mutex<HashSet<u32>>>,
    parts: Arc<AtomicU32>,
    stall_parts: Arc<AtomicBool>,
    stalled: Arc<tokio::sync::Notify>,
}

#[async_trait]
impl MultipartUpload for FaultyUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let n = self.parts.fetch_add(1, Ordering::SeqCst) + 1;
        if self.stall_parts.load(Ordering::SeqCst) {
            self.stalled.notify_one();
            return Box::pin(std::future::pending());
        }
        if self.fail_parts.lock().unwrap().contains(&n) {
            return Box::pin(async move { Err(injected(&format!("part {n}"))) });
        }
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}

// ---------------------------------------------------------------------------------------------
// Local store and in-memory store

#[tokio::test]
async fn a_recording_goes_recording_pending_done_on_the_local_store() {
    let spool = Spool::new();
    let store_dir = tempfile::tempdir().unwrap();
    let local: Arc<dyn ObjectStore> =
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(store_dir.path()).unwrap());
    let store = Arc::new(Faulty::new(Arc::clone(&local)));
    let uploader = Uploader::new(Arc::clone(&spool.journal), store.clone(), policy(5));

    let bytes = data(2 * PART_SIZE + 1000, 1);
    let file = spool.record(1, &bytes, 0);
    *store.watch.lock().unwrap() = Some(file.clone());

    // Still recording: never due.
    assert_eq!(uploader.run_once(10_000).await, vec![]);
    assert_eq!(
        spool.journal.get(1).unwrap().unwrap().state,
        State::Recording
    );

    spool.journal.finish(1, 90_000, 100).unwrap();
    assert_eq!(spool.journal.get(1).unwrap().unwrap().state, State::Pending);
    assert_eq!(uploader.run_once(99).await, vec![], "not due yet");

    let events = uploader.run_once(100).await;
    let total = bytes.len() as u64;
    assert_eq!(
        events,
        vec![
            // After the second part was sent, at least the first one was acknowledged.
            UploadEvent::Progress {
                recording_id: 1,
                uploaded: PART_SIZE as u64,
                total
            },
            UploadEvent::Progress {
                recording_id: 1,
                uploaded: total,
                total
            },
            UploadEvent::Uploaded {
                recording_id: 1,
                object_key: key(1),
                size: total,
                sha256: sha256(&bytes),
                duration_ms: Some(90_000),
            },
        ]
    );
    assert_eq!(
        std::fs::read(store_dir.path().join("recordings/1.webm")).unwrap(),
        bytes,
        "the stored object equals the spool file byte for byte"
    );
    assert_eq!(
        *store.seen_at_read.lock().unwrap(),
        vec![true],
        "the spool file still existed when the copy was read back for verification"
    );
    assert!(!file.exists(), "the spool file is deleted once verified");
    let job = spool.journal.get(1).unwrap().unwrap();
    assert_eq!(job.state, State::Done);
    assert_eq!(job.size, Some(total));
    assert_eq!(job.sha256, Some(sha256(&bytes)));
    assert_eq!((job.attempts, job.error), (0, None));

    // Nothing left to do.
    assert_eq!(uploader.run_once(1_000_000).await, vec![]);
    assert_eq!(store.uploads(), 1);
}

#[tokio::test]
async fn small_and_empty_files_upload_too() {
    let spool = Spool::new();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let uploader = Uploader::new(Arc::clone(&spool.journal), Arc::clone(&store), policy(5));
    for (id, len) in [(1, 0), (2, 1), (3, PART_SIZE)] {
        let bytes = data(len, id as u64);
        let file = spool.record(id, &bytes, 0);
        spool.journal.finish(id, 1, 0).unwrap();
        let events = uploader.run_once(0).await;
        assert!(
            matches!(outcomes(&events)[..], [UploadEvent::Uploaded { size, .. }] if *size == len as u64),
            "{len} bytes: {events:?}"
        );
        assert_eq!(stored(store.as_ref(), id).await, bytes);
        assert!(!file.exists());
    }
}

#[tokio::test]
async fn a_failing_store_is_retried_at_the_backoff_times() {
    let spool = Spool::new();
    let memory: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let store = Arc::new(Faulty::new(Arc::clone(&memory)));
    // First attempt: the upload cannot start. Second: its second part fails mid-upload.
    store.fail_uploads.store(1, Ordering::SeqCst);
    store.fail_parts.lock().unwrap().insert(2);
    let uploader = Uploader::new(Arc::clone(&spool.journal), store.clone(), policy(5));

    let bytes = data(2 * PART_SIZE + 77, 2);
    let file = spool.record(3, &bytes, 0);
    spool.journal.finish(3, 5_000, 0).unwrap();

    let events = uploader.run_once(0).await;
    assert!(
        matches!(outcomes(&events)[..], [UploadEvent::Retrying { recording_id: 3, attempts: 1, next_attempt_ms: 1_000, error }]
            if error.contains("injected failure: put_multipart")),
        "{events:?}"
    );
    let job = spool.journal.get(3).unwrap().unwrap();
    assert_eq!(
        (job.state, job.attempts, job.next_attempt_ms),
        (State::Pending, 1, 1_000)
    );
    assert!(job.error.unwrap().contains("put_multipart"));
    assert!(file.exists());

    // Before the backoff time nothing is attempted.
    assert_eq!(uploader.run_once(999).await, vec![]);
    assert_eq!(store.uploads(), 1);

    // Due: attempted again; a part fails; the next wait is twice as long.
    let events = uploader.run_once(1_000).await;
    assert!(
        matches!(outcomes(&events)[..], [UploadEvent::Retrying { attempts: 2, next_attempt_ms: 3_000, error, .. }]
            if error.contains("injected failure: part 2")),
        "{events:?}"
    );
    assert_eq!(store.uploads(), 2);
    assert!(file.exists(), "the spool file stays until success");
    assert!(
        memory.head(&ObjectPath::from(key(3))).await.is_err(),
        "no partial object is visible"
    );

    assert_eq!(uploader.run_once(2_999).await, vec![]);
    assert_eq!(store.uploads(), 2);

    let events = uploader.run_once(3_000).await;
    assert!(
        matches!(
            outcomes(&events)[..],
            [UploadEvent::Uploaded {
                recording_id: 3,
                duration_ms: Some(5_000),
                ..
            }]
        ),
        "{events:?}"
    );
    assert_eq!(store.uploads(), 3);
    assert_eq!(stored(memory.as_ref(), 3).await, bytes);
    assert!(!file.exists());
    let job = spool.journal.get(3).unwrap().unwrap();
    assert_eq!((job.state, job.attempts, job.error), (State::Done, 2, None));
}

#[tokio::test]
async fn a_copy_that_reads_back_different_is_not_done() {
    let spool = Spool::new();
    let memory: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let store = Arc::new(Faulty::new(Arc::clone(&memory)));
    store.corrupt_reads.store(true, Ordering::SeqCst);
    let uploader = Uploader::new(Arc::clone(&spool.journal), store.clone(), policy(5));

    let bytes = data(100_000, 3);
    let file = spool.record(4, &bytes, 0);
    spool.journal.finish(4, 1_000, 0).unwrap();

    let events = uploader.run_once(0).await;
    assert!(
        matches!(outcomes(&events)[..], [UploadEvent::Retrying { recording_id: 4, attempts: 1, error, .. }]
            if error.contains("verification") && error.contains(&sha256(&bytes))),
        "{events:?}"
    );
    let job = spool.journal.get(4).unwrap().unwrap();
    assert_eq!(job.state, State::Pending);
    assert_eq!(job.sha256, None);
    assert!(
        file.exists(),
        "the spool file is kept when verification fails"
    );

    // The store heals: the next attempt verifies and completes.
    store.corrupt_reads.store(false, Ordering::SeqCst);
    let events = uploader.run_once(1_000).await;
    assert!(
        matches!(outcomes(&events)[..], [UploadEvent::Uploaded { .. }]),
        "{events:?}"
    );
    assert!(!file.exists());
}

#[tokio::test]
async fn a_recording_left_by_a_dead_process_is_recovered_and_uploaded() {
    let spool_dir = tempfile::tempdir().unwrap();
    let db = spool_dir.path().join("jobs.db");
    let recording = data(50_000, 5);
    let interrupted = data(60_000, 6);
    let (file5, file6) = (
        spool_dir.path().join("5.webm"),
        spool_dir.path().join("6.webm"),
    );
    {
        // The process that dies: one recording still writing, one upload under way.
        let journal = Journal::open(&db).unwrap();
        std::fs::write(&file5, &recording).unwrap();
        journal.begin(5, &file5, &key(5), 0).unwrap();
        std::fs::write(&file6, &interrupted).unwrap();
        journal.begin(6, &file6, &key(6), 0).unwrap();
        journal.finish(6, 7_000, 10).unwrap();
        journal.mark_uploading(6, 20).unwrap();
    }

    let journal = Arc::new(Journal::open(&db).unwrap());
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let uploader = Uploader::new(Arc::clone(&journal), Arc::clone(&store), policy(5));
    assert_eq!(
        uploader.run_once(1_000).await,
        vec![],
        "nothing due before recovery"
    );

    assert_eq!(journal.recover(1_000).unwrap(), vec![5]);
    let job = journal.get(5).unwrap().unwrap();
    assert_eq!((job.state, job.duration_ms), (State::Pending, None));
    assert_eq!(journal.get(6).unwrap().unwrap().state, State::Pending);

    let events = uploader.run_once(1_000).await;
    assert_eq!(
        outcomes(&events),
        vec![
            &UploadEvent::Uploaded {
                recording_id: 5,
                object_key: key(5),
                size: recording.len() as u64,
                sha256: sha256(&recording),
                duration_ms: None,
            },
            &UploadEvent::Uploaded {
                recording_id: 6,
                object_key: key(6),
                size: interrupted.len() as u64,
                sha256: sha256(&interrupted),
                duration_ms: Some(7_000),
            },
        ]
    );
    assert_eq!(stored(store.as_ref(), 5).await, recording);
    assert_eq!(stored(store.as_ref(), 6).await, interrupted);
    assert!(!file5.exists() && !file6.exists());
}

#[tokio::test]
async fn after_max_attempts_the_job_fails_and_keeps_its_file() {
    let spool = Spool::new();
    let store = Arc::new(Faulty::new(Arc::new(InMemory::new())));
    store.fail_uploads.store(u32::MAX, Ordering::SeqCst);
    let uploader = Uploader::new(Arc::clone(&spool.journal), store.clone(), policy(3));

    let file = spool.record(8, &data(1_000, 8), 0);
    spool.journal.finish(8, 1, 0).unwrap();

    let mut now = 0;
    for attempts in 1..=2 {
        let events = uploader.run_once(now).await;
        match outcomes(&events)[..] {
            [
                UploadEvent::Retrying {
                    attempts: a,
                    next_attempt_ms,
                    ..
                },
            ] if *a == attempts => now = *next_attempt_ms,
            _ => panic!("attempt {attempts}: {events:?}"),
        }
    }
    assert_eq!(now, 3_000, "1 s then 2 s");
    let events = uploader.run_once(now).await;
    assert_eq!(
        events,
        vec![UploadEvent::Failed {
            recording_id: 8,
            error: "object store: Generic Faulty error: injected failure: put_multipart".into(),
        }]
    );
    let job = spool.journal.get(8).unwrap().unwrap();
    assert_eq!(job.state, State::Failed);
    assert_eq!(job.attempts, 3);
    assert!(job.error.unwrap().contains("injected failure"));
    assert!(file.exists(), "a failed job keeps its spool file");

    assert_eq!(uploader.run_once(i64::MAX).await, vec![], "failed is final");
    assert_eq!(store.uploads(), 3);
}

#[tokio::test]
async fn a_vanished_spool_file_or_a_bad_key_fails_at_once() {
    let spool = Spool::new();
    let store = Arc::new(Faulty::new(Arc::new(InMemory::new())));
    let uploader = Uploader::new(Arc::clone(&spool.journal), store.clone(), policy(5));

    let missing = spool.path("gone.webm");
    spool.journal.begin(1, &missing, &key(1), 0).unwrap();
    spool.journal.finish(1, 1, 0).unwrap();
    let bad_key = spool.path("2.webm");
    std::fs::write(&bad_key, b"webm").unwrap();
    spool.journal.begin(2, &bad_key, "a//b", 0).unwrap();
    spool.journal.finish(2, 1, 0).unwrap();

    let events = uploader.run_once(0).await;
    assert!(
        matches!(&events[..], [
            UploadEvent::Failed { recording_id: 1, error: e1 },
            UploadEvent::Failed { recording_id: 2, error: e2 },
        ] if e1.contains("gone.webm") && e1.contains("missing") && e2.contains("invalid object key")),
        "{events:?}"
    );
    assert_eq!(spool.journal.get(1).unwrap().unwrap().state, State::Failed);
    assert_eq!(spool.journal.get(2).unwrap().unwrap().state, State::Failed);
    assert!(bad_key.exists());
    assert_eq!(store.uploads(), 0);
}

#[tokio::test]
async fn the_loop_uploads_when_woken_and_stops_on_shutdown() {
    let spool = Spool::new();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let uploader = Uploader::new(Arc::clone(&spool.journal), Arc::clone(&store), policy(5));
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let wake = Arc::new(tokio::sync::Notify::new());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(uploader.run(tx, Arc::clone(&wake), shutdown.clone()));

    let bytes = data(3 * PART_SIZE, 9);
    let file = spool.record(9, &bytes, 0);
    spool
        .journal
        .finish(9, 1, recorder::upload::unix_now_ms())
        .unwrap();
    wake.notify_one();

    // The channel holds one event: progress is dropped while the test is not reading, the final
    // event waits for room.
    let uploaded = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match rx.recv().await.expect("uploader alive") {
                UploadEvent::Progress { .. } => continue,
                other => break other,
            }
        }
    })
    .await
    .expect("uploaded in time");
    assert!(
        matches!(
            uploaded,
            UploadEvent::Uploaded {
                recording_id: 9,
                ..
            }
        ),
        "{uploaded:?}"
    );
    assert_eq!(stored(store.as_ref(), 9).await, bytes);
    assert!(!file.exists());

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stopped in time")
        .expect("no panic");
}

#[tokio::test]
async fn shutdown_mid_upload_puts_the_job_back_without_counting_an_attempt() {
    let spool = Spool::new();
    let memory: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let store = Arc::new(Faulty::new(Arc::clone(&memory)));
    store.stall_parts.store(true, Ordering::SeqCst);
    let uploader = Uploader::new(Arc::clone(&spool.journal), store.clone(), policy(5));
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let wake = Arc::new(tokio::sync::Notify::new());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(uploader.run(tx, Arc::clone(&wake), shutdown.clone()));

    let file = spool.record(12, &data(PART_SIZE + 1, 12), 0);
    spool
        .journal
        .finish(12, 1, recorder::upload::unix_now_ms())
        .unwrap();
    wake.notify_one();
    tokio::time::timeout(Duration::from_secs(60), store.stalled.notified())
        .await
        .expect("the upload started");
    assert_eq!(
        spool.journal.get(12).unwrap().unwrap().state,
        State::Uploading
    );

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stopped in time")
        .expect("no panic");
    let job = spool.journal.get(12).unwrap().unwrap();
    assert_eq!(
        (job.state, job.attempts, job.error),
        (State::Pending, 0, None)
    );
    assert!(file.exists());
    assert!(memory.head(&ObjectPath::from(key(12))).await.is_err());
    while let Ok(event) = rx.try_recv() {
        assert!(matches!(event, UploadEvent::Progress { .. }), "{event:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// S3, as served by moto on loopback

#[tokio::test]
async fn a_large_recording_goes_to_s3_in_parts() {
    let spool = Spool::new();
    let moto = Moto::start(spool.dir.path()).await;
    let created = moto
        .request("PUT /recordings HTTP/1.1")
        .expect("create bucket");
    assert!(created.starts_with("HTTP/1.1 200"), "{created}");

    let s3: Arc<dyn ObjectStore> = Arc::new(
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(format!("http://127.0.0.1:{}", moto.port))
            .with_allow_http(true)
            .with_bucket_name("recordings")
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .with_virtual_hosted_style_request(false)
            .build()
            .expect("S3 client"),
    );
    let uploader = Uploader::new(Arc::clone(&spool.journal), Arc::clone(&s3), policy(3));

    // More than two parts: two full 8 MiB parts and a tail.
    let bytes = data(2 * PART_SIZE + 4321, 10);
    let file = spool.record(11, &bytes, 0);
    spool.journal.finish(11, 120_000, 0).unwrap();

    let events = uploader.run_once(0).await;
    let total = bytes.len() as u64;
    assert!(
        events.contains(&UploadEvent::Progress {
            recording_id: 11,
            uploaded: PART_SIZE as u64,
            total
        }),
        "{events:?}"
    );
    assert_eq!(
        outcomes(&events),
        vec![&UploadEvent::Uploaded {
            recording_id: 11,
            object_key: key(11),
            size: total,
            sha256: sha256(&bytes),
            duration_ms: Some(120_000),
        }],
        "moto log: {}",
        moto.log_text()
    );
    assert_eq!(stored(s3.as_ref(), 11).await, bytes);
    assert!(!file.exists());
    assert_eq!(spool.journal.get(11).unwrap().unwrap().state, State::Done);
    assert!(
        moto.log_text().contains("uploadId="),
        "went through a multipart upload"
    );
}
