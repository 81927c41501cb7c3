//! Recording a live session and playing it back (issue 14).
//!
//! - **Record**: the host starts a recording; a `recordings` row is made (`recording`), the
//!   media node's journal notes the spool file, and [`recorder::live::record`] composites the
//!   room from the SFU's in-process consumer into one WebM file. Stopping (the host, the session
//!   ending, or the gateway shutting down) finalises the file: the row becomes `uploading`.
//! - **Store**: the journal's uploader stores the file in the object store, verifies it and
//!   deletes the spool file; the row becomes `ready` (or `failed` after its attempts). A gateway
//!   killed mid-recording finds the job on start-up ([`recorder::journal::Journal::recover`]):
//!   the file plays up to the kill and is stored the same way.
//! - **Play**: a `ready` recording's playback URL is signed and expires: a presigned GET on S3,
//!   or `/vod/<id>?exp=..&sig=..` served here with HTTP Range ([`vod`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use object_store::path::Path as ObjectPath;
use object_store::signer::Signer;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use schema::models::class_session::ClassSession;
use schema::models::recording::{self, NewRecording, Recording};
use serde::Deserialize;
use sha2::Sha256;
use tokio::sync::{Notify, mpsc, oneshot, watch};

use recorder::journal::Journal;
use recorder::pipeline::{Format, Pipeline};
use recorder::upload::{RetryPolicy, UploadEvent, Uploader};

use crate::AppState;
use crate::config::RecordingConfig;
use crate::live::{self, TrackSource};

/// How long a stop waits for the file to be finalised before answering.
const STOP_WAIT: Duration = Duration::from_secs(45);
/// Upload events waiting for the database.
const EVENT_QUEUE: usize = 256;

/// Why a recording could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartFailed {
    #[error("the session is being recorded already")]
    AlreadyRecording,
    #[error("database: {0}")]
    Db(String),
    #[error("the recorder could not start: {0}")]
    Recorder(String),
}

/// The recordings of this node: those being made, upload progress, playback URLs.
pub struct Recorders {
    config: RecordingConfig,
    journal: Arc<Journal>,
    /// Wakes the uploader when a file is final.
    wake: Arc<Notify>,
    /// Key of the local playback URLs' signatures.
    url_key: Vec<u8>,
    /// Presigns playback URLs when the store is S3.
    signer: Option<Arc<dyn Signer>>,
    /// Recordings being made, by session.
    active: Mutex<HashMap<i64, Active>>,
    /// Bytes stored of recordings being uploaded: (uploaded, total).
    progress: Mutex<HashMap<i64, (u64, u64)>>,
}

struct Active {
    recording_id: i64,
    /// Who speaks in the room (a peer id): the recording shows them large.
    speaker: watch::Sender<Option<u64>>,
    stop: Option<oneshot::Sender<()>>,
    /// Becomes true once the row left `recording`.
    done: watch::Receiver<bool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where a recording of a session is stored.
pub fn object_key(class_id: i64, session_id: i64, recording_id: i64) -> String {
    format!("recordings/class-{class_id}/session-{session_id}/recording-{recording_id}.webm")
}

impl Recorders {
    /// Opens the spool directory and the journal.
    pub fn open(
        config: &RecordingConfig,
        signer: Option<Arc<dyn Signer>>,
    ) -> Result<Recorders, String> {
        std::fs::create_dir_all(&config.spool_dir)
            .map_err(|e| format!("spool {}: {e}", config.spool_dir.display()))?;
        if let Some(dir) = config
            .journal
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|e| format!("journal {}: {e}", dir.display()))?;
        }
        let journal = Journal::open(&config.journal)
            .map_err(|e| format!("journal {}: {e}", config.journal.display()))?;
        let url_key = if config.url_secret.is_empty() {
            rand::random::<[u8; 32]>().to_vec()
        } else {
            config.url_secret.as_bytes().to_vec()
        };
        Ok(Recorders {
            config: config.clone(),
            journal: Arc::new(journal),
            wake: Arc::new(Notify::new()),
            url_key,
            signer,
            active: Mutex::new(HashMap::new()),
            progress: Mutex::new(HashMap::new()),
        })
    }

    /// The recording of `session_id` being made on this node, if any.
    pub fn active(&self, session_id: i64) -> Option<i64> {
        lock(&self.active).get(&session_id).map(|a| a.recording_id)
    }

    /// The SFU says who speaks in `room`: the room's recording, if any, shows them large.
    pub fn speaker(&self, room: &str, peer: sfu::PeerId) {
        for (session, a) in lock(&self.active).iter() {
            if live::room_of(*session) == room {
                a.speaker.send_replace(Some(peer.as_u64()));
            }
        }
    }

    /// Upload progress of a recording being stored: (bytes stored, file size).
    pub fn progress(&self, recording_id: i64) -> Option<(u64, u64)> {
        lock(&self.progress).get(&recording_id).copied()
    }

    /// Starts recording a live session (who may is the caller's to check); `title` (the
    /// class's) is drawn on the canvas while nobody is on camera.
    pub async fn start(
        &self,
        app: &AppState,
        session: &ClassSession,
        title: &str,
    ) -> Result<Recording, StartFailed> {
        let session_id = session.id;
        if self.active(session_id).is_some() {
            return Err(StartFailed::AlreadyRecording);
        }
        let now = schema::now_ms();
        let created = app
            .db
            .interact(move |c| {
                recording::create(
                    c,
                    &NewRecording {
                        session_id,
                        state: recording::RECORDING,
                        created_at: now,
                        updated_at: now,
                    },
                )
            })
            .await;
        let row = match created {
            Ok(row) => row,
            // The unique index: one `recording` row per session, whichever node made it.
            Err(e) if e.is_unique_violation() => return Err(StartFailed::AlreadyRecording),
            Err(e) => return Err(StartFailed::Db(e.to_string())),
        };
        let id = row.id;
        let path = self.config.spool_dir.join(format!("recording-{id}.webm"));
        let key = object_key(session.class_id, session_id, id);
        // Validated at start-up: every value fits.
        let int = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
        let format = Format {
            width: int(self.config.width),
            height: int(self.config.height),
            fps: int(self.config.fps),
            video_bps: int(self.config.video_kbps.saturating_mul(1000)),
        };
        let journal = Arc::clone(&self.journal);
        let started = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                journal
                    .begin(id, &path, &key, now)
                    .map_err(|e| format!("journal: {e}"))?;
                Pipeline::start(&path, format).map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r)
        };
        let pipeline = match started {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(recording = id, error = %e, "a recording could not start");
                let error = e.clone();
                let _ = app
                    .db
                    .interact(move |c| recording::fail(c, id, &error, schema::now_ms()))
                    .await;
                let journal = Arc::clone(&self.journal);
                let _ = tokio::task::spawn_blocking(move || {
                    journal.mark_failed(id, &e, schema::now_ms())
                })
                .await;
                return Err(StartFailed::Recorder("see the server log".into()));
            }
        };
        pipeline.set_title(title);
        let live = app.live.clone();
        let feeder = recorder::live::Feeder::new(pipeline, move |track| {
            let id = track.msid_track();
            live.snapshot(session_id).is_some_and(|s| {
                s.tracks
                    .iter()
                    .any(|t| t.id == id && t.source == TrackSource::Screen)
            })
        });
        let (speaker, speaker_rx) = watch::channel(None);
        let feeder = feeder.with_speaker(speaker_rx);
        let consumer = app
            .sfu
            .local_consumer(&live::room_of(session_id), sfu::LocalOptions::default());
        let (stop_tx, stop_rx) = oneshot::channel();
        let (done_tx, done_rx) = watch::channel(false);
        lock(&self.active).insert(
            session_id,
            Active {
                recording_id: id,
                speaker,
                stop: Some(stop_tx),
                done: done_rx,
            },
        );
        let _ = app
            .live
            .command(session_id, live::Command::Recording(row.clone()));
        tracing::info!(recording = id, session = session_id, path = %path.display(), "recording starts");
        let app = app.clone();
        let clock = Instant::now();
        tokio::spawn(async move {
            let result = recorder::live::record(consumer, feeder, stop_rx).await;
            let duration_ms = i64::try_from(clock.elapsed().as_millis()).unwrap_or(i64::MAX);
            app.recordings
                .finished(
                    &app,
                    session_id,
                    id,
                    duration_ms,
                    result.err().map(|e| e.to_string()),
                )
                .await;
            let _ = done_tx.send(true);
        });
        Ok(row)
    }

    /// A recording's file is final (or as final as it got): the journal queues its upload and the
    /// row becomes `uploading`; everyone in the session is told.
    async fn finished(
        &self,
        app: &AppState,
        session_id: i64,
        id: i64,
        duration_ms: i64,
        error: Option<String>,
    ) {
        if let Some(e) = &error {
            // The file still plays up to where it was written (periodic clusters): keep it.
            tracing::error!(recording = id, error = %e, "a recording did not finish cleanly");
        }
        let journal = Arc::clone(&self.journal);
        let now = schema::now_ms();
        let noted = tokio::task::spawn_blocking(move || journal.finish(id, duration_ms, now)).await;
        if !matches!(noted, Ok(Ok(_))) {
            tracing::error!(
                recording = id,
                "the journal did not take a finished recording"
            );
        }
        let row = app
            .db
            .interact(move |c| recording::finish(c, id, Some(duration_ms), now))
            .await;
        {
            let mut active = lock(&self.active);
            if active
                .get(&session_id)
                .is_some_and(|a| a.recording_id == id)
            {
                active.remove(&session_id);
            }
        }
        self.wake.notify_one();
        match row {
            Ok(Some(row)) => {
                let _ = app.live.command(session_id, live::Command::Recording(row));
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(recording = id, error = %e, "a finished recording was not noted")
            }
        }
    }

    /// Stops the session's recording and, with `wait`, waits (up to [`STOP_WAIT`]) until its
    /// file is final. Returns its id, or `None` when none was being made here.
    pub async fn stop(&self, session_id: i64, wait: bool) -> Option<i64> {
        let (id, stop, mut done) = {
            let mut active = lock(&self.active);
            let a = active.get_mut(&session_id)?;
            (a.recording_id, a.stop.take(), a.done.clone())
        };
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        if !wait {
            return Some(id);
        }
        let waited = tokio::time::timeout(STOP_WAIT, done.wait_for(|d| *d)).await;
        if waited.is_err() {
            tracing::warn!(recording = id, "a recording takes long to finish");
        }
        Some(id)
    }

    /// Stops every recording (the process is shutting down): their files are final and queued.
    pub async fn stop_all(&self) {
        let sessions: Vec<i64> = lock(&self.active).keys().copied().collect();
        for s in sessions {
            self.stop(s, true).await;
        }
    }

    /// The URL a `ready` recording plays from, valid for the configured time from `now_s`.
    pub fn playback_url(&self, r: &Recording, now_s: u64) -> Option<String> {
        if r.state != recording::READY {
            return None;
        }
        let key = r.object_key.as_deref()?;
        let ttl = self.config.url_ttl_seconds;
        if let Some(signer) = &self.signer {
            // Presigning is local computation for S3 (no request): block_on is not needed.
            let path = ObjectPath::from(key);
            let signer = Arc::clone(signer);
            let url = futures_util::FutureExt::now_or_never(signer.signed_url(
                http::Method::GET,
                &path,
                Duration::from_secs(ttl),
            ))?;
            return url.ok().map(|u| u.to_string());
        }
        let exp = now_s + ttl;
        Some(format!(
            "/vod/{}?exp={exp}&sig={}",
            r.id,
            sign(&self.url_key, r.id, exp)
        ))
    }

    /// Whether `sig` signs recording `id` until `exp`, and `exp` is not past at `now_s`.
    pub fn verify(&self, id: i64, exp: u64, sig: &str, now_s: u64) -> bool {
        verify(&self.url_key, id, exp, sig, now_s)
    }
}

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8], id: i64, exp: u64) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(format!("vod:{id}:{exp}").as_bytes());
    mac
}

/// The signature of a playback URL of recording `id` valid until `exp` (unix seconds).
pub fn sign(key: &[u8], id: i64, exp: u64) -> String {
    hex::encode(mac(key, id, exp).finalize().into_bytes())
}

/// Checks a playback URL's signature (in constant time) and expiry.
pub fn verify(key: &[u8], id: i64, exp: u64, sig: &str, now_s: u64) -> bool {
    let Ok(bytes) = hex::decode(sig) else {
        return false;
    };
    now_s <= exp && mac(key, id, exp).verify_slice(&bytes).is_ok()
}

/// A byte range asked for by an HTTP `Range` header, against an object of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Ranged {
    /// No (usable) range: the whole object.
    Whole,
    /// Bytes `start..end` (end exclusive).
    Part(u64, u64),
    /// Outside the object: 416.
    Unsatisfiable,
}

/// Reads a `Range` header (one range of bytes; several ranges are served whole).
pub fn parse_range(header: Option<&str>, size: u64) -> Ranged {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ranged::Whole;
    };
    if spec.contains(',') {
        return Ranged::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Ranged::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    let range = match (a.parse::<u64>(), b.parse::<u64>()) {
        // bytes=a-b
        (Ok(a), Ok(b)) if a <= b => Some((a, b.saturating_add(1).min(size))),
        (Ok(_), Ok(_)) => return Ranged::Whole,
        // bytes=a-
        (Ok(a), Err(_)) if b.is_empty() => Some((a, size)),
        // bytes=-n: the last n
        (Err(_), Ok(n)) if a.is_empty() => {
            if n == 0 {
                return Ranged::Unsatisfiable;
            }
            Some((size.saturating_sub(n), size))
        }
        _ => None,
    };
    match range {
        None => Ranged::Whole,
        Some((start, end)) if start >= size || start >= end => Ranged::Unsatisfiable,
        Some((start, end)) => Ranged::Part(start, end),
    }
}

#[derive(Deserialize)]
pub struct VodQuery {
    exp: Option<u64>,
    sig: Option<String>,
}

/// Now, in unix seconds (playback URLs expire in these).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (status, text).into_response()
}

/// `GET /vod/{id}?exp=&sig=`: a stored recording, with HTTP Range, for a signed URL that has
/// not expired (403 otherwise).
pub async fn vod(
    State(app): State<AppState>,
    Path(id): Path<i64>,
    Query(q): Query<VodQuery>,
    headers: HeaderMap,
) -> Response {
    let (Some(exp), Some(sig)) = (q.exp, q.sig) else {
        return plain(StatusCode::FORBIDDEN, "a signed URL is needed\n");
    };
    if !app.recordings.verify(id, exp, &sig, unix_now()) {
        return plain(
            StatusCode::FORBIDDEN,
            "this URL is not valid (forged or expired)\n",
        );
    }
    let row = app.db.interact(move |c| recording::find(c, id)).await;
    let key = match row {
        Ok(Some(r)) if r.state == recording::READY => match r.object_key {
            Some(k) => k,
            None => return plain(StatusCode::NOT_FOUND, "no such recording\n"),
        },
        Ok(_) => return plain(StatusCode::NOT_FOUND, "no such recording\n"),
        Err(e) => {
            tracing::error!(error = %e, "reading a recording failed");
            return plain(StatusCode::SERVICE_UNAVAILABLE, "try again\n");
        }
    };
    serve_object(app.store.as_ref(), &ObjectPath::from(key), &headers).await
}

/// Serves an object with its size, honouring a `Range` header.
async fn serve_object(store: &dyn ObjectStore, path: &ObjectPath, headers: &HeaderMap) -> Response {
    let meta = match store.head(path).await {
        Ok(m) => m,
        Err(object_store::Error::NotFound { .. }) => {
            return plain(StatusCode::NOT_FOUND, "no such recording\n");
        }
        Err(e) => {
            tracing::error!(error = %e, "object store head failed");
            return plain(StatusCode::SERVICE_UNAVAILABLE, "try again\n");
        }
    };
    let size = meta.size;
    let range = parse_range(
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        size,
    );
    let (status, start, end) = match range {
        Ranged::Whole => (StatusCode::OK, 0, size),
        Ranged::Part(s, e) => (StatusCode::PARTIAL_CONTENT, s, e),
        Ranged::Unsatisfiable => {
            let mut r = plain(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable\n");
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
    };
    let got = if end > start {
        store
            .get_opts(
                path,
                GetOptions {
                    range: Some(GetRange::Bounded(start..end)),
                    ..GetOptions::default()
                },
            )
            .await
    } else {
        store.get(path).await
    };
    let body = match got {
        Ok(g) => Body::from_stream(g.into_stream()),
        Err(e) => {
            tracing::error!(error = %e, "object store get failed");
            return plain(StatusCode::SERVICE_UNAVAILABLE, "try again\n");
        }
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/webm"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", end - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    response
}

/// How long a recording that a crash cut short plays, read from its file (`None` when it cannot
/// be read).
async fn recovered_duration_ms(file: PathBuf) -> Option<i64> {
    let probed = tokio::task::spawn_blocking(move || {
        recorder::probe::duration(&file, Duration::from_secs(600))
    })
    .await;
    match probed {
        Ok(Ok(d)) => i64::try_from(d.as_millis()).ok(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "the length of a recovered recording is unknown");
            None
        }
        Err(_) => None,
    }
}

/// Starts the uploader and what follows its events, after taking back the jobs a dead process
/// left: recordings cut short by a crash are final as they are and get stored.
pub fn spawn_tasks(app: &AppState) {
    let r = &app.recordings;
    let (tx, mut rx) = mpsc::channel::<UploadEvent>(EVENT_QUEUE);
    let uploader = Uploader::new(
        Arc::clone(&r.journal),
        Arc::clone(&app.store),
        RetryPolicy {
            base_delay: Duration::from_millis(r.config.upload_retry_ms),
            max_delay: Duration::from_secs(600),
            max_attempts: r.config.upload_max_attempts,
        },
    );
    {
        let app = app.clone();
        tokio::spawn(async move {
            recover(&app).await;
            let (wake, shutdown) = (Arc::clone(&app.recordings.wake), app.shutdown.clone());
            uploader.run(tx, wake, shutdown).await;
        });
    }
    let app = app.clone();
    tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            on_upload_event(&app, event).await;
        }
    });
}

/// Jobs of a process that died: the recording ended where the file ends.
async fn recover(app: &AppState) {
    let journal = Arc::clone(&app.recordings.journal);
    let now = schema::now_ms();
    let recovered = tokio::task::spawn_blocking(move || {
        let ids = journal.recover(now)?;
        let mut jobs = Vec::new();
        for id in ids {
            if let Some(job) = journal.get(id)? {
                jobs.push(job);
            }
        }
        Ok::<_, recorder::journal::Error>(jobs)
    })
    .await;
    let jobs = match recovered {
        Ok(Ok(jobs)) => jobs,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "the recording journal could not be read");
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "the recording journal could not be read");
            return;
        }
    };
    for job in jobs {
        let id = job.recording_id;
        let file: PathBuf = job.file.clone();
        let row = app.db.interact(move |c| recording::find(c, id)).await;
        let Ok(Some(_)) = row else { continue };
        let duration = match job.duration_ms {
            Some(d) => Some(d),
            None => recovered_duration_ms(file).await,
        };
        if let Some(d) = duration {
            let journal = Arc::clone(&app.recordings.journal);
            let _ =
                tokio::task::spawn_blocking(move || journal.set_duration(id, d, schema::now_ms()))
                    .await;
        }
        tracing::warn!(
            recording = id,
            ?duration,
            "a recording cut short by a restart is stored as it is"
        );
        let _ = app
            .db
            .interact(move |c| recording::finish(c, id, duration, schema::now_ms()))
            .await;
    }
    app.recordings.wake.notify_one();
}

async fn on_upload_event(app: &AppState, event: UploadEvent) {
    let r = &app.recordings;
    let now = schema::now_ms();
    match event {
        UploadEvent::Progress {
            recording_id,
            uploaded,
            total,
        } => {
            lock(&r.progress).insert(recording_id, (uploaded, total));
        }
        UploadEvent::Uploaded {
            recording_id,
            object_key,
            size,
            ..
        } => {
            lock(&r.progress).remove(&recording_id);
            let size = i64::try_from(size).unwrap_or(i64::MAX);
            let done = app
                .db
                .interact(move |c| recording::ready(c, recording_id, &object_key, size, now))
                .await;
            match done {
                Ok(_) => tracing::info!(recording = recording_id, size, "recording ready"),
                Err(e) => {
                    tracing::error!(recording = recording_id, error = %e, "a stored recording was not noted")
                }
            }
        }
        UploadEvent::Retrying {
            recording_id,
            attempts,
            error,
            ..
        } => {
            tracing::warn!(recording = recording_id, attempts, error = %error, "storing a recording failed; it is tried again");
        }
        UploadEvent::Failed {
            recording_id,
            error,
        } => {
            lock(&r.progress).remove(&recording_id);
            tracing::error!(recording = recording_id, error = %error, "storing a recording failed");
            let _ = app
                .db
                .interact(move |c| recording::fail(c, recording_id, &error, now))
                .await;
        }
        other => tracing::debug!(event = ?other, "upload event"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_url_holds_until_it_expires() {
        let key = b"k";
        let sig = sign(key, 7, 1000);
        assert!(verify(key, 7, 1000, &sig, 999));
        assert!(verify(key, 7, 1000, &sig, 1000));
        assert!(!verify(key, 7, 1000, &sig, 1001), "expired");
    }

    #[test]
    fn a_forged_url_is_refused() {
        let key = b"k";
        let sig = sign(key, 7, 1000);
        assert!(!verify(key, 8, 1000, &sig, 0), "another recording");
        assert!(!verify(key, 7, 2000, &sig, 0), "a later expiry");
        assert!(!verify(b"other", 7, 1000, &sig, 0), "another key");
        assert!(!verify(key, 7, 1000, "zz", 0), "not hex");
        assert!(!verify(key, 7, 1000, "", 0), "empty");
    }

    #[test]
    fn ranges_are_read_as_http_says() {
        assert_eq!(parse_range(None, 100), Ranged::Whole);
        assert_eq!(parse_range(Some("bytes=0-9"), 100), Ranged::Part(0, 10));
        assert_eq!(parse_range(Some("bytes=90-"), 100), Ranged::Part(90, 100));
        assert_eq!(parse_range(Some("bytes=-10"), 100), Ranged::Part(90, 100));
        assert_eq!(parse_range(Some("bytes=-1000"), 100), Ranged::Part(0, 100));
        assert_eq!(
            parse_range(Some("bytes=50-1000"), 100),
            Ranged::Part(50, 100)
        );
        assert_eq!(parse_range(Some("bytes=100-"), 100), Ranged::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 100), Ranged::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), Ranged::Whole);
        assert_eq!(parse_range(Some("bytes=9-2"), 100), Ranged::Whole);
        assert_eq!(parse_range(Some("items=0-1"), 100), Ranged::Whole);
        assert_eq!(parse_range(Some("bytes=x-y"), 100), Ranged::Whole);
    }
}
