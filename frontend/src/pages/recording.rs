//! A recording of a session as the pages show it (the class page's list, the VOD page): typed
//! from the API, its state, and how its duration, size and upload progress read; and
//! [`poll_while`], which asks again while a recording is still on its way to `READY`.
//!
//! Everything but [`poll_while`] is pure and tested without a browser. It never decides what a
//! user may do: the server answers only with what the viewer may see.

use leptos::prelude::*;
use serde::Deserialize;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

/// How often a page asks again about a recording that is not settled yet (ms).
pub const POLL_MS: i32 = 3000;

/// Where a recording is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RecordingState {
    /// The session is being recorded now.
    Recording,
    /// Stopped; the file is being stored.
    Uploading,
    /// Stored: it plays.
    Ready,
    Failed,
}

impl std::fmt::Display for RecordingState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RecordingState::Recording => "recording…",
            RecordingState::Uploading => "uploading",
            RecordingState::Ready => "ready",
            RecordingState::Failed => "failed",
        })
    }
}

impl RecordingState {
    /// Still changing by itself: worth asking again.
    pub fn in_progress(self) -> bool {
        matches!(self, RecordingState::Recording | RecordingState::Uploading)
    }

    /// The API's name, for `data-state` attributes and CSS.
    pub fn name(self) -> &'static str {
        match self {
            RecordingState::Recording => "RECORDING",
            RecordingState::Uploading => "UPLOADING",
            RecordingState::Ready => "READY",
            RecordingState::Failed => "FAILED",
        }
    }
}

/// A `Recording` as the API gives it (fields a query does not select stay empty).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recording {
    pub id: String,
    #[serde(default)]
    pub class_id: String,
    /// The class's title and the session's date.
    #[serde(default)]
    pub session_title: String,
    pub state: RecordingState,
    /// When recording started (RFC 3339).
    #[serde(default)]
    pub created_at: String,
    /// Known once stopped.
    pub duration_ms: Option<i64>,
    /// Known once stored.
    pub size_bytes: Option<i64>,
    /// While uploading: bytes stored so far, of `upload_total_bytes`.
    pub uploaded_bytes: Option<i64>,
    pub upload_total_bytes: Option<i64>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// When ready: a signed URL of the file, which expires.
    pub playback_url: Option<String>,
}

impl Recording {
    /// How much of the file is stored, in percent, while it uploads and the total is known.
    pub fn upload_percent(&self) -> Option<u32> {
        percent(self.uploaded_bytes?, self.upload_total_bytes?)
    }

    /// `mm:ss` (or `h:mm:ss`), once known.
    pub fn duration_label(&self) -> Option<String> {
        self.duration_ms.map(duration_label)
    }

    /// `12.3 MB`, once known.
    pub fn size_label(&self) -> Option<String> {
        self.size_bytes.map(megabytes)
    }
}

/// A length of time as a player shows it: `mm:ss` under an hour (`03:07`), `h:mm:ss` from an
/// hour on. Negative lengths read as zero.
pub fn duration_label(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m:02}:{s:02}")
    }
}

/// A size in megabytes (10⁶ bytes), one decimal.
pub fn megabytes(bytes: i64) -> String {
    format!("{:.1} MB", bytes.max(0) as f64 / 1_000_000.0)
}

/// `done` of `total` in whole percent (at most 100); `None` while the total is unknown.
pub fn percent(done: i64, total: i64) -> Option<u32> {
    (total > 0).then(|| (done.clamp(0, total) * 100 / total) as u32)
}

/// Calls `tick` every `every_ms` while `active` is true. It stops when `active` turns false and
/// when the component that called it goes (its owner is cleaned up).
pub fn poll_while(active: Memo<bool>, every_ms: i32, tick: impl Fn() + 'static) {
    let callback = StoredValue::new_local(Closure::<dyn Fn()>::new(tick));
    let handle = StoredValue::new(None::<i32>);
    let stop = move || {
        if let (Some(w), Some(h)) = (
            web_sys::window(),
            handle.try_update_value(Option::take).flatten(),
        ) {
            w.clear_interval_with_handle(h);
        }
    };
    Effect::new(move |_| {
        let on = active.get();
        stop();
        if on {
            let started = callback.with_value(|c| {
                web_sys::window()?
                    .set_interval_with_callback_and_timeout_and_arguments_0(
                        c.as_ref().unchecked_ref(),
                        every_ms,
                    )
                    .ok()
            });
            handle.set_value(started);
        }
    });
    on_cleanup(stop);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_a_player_shows_them() {
        assert_eq!(duration_label(0), "00:00");
        assert_eq!(duration_label(-5), "00:00");
        assert_eq!(duration_label(187_400), "03:07");
        assert_eq!(duration_label(3_599_999), "59:59");
        assert_eq!(duration_label(3_600_000), "1:00:00");
        assert_eq!(duration_label(37_230_000), "10:20:30");
    }

    #[test]
    fn sizes_and_progress() {
        assert_eq!(megabytes(12_345_678), "12.3 MB");
        assert_eq!(megabytes(0), "0.0 MB");
        assert_eq!(percent(50, 200), Some(25));
        assert_eq!(percent(300, 200), Some(100));
        assert_eq!(percent(5, 0), None);
    }

    #[test]
    fn a_recording_reads_from_the_api() {
        let r: Recording = serde_json::from_value(serde_json::json!({
            "id": "7", "state": "UPLOADING", "createdAt": "2026-11-28T10:00:00Z",
            "durationMs": 65_000, "sizeBytes": null, "uploadedBytes": 1_000, "uploadTotalBytes": 4_000,
        }))
        .unwrap();
        assert_eq!(r.state, RecordingState::Uploading);
        assert!(r.state.in_progress());
        assert_eq!(r.upload_percent(), Some(25));
        assert_eq!(r.duration_label().as_deref(), Some("01:05"));
        assert_eq!(r.size_label(), None);
        assert_eq!(r.playback_url, None);
    }
}
