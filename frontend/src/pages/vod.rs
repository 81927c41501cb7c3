//! `/recordings/:id`: a recorded session played back, with its chat and questions beside the
//! video as they happened. Lines show once playback reaches them (they follow the video's
//! `timeupdate`, seeks included); a click on one seeks there.
//!
//! A recording not ready yet shows its state (and upload progress) and is asked about again
//! until it is. The playback URL is signed and expires: when the video fails, the page asks for
//! the recording again (a fresh URL) and goes on where it was. It never plays anything the
//! server did not give it a URL for.

use leptos::html;
use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_params_map;
use serde::Deserialize;
use wasm_bindgen_futures::JsFuture;

use crate::api;
use crate::app::Session;
use crate::pages::classes::{local_time, require_sign_in};
use crate::pages::recording::{POLL_MS, Recording, RecordingState, duration_label, poll_while};

const RECORDING: &str = "query($id: ID!) { recording(id: $id) { id classId sessionTitle state
  createdAt durationMs sizeBytes uploadedBytes uploadTotalBytes error playbackUrl } }";

const REPLAY: &str = "query($id: ID!) { recordingReplay(recordingId: $id) {
  chat { id author body offsetMs } questions { id body author votes state offsetMs } } }";

/// Times in a row the page asks for a fresh URL after the video failed, before it gives up
/// (a fresh URL that plays resets the count).
const MAX_RELOADS: u32 = 3;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReplayChatLine {
    id: String,
    author: String,
    body: String,
    /// Since the recording started (may be negative, or beyond its end).
    offset_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReplayQuestion {
    id: String,
    body: String,
    /// `None`: asked anonymously.
    author: Option<String>,
    votes: i64,
    state: String,
    offset_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
struct Replay {
    chat: Vec<ReplayChatLine>,
    questions: Vec<ReplayQuestion>,
}

/// A line of a replay panel, placed on the video's timeline.
#[derive(Debug, Clone, PartialEq)]
struct Moment {
    id: String,
    /// Where on the video it happened (ms), within the video.
    at_ms: i64,
    who: String,
    body: String,
    /// What became of it (a question's votes and state).
    detail: Option<String>,
}

impl From<&ReplayChatLine> for Moment {
    fn from(l: &ReplayChatLine) -> Moment {
        Moment {
            id: l.id.clone(),
            at_ms: l.offset_ms,
            who: l.author.clone(),
            body: l.body.clone(),
            detail: None,
        }
    }
}

impl From<&ReplayQuestion> for Moment {
    fn from(q: &ReplayQuestion) -> Moment {
        let votes = match q.votes {
            1 => "1 vote".to_owned(),
            n => format!("{n} votes"),
        };
        let state = q.state.to_lowercase();
        Moment {
            id: q.id.clone(),
            at_ms: q.offset_ms,
            who: q.author.clone().unwrap_or_else(|| "Anonymous".into()),
            body: q.body.clone(),
            detail: Some(if state == "open" || state.is_empty() {
                votes
            } else {
                format!("{votes} · {state}")
            }),
        }
    }
}

/// Moments placed on the video: times before the start at its start, times after the end (when
/// known) at its end; in time order (ties keep the server's order).
fn timeline(mut moments: Vec<Moment>, duration_ms: Option<i64>) -> Vec<Moment> {
    for m in &mut moments {
        m.at_ms = m.at_ms.clamp(0, duration_ms.unwrap_or(i64::MAX).max(0));
    }
    moments.sort_by_key(|m| m.at_ms);
    moments
}

/// How many moments of a timeline have happened when the video is at `now_ms`.
fn happened(timeline: &[Moment], now_ms: f64) -> usize {
    timeline.partition_point(|m| m.at_ms as f64 <= now_ms)
}

/// What the page shows.
#[derive(Debug, Clone, PartialEq)]
enum Shown {
    Loading,
    /// No such recording, or its class is not open to the viewer.
    NotFound,
    /// The recording could not be asked for.
    Error(String),
    /// Being recorded or stored.
    Waiting,
    Failed,
    Ready,
}

#[component]
pub fn Vod() -> impl IntoView {
    let session = expect_context::<Session>();
    require_sign_in(session);
    let params = use_params_map();
    move || {
        let id = params.read().get("id").unwrap_or_default();
        view! { <Player recording_id=id/> }
    }
}

#[component]
fn Player(recording_id: String) -> impl IntoView {
    let rid = StoredValue::new(recording_id);
    let rec = RwSignal::new(None::<Recording>);
    // Why there is no recording to show (`None`: still asking, or there is one).
    let problem = RwSignal::new(None::<Shown>);
    let replay = RwSignal::new(None::<Result<Replay, String>>);
    // Where the video is (ms); infinite once it ended (everything has happened).
    let now = RwSignal::new(0.0f64);
    let video_ref = NodeRef::<html::Video>::new();
    // Fresh URLs asked for since the video last played, and where to go on once one loads
    // (position in seconds, and whether it was playing).
    let reloads = StoredValue::new(0u32);
    // Where playback stood when the source last loaded: only a second of playback past it
    // proves the new source plays (a file that fails again must not reload forever).
    let loaded_at = StoredValue::new(None::<f64>);
    let resume = StoredValue::new(None::<(f64, bool)>);
    let unplayable = RwSignal::new(false);

    // Asks for the recording (again): its state, and a fresh playback URL when ready.
    let refresh = move || {
        let id = rid.get_value();
        leptos::task::spawn_local(async move {
            let answer = api::graphql(RECORDING, serde_json::json!({ "id": id })).await;
            let before = rec.get_untracked().and_then(|r| r.playback_url);
            match answer {
                Ok(d) if d["recording"].is_null() => problem.set(Some(Shown::NotFound)),
                Ok(d) => match serde_json::from_value::<Recording>(d["recording"].clone()) {
                    Ok(r) => {
                        let same_url = before.is_some() && before == r.playback_url;
                        problem.set(None);
                        rec.set(Some(r));
                        // The same URL again: the element would not try it again by itself.
                        if same_url
                            && resume.get_value().is_some()
                            && let Some(v) = video_ref.get_untracked()
                        {
                            v.load();
                        }
                    }
                    Err(e) => problem.set(Some(Shown::Error(format!("Unexpected answer: {e}")))),
                },
                Err(e) if e.code == "NOT_FOUND" => problem.set(Some(Shown::NotFound)),
                // A failed poll of a recording already shown: the next one tries again.
                Err(_) if rec.get_untracked().is_some() => {}
                Err(e) => problem.set(Some(Shown::Error(e.message))),
            }
        });
    };
    refresh();

    let shown = Memo::new(move |_| {
        if let Some(p) = problem.get() {
            return p;
        }
        match rec.with(|r| r.as_ref().map(|r| r.state)) {
            None => Shown::Loading,
            Some(s) if s.in_progress() => Shown::Waiting,
            Some(RecordingState::Ready) => Shown::Ready,
            Some(_) => Shown::Failed,
        }
    });
    poll_while(
        Memo::new(move |_| shown.get() == Shown::Waiting),
        POLL_MS,
        refresh,
    );
    // The chat and questions, once there is a video to put them beside.
    Effect::new(move |asked: Option<bool>| {
        if asked == Some(true) || shown.get() != Shown::Ready {
            return asked.unwrap_or(false);
        }
        let id = rid.get_value();
        leptos::task::spawn_local(async move {
            let answer = api::graphql(REPLAY, serde_json::json!({ "id": id }))
                .await
                .map_err(|e| e.message)
                .and_then(|d| {
                    serde_json::from_value::<Replay>(d["recordingReplay"].clone())
                        .map_err(|e| format!("Unexpected answer: {e}"))
                });
            replay.set(Some(answer));
        });
        true
    });

    let title = Memo::new(move |_| rec.with(|r| r.as_ref().map(|r| r.session_title.clone())));
    let facts = Memo::new(move |_| {
        rec.with(|r| {
            let r = r.as_ref()?;
            let mut parts = vec![local_time(&r.created_at)];
            parts.extend(r.duration_label());
            Some(parts.join(" · "))
        })
    });
    let class_href = Memo::new(move |_| {
        rec.with(|r| match r {
            Some(r) if !r.class_id.is_empty() => format!("/classes/{}", r.class_id),
            _ => "/classes".to_owned(),
        })
    });
    let url = Memo::new(move |_| rec.with(|r| r.as_ref().and_then(|r| r.playback_url.clone())));
    let duration_ms = Memo::new(move |_| rec.with(|r| r.as_ref().and_then(|r| r.duration_ms)));
    let chat = Memo::new(move |_| {
        replay.with(|r| match r {
            Some(Ok(r)) => timeline(r.chat.iter().map(Moment::from).collect(), duration_ms.get()),
            _ => Vec::new(),
        })
    });
    let questions = Memo::new(move |_| {
        replay.with(|r| match r {
            Some(Ok(r)) => timeline(
                r.questions.iter().map(Moment::from).collect(),
                duration_ms.get(),
            ),
            _ => Vec::new(),
        })
    });

    let follow = move || {
        if let Some(v) = video_ref.get_untracked() {
            let t = v.current_time();
            now.set((t * 1000.0).round());
            if loaded_at.get_value().is_some_and(|from| t >= from + 1.0) {
                reloads.set_value(0);
                loaded_at.set_value(None);
            }
        }
    };
    let seek = Callback::new(move |at_ms: i64| {
        if let Some(v) = video_ref.get_untracked() {
            v.set_current_time(at_ms as f64 / 1000.0);
        }
        now.set(at_ms as f64);
    });
    let on_error = move |_| {
        let Some(v) = video_ref.get_untracked() else {
            return;
        };
        if reloads.get_value() >= MAX_RELOADS {
            unplayable.set(true);
            return;
        }
        reloads.update_value(|n| *n += 1);
        // Where it was: the element forgets it with a new source.
        if resume.get_value().is_none() {
            let at = now.get_untracked();
            let at = if at.is_finite() { at / 1000.0 } else { 0.0 };
            resume.set_value(Some((at, !v.paused())));
        }
        refresh();
    };
    let on_loaded = move |_| {
        unplayable.set(false);
        let pending = resume.try_update_value(Option::take).flatten();
        if let Some(v) = video_ref.get_untracked() {
            let from = pending.map_or(v.current_time(), |(at, _)| at);
            loaded_at.set_value(Some(if from.is_finite() { from } else { 0.0 }));
        }
        let (Some(v), Some((at, playing))) = (video_ref.get_untracked(), pending) else {
            return;
        };
        if at.is_finite() && at > 0.0 {
            v.set_current_time(at);
        }
        if playing && let Ok(p) = v.play() {
            // A refusal (no click since the reload) leaves it paused; nothing else to do.
            leptos::task::spawn_local(async move {
                let _ = JsFuture::from(p).await;
            });
        }
    };

    view! {
        <section class="vod" data-testid="vod">
            <Show when=move || title.get().is_some()>
                <div class="vod-head">
                    <div>
                        <h1 data-testid="vod-title">{move || title.get().unwrap_or_default()}</h1>
                        <p class="muted" data-testid="vod-facts">{move || facts.get().unwrap_or_default()}</p>
                    </div>
                    <A href=move || class_href.get() attr:class="button secondary small">"Back to the class"</A>
                </div>
            </Show>
            {move || match shown.get() {
                Shown::Loading => view! { <p class="muted">"Loading…"</p> }.into_any(),
                Shown::NotFound => view! {
                    <div class="card room-card" data-testid="vod-not-found">
                        <h2>"Recording not found"</h2>
                        <p class="muted">"It does not exist, or its class is not open to you."</p>
                        <A href="/classes" attr:class="button secondary">"Your classes"</A>
                    </div>
                }.into_any(),
                Shown::Error(message) => view! {
                    <div class="card room-card" data-testid="vod-error">
                        <h2>"The recording cannot be loaded"</h2>
                        <p class="error">{message}</p>
                    </div>
                }.into_any(),
                Shown::Waiting => view! { <NotReady rec=rec/> }.into_any(),
                Shown::Failed => view! {
                    <div class="card room-card" data-testid="vod-state" data-state="FAILED">
                        <h2>"This recording failed"</h2>
                        <p class="error">{move || rec.with(|r| r.as_ref().and_then(|r| r.error.clone())).unwrap_or_else(|| "It could not be stored.".into())}</p>
                    </div>
                }.into_any(),
                Shown::Ready => view! {
                    <div class="vod-body">
                        <div class="vod-player">
                            <video node_ref=video_ref data-testid="vod-video" controls=true playsinline=true
                                preload="metadata" src=move || url.get()
                                on:timeupdate=move |_| follow()
                                on:seeked=move |_| follow()
                                on:ended=move |_| now.set(f64::INFINITY)
                                on:loadedmetadata=on_loaded
                                on:error=on_error></video>
                            <Show when=move || unplayable.get()>
                                <p class="notice" role="alert" data-testid="vod-unplayable">
                                    "The video cannot be played right now. Reload the page to try again."
                                </p>
                            </Show>
                        </div>
                        <div class="vod-side">
                            <ReplayPanel title="Chat" testid="replay-chat" empty="No chat in this session."
                                lines=chat now=now seek=seek replay=replay/>
                            <ReplayPanel title="Q&A" testid="replay-questions" empty="No questions in this session."
                                lines=questions now=now seek=seek replay=replay/>
                        </div>
                    </div>
                }.into_any(),
            }}
        </section>
    }
}

/// A recording still being recorded or stored: its state, and how far the upload is.
#[component]
fn NotReady(rec: RwSignal<Option<Recording>>) -> impl IntoView {
    let state = move || rec.with(|r| r.as_ref().map(|r| r.state));
    let percent = move || rec.with(|r| r.as_ref().and_then(Recording::upload_percent));
    view! {
        <div class="card room-card" data-testid="vod-state"
            data-state=move || state().map(RecordingState::name).unwrap_or_default()>
            <h2>{move || match state() {
                Some(RecordingState::Recording) => "This session is still being recorded",
                _ => "This recording is being stored",
            }}</h2>
            <Show when=move || percent().is_some()>
                <div class="upload-progress">
                    <progress max="100" value=move || percent().unwrap_or(0)
                        aria-label="Upload progress" data-testid="upload-progress"></progress>
                    <span>{move || format!("{} %", percent().unwrap_or(0))}</span>
                </div>
            </Show>
            <p class="muted">"Keep this page open: the video shows here as soon as it is ready."</p>
        </div>
    }
}

/// One side panel of the replay: the lines that have happened at the video's time, the latest
/// highlighted and kept in view; a click on one seeks the video there.
#[component]
fn ReplayPanel(
    title: &'static str,
    testid: &'static str,
    /// Said when the session had none at all.
    empty: &'static str,
    lines: Memo<Vec<Moment>>,
    now: RwSignal<f64>,
    seek: Callback<i64>,
    replay: RwSignal<Option<Result<Replay, String>>>,
) -> impl IntoView {
    let count = Memo::new(move |_| lines.with(|l| happened(l, now.get())));
    let latest =
        Memo::new(move |_| lines.with(|l| count.get().checked_sub(1).map(|i| l[i].id.clone())));
    let list_ref = NodeRef::<html::Ol>::new();
    // The latest line is the last one shown: keep the bottom of the list in view.
    Effect::new(move |_| {
        latest.track();
        request_animation_frame(move || {
            if let Some(el) = list_ref.get_untracked() {
                el.set_scroll_top(el.scroll_height());
            }
        });
    });
    let note = move || match replay.get() {
        None => Some("Loading…".to_owned()),
        Some(Err(e)) => Some(e),
        Some(Ok(_)) if lines.with(Vec::is_empty) => Some(empty.to_owned()),
        Some(Ok(_)) if count.get() == 0 => {
            Some("Nothing yet at this point of the video.".to_owned())
        }
        Some(Ok(_)) => None,
    };
    view! {
        <section class="replay-panel" data-testid=testid aria-label=title>
            <h2>{title}" "<span class="count">{move || format!("{} / {}", count.get(), lines.with(Vec::len))}</span></h2>
            <ol class="replay-lines" node_ref=list_ref>
                <For each=move || lines.with(|l| l[..count.get().min(l.len())].to_vec()) key=|m| m.id.clone() let:m>
                    {
                        let id = StoredValue::new(m.id.clone());
                        let current = move || latest.with(|l| id.with_value(|i| l.as_ref() == Some(i)));
                        let at = m.at_ms;
                        view! {
                            <li>
                                <button class="replay-line" data-testid="replay-line" data-id=m.id.clone()
                                    data-offset-ms=at.to_string()
                                    class:current=current aria-current=move || current().then_some("true")
                                    title="Play from here" on:click=move |_| seek.run(at)>
                                    <span class="meta">
                                        <time>{duration_label(at)}</time>
                                        <span class="author">{m.who.clone()}</span>
                                        {m.detail.clone().map(|d| view! { <span class="detail">{d}</span> })}
                                    </span>
                                    <span class="body">{m.body.clone()}</span>
                                </button>
                            </li>
                        }
                    }
                </For>
            </ol>
            {move || note().map(|n| view! { <p class="muted replay-note">{n}</p> })}
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &str, offset_ms: i64) -> Moment {
        Moment::from(&ReplayChatLine {
            id: id.into(),
            author: "Vic".into(),
            body: "hi".into(),
            offset_ms,
        })
    }

    #[test]
    fn lines_are_placed_within_the_video_in_time_order() {
        let t = timeline(
            vec![
                line("3", 9_000),
                line("1", -2_000),
                line("2", 4_000),
                line("4", 70_000),
            ],
            Some(60_000),
        );
        let placed: Vec<(&str, i64)> = t.iter().map(|m| (m.id.as_str(), m.at_ms)).collect();
        assert_eq!(
            placed,
            [("1", 0), ("2", 4_000), ("3", 9_000), ("4", 60_000)]
        );
        // An unknown duration leaves late lines where they are.
        assert_eq!(timeline(vec![line("4", 70_000)], None)[0].at_ms, 70_000);
    }

    #[test]
    fn lines_show_once_the_video_reaches_them() {
        let t = timeline(vec![line("1", 1_000), line("2", 4_000)], Some(10_000));
        assert_eq!(happened(&t, 0.0), 0);
        assert_eq!(happened(&t, 999.0), 0);
        assert_eq!(happened(&t, 1_000.0), 1);
        assert_eq!(happened(&t, 5_000.0), 2);
        assert_eq!(happened(&t, f64::INFINITY), 2);
    }

    #[test]
    fn a_question_says_what_became_of_it() {
        let q = ReplayQuestion {
            id: "9".into(),
            body: "Why?".into(),
            author: None,
            votes: 3,
            state: "ANSWERED".into(),
            offset_ms: 5,
        };
        let m = Moment::from(&q);
        assert_eq!(m.who, "Anonymous");
        assert_eq!(m.detail.as_deref(), Some("3 votes · answered"));
    }

    #[test]
    fn a_replay_reads_from_the_api() {
        let r: Replay = serde_json::from_value(serde_json::json!({
            "chat": [{ "id": "1", "author": "Vic", "body": "hello", "offsetMs": -300 }],
            "questions": [{ "id": "2", "body": "Why?", "author": null, "votes": 0, "state": "open", "offsetMs": 1200 }],
        }))
        .unwrap();
        assert_eq!(r.chat[0].offset_ms, -300);
        assert_eq!(
            Moment::from(&r.questions[0]).detail.as_deref(),
            Some("0 votes")
        );
    }
}
