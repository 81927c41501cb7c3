//! `/live/:id`: the classroom, the page a class's join link opens.
//!
//! Joins the session, publishes camera and microphone (host, co-hosts and speakers; with
//! simulcast), shows everyone on stage in a grid with names, role badges, muted camera and
//! microphone, the active speaker highlighted and each tile's connection quality, and keeps going
//! through a dropped websocket (it resubscribes) or a failed media connection (it reconnects; the
//! server keeps the participant's place for 30 s). The host records the session (*Record*);
//! everyone sees *● REC* while it is being recorded.
//!
//! Every state of the room is said on the page: signed out (sign in or sign up, then back here),
//! not started yet (this page joins by itself when the host goes live), joining, live, the host
//! away, reconnecting, ended, removed, left (with *Rejoin*).
//!
//! Playback never depends on the browser's autoplay policy: remote video plays muted (always
//! allowed), sound plays from separate audio elements, and when the browser refuses to start them
//! without a click (a page opened from a link or reloaded) the page offers *Turn on sound*.

use std::collections::HashMap;

use leptos::html;
use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_params_map;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{HtmlMediaElement, MediaStream, MediaStreamTrack};

use crate::api;
use crate::call::{self, Call, Handlers};
use crate::pages::classes::{local_time, role_label};
use crate::pages::interaction::{self, Interaction};
use crate::pages::layout::{self, Layout, TileKey};
use crate::pages::panel::{self, SidePanel};
use crate::pages::people::{Member, Moderation, PeoplePanel};
use crate::ws::{Subscription, WsStatus};

/// The session's events. Room events carry their number (`seq`): a resubscription passes the
/// last one as `since` and gets what it missed, or a `SessionSnapshot` to start again from.
const EVENTS: &str = "subscription($s: ID!, $since: Int) { sessionEvents(sessionId: $s, since: $since) { __typename
  ... on SessionSnapshot { reason seq participants { id userId name role connected } tracks { id streamId participantId kind muted source } activeSpeakerId
      hands { participantId raisedAt } hostMutes { participantId kind } locked recording { id state } }
  ... on ServerOffer { sdp }
  ... on ParticipantJoined { seq participant { id userId name role connected } }
  ... on ParticipantLeft { seq participantId }
  ... on ParticipantRoleChanged { seq participantId role }
  ... on TrackPublished { seq track { id streamId participantId kind muted source } }
  ... on TrackUnpublished { seq trackId }
  ... on TrackMuted { seq trackId muted }
  ... on ActiveSpeakerChanged { seq participantId }
  ... on LayerChanged { trackId layer }
  ... on SessionEnded { seq sessionId }
  ... on RemovedFromSession { reason }
  ... on ChatMessagePosted { seq message { id authorId authorName body sentAt } }
  ... on ChatMessageDeleted { seq messageId }
  ... on QuestionUpdated { seq question { id body anonymous askerName mine state answer answeredLive votes upvotedByMe askedAt } }
  ... on PollUpdated { seq poll { id question options multipleChoice open resultsShared voted myChoices results voters createdAt } }
  ... on HandRaised { seq hand { participantId raisedAt } }
  ... on HandLowered { seq participantId reason }
  ... on HostMuteChanged { seq participantId kind locked }
  ... on SessionLockChanged { seq locked }
  ... on RecordingChanged { seq recording { id state } }
  ... on StageInvitation { invited } } }";

const SESSION_INFO: &str =
    "query($id: ID!) { session(id: $id) { state scheduledStart class { id title myRole } } }";

const STATE_CHANGES: &str =
    "subscription($s: ID!) { sessionStateChanged(sessionId: $s) { state } }";

#[derive(Clone, Debug, PartialEq)]
struct Person {
    id: String,
    user_id: String,
    name: String,
    role: String,
}

#[derive(Clone, Debug, PartialEq)]
struct Track {
    id: String,
    participant_id: String,
    video: bool,
    muted: bool,
    /// `CAMERA`, `MICROPHONE`, `SCREEN` or `SCREEN_AUDIO`.
    source: String,
}

impl Track {
    /// A shared screen's picture or sound (not shown in its owner's tile).
    fn is_screen(&self) -> bool {
        matches!(self.source.as_str(), "SCREEN" | "SCREEN_AUDIO")
    }
}

const SHARE_SCREEN: &str =
    "mutation($s: ID!, $t: [String!]!) { shareScreen(sessionId: $s, trackIds: $t) }";

const START_RECORDING: &str = "mutation($s: ID!) { startRecording(sessionId: $s) { id state } }";
const STOP_RECORDING: &str = "mutation($s: ID!) { stopRecording(sessionId: $s) { id state } }";

#[derive(Clone, Debug, PartialEq)]
enum Phase {
    Joining,
    /// Not signed in: sign in or sign up, then come back.
    SignedOut,
    /// Scheduled, not live yet (the scheduled start, RFC 3339).
    NotStarted(String),
    Live,
    Reconnecting(&'static str),
    Ended,
    Removed(String),
    Failed(String),
    Left,
}

impl Phase {
    /// In the room: the stage and the controls are shown.
    fn in_room(&self) -> bool {
        matches!(self, Phase::Joining | Phase::Live | Phase::Reconnecting(_))
    }

    fn name(&self) -> &'static str {
        match self {
            Phase::Joining => "joining",
            Phase::SignedOut => "signed-out",
            Phase::NotStarted(_) => "not-started",
            Phase::Live => "live",
            Phase::Reconnecting(_) => "reconnecting",
            Phase::Ended => "ended",
            Phase::Removed(_) => "removed",
            Phase::Failed(_) => "failed",
            Phase::Left => "left",
        }
    }
}

fn can_publish(role: &str) -> bool {
    matches!(role, "HOST" | "CO_HOST" | "SPEAKER")
}

/// How a received picture of this height is named to people (the simulcast layer it comes from).
fn received_picture(height: f64) -> &'static str {
    match height as u32 {
        0 => "no picture yet",
        1..=240 => "180p",
        241..=480 => "360p",
        481..=800 => "720p",
        _ => "1080p",
    }
}

/// The layer a tile of this width needs.
fn layer_for_width(width: f64) -> &'static str {
    if width >= 480.0 {
        "HIGH"
    } else if width >= 240.0 {
        "MEDIUM"
    } else {
        "LOW"
    }
}

/// How a connection looks to a person: `good`, `fair` or `poor`, from loss (%) and round trip
/// (ms). Bitrate alone says nothing (a muted camera sends little).
fn quality_level(loss_pct: f64, rtt_ms: f64) -> &'static str {
    if loss_pct >= 10.0 || rtt_ms >= 500.0 {
        "poor"
    } else if loss_pct >= 3.0 || rtt_ms >= 250.0 {
        "fair"
    } else {
        "good"
    }
}

/// A camera's or microphone's name as people read it: without the `Default - ` prefix, the USB
/// id suffix (`(046d:0825)`) and underscores; a numbered name when the browser gives none.
fn device_label(raw: &str, kind: &str, index: usize) -> String {
    let mut s = raw.trim();
    for prefix in ["Default - ", "Communications - "] {
        if let Some(rest) = s.strip_prefix(prefix) {
            s = rest;
        }
    }
    if let Some(open) = s.rfind(" (")
        && let Some(inner) = s[open + 2..].strip_suffix(')')
        && inner.len() == 9
        && inner
            .split(':')
            .all(|h| h.len() == 4 && h.chars().all(|c| c.is_ascii_hexdigit()))
    {
        s = &s[..open];
    }
    let s = s.replace('_', " ");
    let s = s.trim();
    if s.is_empty() {
        let what = if kind == "videoinput" {
            "Camera"
        } else {
            "Microphone"
        };
        return format!("{what} {}", index + 1);
    }
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A `performance.mark`, so where the join time goes can be read from the page.
fn mark(name: &str) {
    if let Some(p) = web_sys::window().and_then(|w| w.performance()) {
        let _ = p.mark(name);
    }
}

/// Starts playback of `el`, handling the browser's answer: a refusal for lack of a user gesture
/// sets `blocked` (sound), an interrupted start (a new source) is ignored. Never an uncaught error.
fn play(el: HtmlMediaElement, blocked: Option<RwSignal<bool>>) {
    let Ok(promise) = el.play() else { return };
    leptos::task::spawn_local(async move {
        if let Err(e) = JsFuture::from(promise).await {
            let name = js_sys::Reflect::get(&e, &"name".into())
                .ok()
                .and_then(|n| n.as_string())
                .unwrap_or_default();
            if name == "NotAllowedError"
                && let Some(b) = blocked
            {
                b.set(true);
            }
        }
    });
}

/// Plays `stream` in `el` (nothing when it plays it already; stops with `None`).
fn show(el: HtmlMediaElement, stream: Option<MediaStream>, blocked: Option<RwSignal<bool>>) {
    if el.src_object().map(|s| s.id()) != stream.as_ref().map(|s| s.id()) {
        el.set_src_object(stream.as_ref());
        if stream.is_some() {
            play(el, blocked);
        }
    }
}

/// The classroom route. A *Rejoin* (or the session going live while waiting) builds the room anew.
#[component]
pub fn Classroom() -> impl IntoView {
    let params = use_params_map();
    let generation = RwSignal::new(0u32);
    move || {
        generation.get();
        let session_id = params.read().get("id").unwrap_or_default();
        let rejoin = Callback::new(move |_: ()| generation.update(|g| *g += 1));
        view! { <Room session_id=session_id rejoin=rejoin/> }
    }
}

#[component]
fn Room(session_id: String, rejoin: Callback<()>) -> impl IntoView {
    mark("classroom:join-start");
    let me = RwSignal::new(None::<(String, String)>); // (participant id, role)
    let title = RwSignal::new("Live class".to_owned());
    let class_id = RwSignal::new(None::<String>);
    let people = RwSignal::new(Vec::<Person>::new());
    let tracks = RwSignal::new(Vec::<Track>::new());
    let streams = RwSignal::new(HashMap::<String, MediaStream>::new());
    let speaker = RwSignal::new(None::<String>);
    let phase = RwSignal::new(Phase::Joining);
    let notice = RwSignal::new(None::<String>);
    let local = RwSignal::new(None::<MediaStream>);
    // The screen this page shares, if it does.
    let screen = RwSignal::new(None::<MediaStream>);
    // The layout the person picked (`None`: it follows the room) and the tile they pinned.
    let layout_choice = RwSignal::new(None::<Layout>);
    let pinned = RwSignal::new(None::<TileKey>);
    let cam_off = RwSignal::new(false);
    let mic_off = RwSignal::new(false);
    let compact = RwSignal::new(false);
    // The browser refused to start sound without a click.
    let sound_blocked = RwSignal::new(false);
    // A host was here and left (the stage says so instead of standing empty).
    let host_away = RwSignal::new(false);
    let confirm_end = RwSignal::new(false);
    let copied = RwSignal::new(false);
    let devices = RwSignal::new(Vec::<(String, String, String)>::new());
    let ice_servers = StoredValue::new(Vec::<String>::new());
    let call = StoredValue::new_local(None::<Call>);
    let pending_offers = StoredValue::new(Vec::<String>::new());
    let subscription = StoredValue::new_local(None::<Subscription>);
    let waiting = StoredValue::new_local(None::<Subscription>);
    let requested_layers = StoredValue::new(HashMap::<String, &'static str>::new());
    let sid = StoredValue::new(session_id.clone());
    // Chat, Q&A and polls: fed by the events below, shown by the side panel.
    let talk = RwSignal::new(Interaction::default());
    // Hands, mutes by the host, the lock, an invitation to stage (the People panel's).
    let moderation = RwSignal::new(Moderation::default());

    // The class's title and id, in parallel with joining.
    leptos::task::spawn_local(async move {
        if let Ok(d) =
            api::graphql(SESSION_INFO, serde_json::json!({ "id": sid.get_value() })).await
        {
            let class = &d["session"]["class"];
            if let Some(t) = class["title"].as_str() {
                title.set(t.to_owned());
            }
            class_id.set(class["id"].as_str().map(str::to_owned));
        }
    });

    let apply_offer = move |sdp: String| match call.get_value() {
        Some(c) => leptos::task::spawn_local(async move {
            if let Err(e) = c.on_server_offer(sdp).await {
                notice.set(Some(format!("Media renegotiation failed: {e}")));
            }
        }),
        None => pending_offers.update_value(|p| p.push(sdp)),
    };

    // Closes the media connection and the subscriptions, and releases camera and microphone.
    let hang_up = move || {
        if let Some(c) = call.get_value() {
            c.close();
        }
        for s in [subscription.get_value(), waiting.get_value()]
            .into_iter()
            .flatten()
        {
            s.close();
        }
        for stream in [local.get_untracked(), screen.get_untracked()]
            .into_iter()
            .flatten()
        {
            for t in stream.get_tracks().iter() {
                t.unchecked_into::<MediaStreamTrack>().stop();
            }
        }
    };

    let on_event = move |data: serde_json::Value| {
        let e = &data["sessionEvents"];
        let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
        let person_of = |p: &serde_json::Value| Person {
            id: s(&p["id"]),
            user_id: s(&p["userId"]),
            name: s(&p["name"]),
            role: s(&p["role"]),
        };
        let track_of = |t: &serde_json::Value| Track {
            id: s(&t["id"]),
            participant_id: s(&t["participantId"]),
            video: t["kind"] == "VIDEO",
            muted: t["muted"].as_bool().unwrap_or(false),
            source: s(&t["source"]),
        };
        // A resubscription resumes after the last numbered event this page applied.
        if let Some(seq) = e["seq"].as_i64()
            && let Some(sub) = subscription.get_value()
        {
            sub.set_variable("since", serde_json::json!(seq));
        }
        let my_pid = me.get_untracked().map(|m| m.0).unwrap_or_default();
        moderation.update(|m| m.apply(&my_pid, e));
        match e["__typename"].as_str().unwrap_or_default() {
            "SessionSnapshot" => {
                // Everything now: it replaces what the page knew of the room.
                let list: Vec<Person> = e["participants"]
                    .as_array()
                    .map(|a| a.iter().map(person_of).collect())
                    .unwrap_or_default();
                if list.iter().any(|p| p.role == "HOST") {
                    host_away.set(false);
                }
                people.set(list);
                tracks.set(
                    e["tracks"]
                        .as_array()
                        .map(|a| a.iter().map(track_of).collect())
                        .unwrap_or_default(),
                );
                speaker.set(e["activeSpeakerId"].as_str().map(str::to_owned));
                // Chat, Q&A and polls in between were missed: load them again.
                if e["reason"] != "FIRST" {
                    panel::load_history(sid.get_value(), talk);
                }
            }
            "ServerOffer" => apply_offer(s(&e["sdp"])),
            "ParticipantJoined" => {
                let person = person_of(&e["participant"]);
                if person.role == "HOST" {
                    host_away.set(false);
                }
                people.update(|list| {
                    list.retain(|x| x.id != person.id);
                    list.push(person);
                });
            }
            "ParticipantLeft" => {
                let id = s(&e["participantId"]);
                let was_host = people
                    .get_untracked()
                    .iter()
                    .any(|p| p.id == id && p.role == "HOST");
                if was_host {
                    host_away.set(true);
                }
                people.update(|list| list.retain(|x| x.id != id));
                tracks.update(|list| list.retain(|t| t.participant_id != id));
            }
            "ParticipantRoleChanged" => {
                let id = s(&e["participantId"]);
                let role = s(&e["role"]);
                people.update(|list| {
                    for p in list.iter_mut().filter(|p| p.id == id) {
                        p.role = role.clone();
                    }
                });
                if id == my_pid {
                    me.update(|m| {
                        if let Some(m) = m {
                            m.1 = role.clone();
                        }
                    });
                    if !can_publish(&role) {
                        // Off the stage: the server stopped taking what this page sends.
                        for signal in [local, screen] {
                            if let Some(stream) = signal.get_untracked() {
                                for t in stream.get_tracks().iter() {
                                    t.unchecked_into::<MediaStreamTrack>().stop();
                                }
                                signal.set(None);
                            }
                        }
                    }
                }
            }
            "TrackPublished" => {
                let track = track_of(&e["track"]);
                tracks.update(|list| {
                    list.retain(|x| x.id != track.id);
                    list.push(track);
                });
            }
            "TrackUnpublished" => {
                let id = s(&e["trackId"]);
                tracks.update(|list| list.retain(|t| t.id != id));
                streams.update(|m| {
                    m.remove(&id);
                });
            }
            "TrackMuted" => {
                let id = s(&e["trackId"]);
                let muted = e["muted"].as_bool().unwrap_or(false);
                tracks.update(|list| {
                    for t in list.iter_mut().filter(|t| t.id == id) {
                        t.muted = muted;
                    }
                });
            }
            "ActiveSpeakerChanged" => speaker.set(Some(s(&e["participantId"]))),
            "SessionEnded" => {
                phase.set(Phase::Ended);
                hang_up();
            }
            "RemovedFromSession" => {
                phase.set(Phase::Removed(s(&e["reason"])));
                hang_up();
            }
            _ => {
                if let Some(event) = interaction::Event::parse(e) {
                    talk.update(|t| t.apply(event));
                }
            }
        }
    };

    // Waits for a scheduled session to go live, then joins.
    let wait_for_start = move || {
        let sub = Subscription::start(
            STATE_CHANGES,
            serde_json::json!({ "s": sid.get_value() }),
            move |data: serde_json::Value| match data["sessionStateChanged"]["state"].as_str() {
                Some("LIVE") => rejoin.run(()),
                Some("ENDED") => phase.set(Phase::Ended),
                _ => {}
            },
            move |message| notice.set(Some(message)),
            |_| {},
        );
        waiting.set_value(Some(sub));
    };

    // Join, get media, subscribe, connect.
    leptos::task::spawn_local(async move {
        let session_id = sid.get_value();
        let joined = match api::graphql(
            "mutation($s: ID!) { joinSession(sessionId: $s) { participantId role iceServers { urls } } }",
            serde_json::json!({ "s": session_id }),
        )
        .await
        {
            Ok(d) => d["joinSession"].clone(),
            Err(e) => {
                match e.code.as_str() {
                    "UNAUTHENTICATED" => phase.set(Phase::SignedOut),
                    "NOT_FOUND" => phase.set(Phase::Failed(
                        "This class session does not exist, or its class is invite-only and you are not invited.".into(),
                    )),
                    "CONFLICT" => {
                        // Not live: ended, or not started yet.
                        let info = api::graphql(SESSION_INFO, serde_json::json!({ "id": session_id })).await;
                        match info {
                            Ok(d) if d["session"]["state"] == "ENDED" => phase.set(Phase::Ended),
                            Ok(d) if d["session"]["state"] == "SCHEDULED" => {
                                let start = d["session"]["scheduledStart"].as_str().unwrap_or_default();
                                phase.set(Phase::NotStarted(start.to_owned()));
                                wait_for_start();
                            }
                            // It went live in between: try again.
                            Ok(_) => rejoin.run(()),
                            Err(e) => phase.set(Phase::Failed(e.message)),
                        }
                    }
                    _ => phase.set(Phase::Failed(e.message)),
                }
                return;
            }
        };
        mark("classroom:joined");
        let pid = joined["participantId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let role = joined["role"].as_str().unwrap_or_default().to_owned();
        ice_servers.set_value(
            joined["iceServers"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .flat_map(|s| s["urls"].as_array().cloned().unwrap_or_default())
                        .filter_map(|u| u.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        );
        me.set(Some((pid, role.clone())));
        // The subscription connects while the media connection is negotiated.
        let sub = Subscription::start(
            EVENTS,
            serde_json::json!({ "s": session_id }),
            on_event,
            move |message| notice.set(Some(message)),
            move |status| match status {
                WsStatus::Open => {
                    mark("classroom:subscribed");
                    // A resubscription resumes where it was (`since`) or starts from a
                    // snapshot, which replaces people and tracks when it comes.
                    if matches!(phase.get_untracked(), Phase::Reconnecting(_)) {
                        phase.set(Phase::Live);
                    }
                }
                WsStatus::Reconnecting => {
                    if matches!(phase.get_untracked(), Phase::Live) {
                        phase.set(Phase::Reconnecting(
                            "Connection to the server lost. Reconnecting…",
                        ));
                    }
                }
                _ => {}
            },
        );
        // Test and support hook: drop the websocket as a network failure would.
        {
            let sub = sub.clone();
            let drop_ws = Closure::<dyn Fn()>::new(move || sub.drop_connection());
            if let Some(w) = web_sys::window() {
                let _ = js_sys::Reflect::set(&w, &"__classroomDropSocket".into(), drop_ws.as_ref());
            }
            drop_ws.forget();
        }
        subscription.set_value(Some(sub));
        if can_publish(&role) {
            match call::local_media(None, None).await {
                Ok(stream) => {
                    local.set(Some(stream));
                    devices.set(call::devices().await);
                }
                Err(message) => notice.set(Some(message)),
            }
        }
        let handlers = Handlers {
            on_track: Box::new(move |track_id: String, track: MediaStreamTrack| {
                mark("classroom:track");
                // One media stream per received track, by the track's id in the API: a
                // publisher's camera, microphone and screen each go to their own element.
                let tracks_now = js_sys::Array::new();
                tracks_now.push(&track);
                if let Ok(stream) = MediaStream::new_with_tracks(&tracks_now) {
                    streams.update(|m| {
                        m.insert(track_id, stream);
                    });
                }
            }),
            on_state: Box::new(move |state: String| match state.as_str() {
                "connected" if phase.get_untracked().in_room() => {
                    mark("classroom:connected");
                    phase.set(Phase::Live);
                }
                "failed" => {
                    if matches!(phase.get_untracked(), Phase::Live | Phase::Reconnecting(_)) {
                        phase.set(Phase::Reconnecting("Media connection lost. Reconnecting…"));
                        leptos::task::spawn_local(async move {
                            if let Some(c) = call.get_value() {
                                let servers = ice_servers.get_value();
                                let stream = local.get_untracked();
                                let shared = screen.get_untracked();
                                if let Err(e) =
                                    c.restart(&servers, stream.as_ref(), shared.as_ref()).await
                                {
                                    phase.set(Phase::Failed(format!("Could not reconnect: {e}")));
                                }
                            }
                        });
                    }
                }
                _ => {}
            }),
        };
        let stream = local.get_untracked();
        match Call::start(
            &session_id,
            &ice_servers.get_value(),
            stream.as_ref(),
            handlers,
        )
        .await
        {
            Ok(c) => {
                mark("classroom:answered");
                if !phase.get_untracked().in_room() {
                    // Left or ended while connecting.
                    c.close();
                    return;
                }
                call.set_value(Some(c));
                for sdp in pending_offers
                    .try_update_value(std::mem::take)
                    .unwrap_or_default()
                {
                    apply_offer(sdp);
                }
            }
            Err(e) => phase.set(Phase::Failed(e)),
        }
    });

    // Quality per remote video track, every 2 s: (level, details for the tooltip).
    let quality = RwSignal::new(HashMap::<String, (&'static str, String, &'static str)>::new());
    let last_bytes =
        std::rc::Rc::new(std::cell::RefCell::new(HashMap::<String, (f64, f64)>::new()));
    let poll = Closure::<dyn Fn()>::new(move || {
        let Some(c) = call.get_value() else { return };
        let mut ids: Vec<String> = streams
            .get_untracked()
            .values()
            .flat_map(|s| {
                s.get_video_tracks()
                    .iter()
                    .map(|t| t.unchecked_into::<MediaStreamTrack>().id())
                    .collect::<Vec<_>>()
            })
            .collect();
        ids.sort();
        ids.dedup();
        let last_bytes = std::rc::Rc::clone(&last_bytes);
        leptos::task::spawn_local(async move {
            for id in ids {
                if let Some(stats) = c.inbound_stats(&id).await {
                    let crate::call::InboundStats {
                        lost,
                        received,
                        bytes,
                        rtt_s: rtt,
                        at_ms: at,
                        frame_height,
                    } = stats;
                    // The bitrate between two samples of the browser's own clock.
                    let previous = last_bytes.borrow_mut().insert(id.clone(), (bytes, at));
                    let Some((before, then)) = previous.filter(|(_, t)| at > *t) else {
                        continue;
                    };
                    let kbps = (bytes - before).max(0.0) * 8.0 / (at - then);
                    let loss = if lost + received > 0.0 {
                        100.0 * lost / (lost + received)
                    } else {
                        0.0
                    };
                    let rtt_ms = rtt * 1000.0;
                    let level = quality_level(loss, rtt_ms);
                    let received_as = received_picture(frame_height);
                    let text = format!(
                        "Receiving {received_as} · connection {level}: {kbps:.0} kbit/s · {loss:.1} % loss · {rtt_ms:.0} ms round trip"
                    );
                    quality.update(|q| {
                        q.insert(id, (level, text, received_as));
                    });
                }
            }
        });
    });
    let interval = web_sys::window().and_then(|w| {
        w.set_interval_with_callback_and_timeout_and_arguments_0(
            poll.as_ref().unchecked_ref(),
            2000,
        )
        .ok()
    });
    poll.forget();

    let leave = move |_| {
        phase.set(Phase::Left);
        hang_up();
        leptos::task::spawn_local(async move {
            let _ = api::graphql(
                "mutation($s: ID!) { leaveSession(sessionId: $s) }",
                serde_json::json!({ "s": sid.get_value() }),
            )
            .await;
        });
    };
    let end_session = move |_| {
        confirm_end.set(false);
        leptos::task::spawn_local(async move {
            // Everyone, this page included, is told by `SessionEnded`.
            if let Err(e) = api::graphql(
                "mutation($id: ID!) { endSession(id: $id) { id } }",
                serde_json::json!({ "id": sid.get_value() }),
            )
            .await
            {
                notice.set(Some(e.message));
            }
        });
    };
    let copy_link = move |_| {
        let Some(w) = web_sys::window() else { return };
        let link = format!(
            "{}/live/{}",
            w.location().origin().unwrap_or_default(),
            sid.get_value()
        );
        let clipboard = w.navigator().clipboard();
        leptos::task::spawn_local(async move {
            match JsFuture::from(clipboard.write_text(&link)).await {
                Ok(_) => copied.set(true),
                Err(_) => notice.set(Some(format!("Share this link: {link}"))),
            }
        });
    };
    let enable_sound = move |_| {
        // A click: the browser now lets every remote sound start.
        sound_blocked.set(false);
        let Some(doc) = web_sys::window().and_then(|w| w.document()) else {
            return;
        };
        if let Ok(list) = doc.query_selector_all("audio[data-remote]") {
            for i in 0..list.length() {
                if let Some(el) = list
                    .item(i)
                    .and_then(|n| n.dyn_into::<HtmlMediaElement>().ok())
                {
                    play(el, Some(sound_blocked));
                }
            }
        }
    };
    on_cleanup(move || {
        if let (Some(w), Some(i)) = (web_sys::window(), interval) {
            w.clear_interval_with_handle(i);
        }
        hang_up();
    });

    // My own published track of a kind, from the server's events.
    let my_track = move |video: bool| {
        let pid = me.get_untracked()?.0;
        tracks
            .get_untracked()
            .into_iter()
            .find(|t| t.participant_id == pid && t.video == video && !t.is_screen())
            .map(|t| t.id)
    };
    let toggle = move |video: bool| {
        let off = if video { cam_off } else { mic_off };
        let now_off = !off.get_untracked();
        off.set(now_off);
        if let Some(stream) = local.get_untracked() {
            let list = if video {
                stream.get_video_tracks()
            } else {
                stream.get_audio_tracks()
            };
            for t in list.iter() {
                t.unchecked_into::<MediaStreamTrack>().set_enabled(!now_off);
            }
        }
        if let Some(track_id) = my_track(video) {
            leptos::task::spawn_local(async move {
                let _ = api::graphql(
                    "mutation($s: ID!, $t: ID!, $m: Boolean!) { setTrackMuted(sessionId: $s, trackId: $t, muted: $m) }",
                    serde_json::json!({ "s": sid.get_value(), "t": track_id, "m": now_off }),
                )
                .await;
            });
        }
    };
    // A kind of mine muted by the host: off here too, and not to be turned on until allowed.
    let locked_by_host = move |video: bool| {
        let pid = me.get().map(|m| m.0).unwrap_or_default();
        moderation.with(|m| m.host_muted(&pid, video))
    };
    Effect::new(move |_| {
        for video in [false, true] {
            let off = if video { cam_off } else { mic_off };
            if locked_by_host(video) && !off.get_untracked() {
                off.set(true);
                if let Some(stream) = local.get_untracked() {
                    let list = if video {
                        stream.get_video_tracks()
                    } else {
                        stream.get_audio_tracks()
                    };
                    for t in list.iter() {
                        t.unchecked_into::<MediaStreamTrack>().set_enabled(false);
                    }
                }
            }
        }
    });
    // Invited on stage and accepted: camera and microphone on, and a connection that sends.
    let accept_stage = Callback::new(move |_: ()| {
        leptos::task::spawn_local(async move {
            match call::local_media(None, None).await {
                Ok(stream) => {
                    cam_off.set(false);
                    mic_off.set(false);
                    local.set(Some(stream.clone()));
                    devices.set(call::devices().await);
                    // The new connection's consumers start from the server's default layer:
                    // every tile asks again for the layer its size needs.
                    requested_layers.update_value(HashMap::clear);
                    if let Some(c) = call.get_value()
                        && let Err(e) = c
                            .restart(&ice_servers.get_value(), Some(&stream), None)
                            .await
                    {
                        notice.set(Some(format!("Could not join the stage: {e}")));
                    }
                }
                Err(message) => notice.set(Some(message)),
            }
        });
    });
    let members = Signal::derive(move || {
        people
            .get()
            .into_iter()
            .map(|p| Member {
                id: p.id,
                user_id: p.user_id,
                name: p.name,
                role: p.role,
            })
            .collect::<Vec<_>>()
    });
    let switch_device = move |kind: &'static str, device: String| {
        leptos::task::spawn_local(async move {
            let (cam, mic) = if kind == "videoinput" {
                (Some(device), None)
            } else {
                (None, Some(device))
            };
            match call::local_media(cam, mic).await {
                Ok(fresh) => {
                    let list = if kind == "videoinput" {
                        fresh.get_video_tracks()
                    } else {
                        fresh.get_audio_tracks()
                    };
                    if let (Some(track), Some(current)) = (
                        list.get(0).dyn_into::<MediaStreamTrack>().ok(),
                        local.get_untracked(),
                    ) {
                        let off = if kind == "videoinput" {
                            cam_off
                        } else {
                            mic_off
                        };
                        track.set_enabled(!off.get_untracked());
                        if let Some(c) = call.get_value() {
                            c.replace_track(&track);
                        }
                        let old = if kind == "videoinput" {
                            current.get_video_tracks()
                        } else {
                            current.get_audio_tracks()
                        };
                        for t in old.iter() {
                            let t: MediaStreamTrack = t.unchecked_into();
                            current.remove_track(&t);
                            t.stop();
                        }
                        current.add_track(&track);
                        local.set(Some(current));
                    }
                }
                Err(e) => notice.set(Some(e)),
            }
        });
    };
    let device_options = move |kind: &'static str| {
        devices
            .get()
            .into_iter()
            .filter(|d| d.0 == kind && d.1 != "default" && d.1 != "communications")
            .enumerate()
            .map(|(i, (_, id, raw))| {
                let label = device_label(&raw, kind, i);
                view! { <option value=id title=raw>{label}</option> }
            })
            .collect_view()
    };

    // Who is on stage: hosts, co-hosts and speakers, and anyone publishing video.
    let stage = move || {
        let t = tracks.get();
        let mut list: Vec<Person> = people
            .get()
            .into_iter()
            .filter(|p| {
                can_publish(&p.role) || t.iter().any(|x| x.participant_id == p.id && x.video)
            })
            .collect();
        list.sort_by_key(|p| (p.role != "HOST", p.name.clone()));
        list
    };
    let viewers = move || {
        people
            .get()
            .into_iter()
            .filter(|p| !can_publish(&p.role))
            .count()
    };
    // Shared screens on the stage: (the screen's video track, its sharer's name).
    let screens = move || {
        let list = people.get();
        tracks
            .get()
            .into_iter()
            .filter(|t| t.video && t.source == "SCREEN")
            .filter_map(|t| {
                let name = list.iter().find(|p| p.id == t.participant_id)?.name.clone();
                Some((t, name))
            })
            .collect::<Vec<_>>()
    };
    let tile_keys = move || {
        let mut keys: Vec<TileKey> = stage().into_iter().map(|p| TileKey::Person(p.id)).collect();
        keys.extend(screens().into_iter().map(|(t, _)| TileKey::Screen(t.id)));
        keys
    };
    let layout_now = Memo::new(move |_| {
        layout::effective(layout_choice.get(), screens().len(), pinned.get().is_some())
    });
    let main_tile = Memo::new(move |_| {
        layout::main_tile(
            layout_now.get(),
            &tile_keys(),
            pinned.get().as_ref(),
            speaker.get().as_deref(),
        )
    });
    // Pinning shows the tile large: speaker view, even over a grid picked before.
    let toggle_pin = move |key: TileKey| {
        if layout_choice.get_untracked() == Some(Layout::Grid) {
            layout_choice.set(None);
        }
        pinned.update(|p| {
            *p = if p.as_ref() == Some(&key) {
                None
            } else {
                Some(key)
            }
        });
    };
    // The screen being picked and announced (a second click meanwhile does nothing).
    let share_busy = RwSignal::new(false);
    // Stops sharing `stream`: the connection stops sending it, the capture ends.
    let stop_share = move |stream: MediaStream| {
        if screen
            .get_untracked()
            .is_some_and(|s| s.id() == stream.id())
        {
            screen.set(None);
        }
        for t in stream.get_tracks().iter() {
            t.unchecked_into::<MediaStreamTrack>().stop();
        }
        if let Some(c) = call.get_value() {
            leptos::task::spawn_local(async move {
                if let Err(e) = c.stop_screen(&stream).await {
                    notice.set(Some(format!("Could not stop sharing: {e}")));
                }
            });
        }
    };
    // Picks a screen, announces it, and sends it.
    let start_share = move || async move {
        let stream = match call::display_media().await {
            Ok(stream) => stream,
            Err(message) => {
                notice.set(Some(message));
                return;
            }
        };
        let ids: Vec<String> = stream
            .get_tracks()
            .iter()
            .map(|t| t.unchecked_into::<MediaStreamTrack>().id())
            .collect();
        // Announced first, so everyone's app shows it as a screen from its first packet.
        if let Err(e) = api::graphql(
            SHARE_SCREEN,
            serde_json::json!({ "s": sid.get_value(), "t": ids }),
        )
        .await
        {
            notice.set(Some(e.message));
            for t in stream.get_tracks().iter() {
                t.unchecked_into::<MediaStreamTrack>().stop();
            }
            return;
        }
        // The browser's own "Stop sharing" ends the capture: stop sending it too.
        if let Ok(video) = stream
            .get_video_tracks()
            .get(0)
            .dyn_into::<MediaStreamTrack>()
        {
            let ended = stream.clone();
            let on_ended = Closure::once_into_js(move || stop_share(ended));
            let _ = video.add_event_listener_with_callback("ended", on_ended.unchecked_ref());
        }
        screen.set(Some(stream.clone()));
        if let Some(c) = call.get_value()
            && let Err(e) = c.share_screen(&stream).await
        {
            notice.set(Some(format!("Could not share the screen: {e}")));
            stop_share(stream);
        }
    };
    let share = move |_| {
        if let Some(stream) = screen.get_untracked() {
            stop_share(stream);
            return;
        }
        // One share at a time: the picker may take a while, and clicks meanwhile do nothing.
        if share_busy.get_untracked() {
            return;
        }
        share_busy.set(true);
        leptos::task::spawn_local(async move {
            start_share().await;
            share_busy.set(false);
        });
    };
    let is_host = move || me.get().is_some_and(|(_, r)| r == "HOST");
    // The session is being recorded (everyone sees it; the host starts and stops it).
    let recording = move || moderation.with(|m| m.recording.is_some());
    // A start or stop asked and not answered yet (clicks meanwhile do nothing).
    let record_busy = RwSignal::new(false);
    let toggle_recording = move |_| {
        if record_busy.get_untracked() {
            return;
        }
        record_busy.set(true);
        let stop = moderation.with_untracked(|m| m.recording.is_some());
        let (doc, field) = if stop {
            (STOP_RECORDING, "stopRecording")
        } else {
            (START_RECORDING, "startRecording")
        };
        leptos::task::spawn_local(async move {
            // Everyone, this page included, is told by `RecordingChanged`; the answer says the
            // same to this page at once.
            match api::graphql(doc, serde_json::json!({ "s": sid.get_value() })).await {
                Ok(d) => moderation.update(|m| m.recording_changed(&d[field])),
                Err(e) => notice.set(Some(e.message)),
            }
            record_busy.set(false);
        });
    };
    let class_href = move || {
        class_id
            .get()
            .map(|c| format!("/classes/{c}"))
            .unwrap_or_else(|| "/classes".to_owned())
    };
    let back_link = move || {
        view! { <A href=class_href attr:class="button secondary" attr:data-testid="back-to-class">"Back to the class"</A> }
    };
    let sign_in_href = format!("/signin?next=/live/{session_id}");
    let sign_up_href = format!("/signin?next=/live/{session_id}&mode=signup");

    view! {
        <section class="classroom" class:compact=move || compact.get()>
            <div class="room-head">
                <div>
                    <h1 data-testid="room-title">{move || title.get()}</h1>
                    <Show when=move || phase.get().in_room()>
                        <p class="muted" data-testid="room-counts">
                            {move || format!("{} on stage · {} watching", stage().len(), viewers())}
                        </p>
                    </Show>
                </div>
                <div class="room-badges">
                <Show when=move || phase.get().in_room() && recording()>
                    <span class="rec-indicator" data-testid="recording-indicator" role="status"
                        title="This session is being recorded">"● REC"</span>
                </Show>
                <div class="room-state" data-testid="room-state" data-phase=move || phase.get().name()>
                    {move || match phase.get() {
                        Phase::Joining => view! { <span class="badge warn">"Joining…"</span> }.into_any(),
                        Phase::Live => view! { <span class="badge good">"● Live"</span> }.into_any(),
                        Phase::Reconnecting(m) => view! { <span class="badge warn">{m}</span> }.into_any(),
                        Phase::NotStarted(_) => view! { <span class="badge warn">"Not started yet"</span> }.into_any(),
                        Phase::Ended => view! { <span class="badge">"Ended"</span> }.into_any(),
                        Phase::Removed(_) => view! { <span class="badge bad">"Removed"</span> }.into_any(),
                        Phase::Failed(_) => view! { <span class="badge bad">"Cannot join"</span> }.into_any(),
                        Phase::Left => view! { <span class="badge">"You left"</span> }.into_any(),
                        Phase::SignedOut => view! { <span class="badge">"Signed out"</span> }.into_any(),
                    }}
                </div>
                </div>
            </div>
            <Show when=move || notice.get().is_some()>
                <p class="notice" role="alert" data-testid="notice">{move || notice.get().unwrap_or_default()}</p>
            </Show>
            {move || {
                let sign_in_href = sign_in_href.clone();
                let sign_up_href = sign_up_href.clone();
                match phase.get() {
                    Phase::SignedOut => view! {
                        <div class="card room-card" data-testid="room-message">
                            <h2>"Sign in to join this live class"</h2>
                            <p class="muted">"You need an account to watch, ask questions and chat. You will come straight back here."</p>
                            <div class="actions">
                                <a class="button" href=sign_in_href data-testid="room-sign-in">"Sign in"</a>
                                <a class="button secondary" href=sign_up_href data-testid="room-sign-up">"Create an account"</a>
                            </div>
                        </div>
                    }.into_any(),
                    Phase::NotStarted(start) => view! {
                        <div class="card room-card" data-testid="room-message">
                            <h2>"This class has not started yet"</h2>
                            <p class="muted">{format!("It is scheduled for {}. Keep this page open: it joins by itself when the host goes live.", local_time(&start))}</p>
                            {back_link()}
                        </div>
                    }.into_any(),
                    Phase::Ended => view! {
                        <div class="card room-card" data-testid="room-message">
                            <h2>"This session has ended"</h2>
                            <p class="muted">"Thanks for joining. The class page lists its other sessions."</p>
                            {back_link()}
                        </div>
                    }.into_any(),
                    Phase::Left => view! {
                        <div class="card room-card" data-testid="room-message">
                            <h2>"You left the class"</h2>
                            <p class="muted">"The class goes on without you. You can come back while it is live."</p>
                            <div class="actions">
                                <button class="button" data-testid="rejoin" on:click=move |_| rejoin.run(())>"Rejoin"</button>
                                {back_link()}
                            </div>
                        </div>
                    }.into_any(),
                    Phase::Removed(reason) => view! {
                        <div class="card room-card" data-testid="room-message">
                            <h2>"You were removed from this session"</h2>
                            <p class="muted">{reason}</p>
                            {back_link()}
                        </div>
                    }.into_any(),
                    Phase::Failed(message) => view! {
                        <div class="card room-card" data-testid="room-message">
                            <h2>"You cannot join this class"</h2>
                            <p class="muted">{message}</p>
                            {back_link()}
                        </div>
                    }.into_any(),
                    Phase::Joining | Phase::Live | Phase::Reconnecting(_) => ().into_any(),
                }
            }}
            <Show when=move || phase.get().in_room()>
            <Show when=move || sound_blocked.get()>
                <div class="sound-prompt" role="alert">
                    <span>"Sound is off: your browser waits for a click before playing it."</span>
                    <button class="button" data-testid="enable-sound" on:click=enable_sound>"Turn on sound"</button>
                </div>
            </Show>
            <Show when=move || phase.get() == Phase::Live && stage().is_empty()>
                <div class="card stage-empty" data-testid="stage-empty">
                    {move || if host_away.get() {
                        "The host has left for a moment. Stay here: the class continues when they are back."
                    } else {
                        "Nobody is on stage yet. The class appears here when the host turns on their camera."
                    }}
                </div>
            </Show>
            <div class="room-body">
            <div class="room-main">
            <div class="stage" data-testid="stage" data-layout=move || layout_now.get().name()
                class:speaker-view=move || layout_now.get() == Layout::Speaker>
                <For each=stage key=|p| (p.id.clone(), p.role.clone()) let:person>
                    {
                        let pid = person.id.clone();
                        let pid_s = StoredValue::new(pid.clone());
                        let is_me = move || me.get().is_some_and(|(m, _)| pid_s.with_value(|p| *p == m));
                        let track_of = move |video: bool| {
                            let p = pid_s.get_value();
                            tracks.get().into_iter().find(|t| t.participant_id == p && t.video == video && !t.is_screen())
                        };
                        let video_track = move || track_of(true);
                        let audio_track = move || track_of(false);
                        let video_ref = NodeRef::<html::Video>::new();
                        let audio_ref = NodeRef::<html::Audio>::new();
                        let tile_ref = NodeRef::<html::Figure>::new();
                        let volume = RwSignal::new(1.0f64);
                        // The picture: my camera, or the stream the SFU sends. Always muted, so
                        // the browser lets it play without a click.
                        Effect::new(move |_| {
                            let Some(el) = video_ref.get() else { return };
                            let stream = if is_me() {
                                local.get()
                            } else {
                                video_track().and_then(|t| streams.get().get(&t.id).cloned())
                            };
                            let current = el.src_object();
                            if current.as_ref().map(|s| s.id()) != stream.as_ref().map(|s| s.id()) {
                                el.set_src_object(stream.as_ref());
                                if stream.is_some() {
                                    play(el.clone().into(), None);
                                }
                                if !is_me() && stream.is_some() {
                                    // When the first remote picture shows, since the page opened
                                    // (`playing` does not bubble, so it is listened to here).
                                    let first = Closure::once_into_js(|| {
                                        mark("classroom:first-frame");
                                        if let Some(w) = web_sys::window()
                                            && js_sys::Reflect::get(&w, &"__classroomFirstFrame".into())
                                                .is_ok_and(|v| v.is_undefined())
                                            && let Some(p) = w.performance()
                                        {
                                            let _ = js_sys::Reflect::set(
                                                &w,
                                                &"__classroomFirstFrame".into(),
                                                &p.now().into(),
                                            );
                                        }
                                    });
                                    let _ = el.add_event_listener_with_callback(
                                        "playing",
                                        first.unchecked_ref(),
                                    );
                                }
                            }
                        });
                        // The sound of someone else, from its own element; a refusal to start it
                        // without a click shows *Turn on sound*.
                        Effect::new(move |_| {
                            let Some(el) = audio_ref.get() else { return };
                            let stream = audio_track().and_then(|t| streams.get().get(&t.id).cloned());
                            show(el.into(), stream, Some(sound_blocked));
                        });
                        Effect::new(move |_| {
                            let v = volume.get();
                            if let Some(el) = audio_ref.get() {
                                el.set_volume(v);
                            }
                        });
                        // The tile's width as laid out, from a ResizeObserver (it reports the
                        // size once laid out, then on every change: small tiles, window size).
                        let width = RwSignal::new(0.0f64);
                        // The layer this tile asked the server for.
                        let asked = RwSignal::new(None::<&'static str>);
                        let observer = StoredValue::new_local(None::<web_sys::ResizeObserver>);
                        Effect::new(move |_| {
                            let Some(el) = video_ref.get() else { return };
                            let on_resize = Closure::<dyn FnMut(js_sys::Array)>::new(move |entries: js_sys::Array| {
                                if let Ok(entry) = entries.get(0).dyn_into::<web_sys::ResizeObserverEntry>() {
                                    width.set(entry.content_rect().width());
                                }
                            });
                            if let Ok(o) = web_sys::ResizeObserver::new(on_resize.as_ref().unchecked_ref()) {
                                o.observe(&el);
                                if let Some(old) = observer.try_update_value(|v| v.replace(o)).flatten() {
                                    old.disconnect();
                                }
                            }
                            on_resize.forget();
                        });
                        on_cleanup(move || {
                            if let Some(o) = observer.try_update_value(Option::take).flatten() {
                                o.disconnect();
                            }
                        });
                        // Ask for the layer this tile's size needs.
                        Effect::new(move |_| {
                            let w = width.get();
                            let Some(track) = video_track() else { return };
                            if is_me() || w <= 0.0 { return; }
                            // Only once the track arrives: the server has its consumer then (a
                            // preference sent earlier would find none).
                            if !streams.with(|m| m.contains_key(&track.id)) { return; }
                            let layer = layer_for_width(w);
                            asked.set(Some(layer));
                            let previous = requested_layers.try_update_value(|m| m.insert(track.id.clone(), layer)).flatten();
                            if previous != Some(layer) {
                                leptos::task::spawn_local(async move {
                                    let done = api::graphql(
                                        "mutation($s: ID!, $t: ID!, $l: VideoLayer) { setPreferredLayer(sessionId: $s, trackId: $t, layer: $l) }",
                                        serde_json::json!({ "s": sid.get_value(), "t": track.id, "l": layer }),
                                    ).await;
                                    if !matches!(done, Ok(ref d) if d["setPreferredLayer"] == true) {
                                        // Asked again at the next change.
                                        requested_layers.update_value(|m| { m.remove(&track.id); });
                                    }
                                });
                            }
                        });
                        let initials = initials(&person.name);
                        let cam_muted = move || video_track().is_some_and(|t| t.muted) || (is_me() && cam_off.get());
                        let mic_muted = move || {
                            if is_me() {
                                local.get().is_some() && mic_off.get()
                            } else {
                                audio_track().is_some_and(|t| t.muted)
                            }
                        };
                        let has_video = move || is_me() && local.get().is_some() || video_track().is_some();
                        let quality_of = move || {
                            let t = video_track()?;
                            let stream = streams.get().get(&t.id).cloned()?;
                            let id = stream.get_video_tracks().get(0).dyn_into::<MediaStreamTrack>().ok()?.id();
                            quality.get().get(&id).cloned()
                        };
                        let fullscreen = move |_| {
                            if let Some(el) = tile_ref.get() {
                                let _ = el.request_fullscreen();
                            }
                        };
                        view! {
                            <figure class="tile" node_ref=tile_ref
                                class:main=move || main_tile.get() == Some(TileKey::Person(pid_s.get_value()))
                                class:speaking=move || speaker.get().is_some_and(|s| pid_s.with_value(|p| *p == s))
                                class:self=is_me
                                data-testid="tile" data-participant=pid.clone()
                                data-muted=move || cam_muted().to_string()
                                data-mic-muted=move || mic_muted().to_string()
                                data-width=move || width.get().to_string()
                                data-layer=move || asked.get().unwrap_or_default()
                                data-track=move || video_track().map(|t| t.id).unwrap_or_default()>
                                <video node_ref=video_ref autoplay=true playsinline=true prop:muted=true
                                    class:hidden=move || cam_muted() || !has_video()></video>
                                <Show when=move || !is_me()>
                                    <audio node_ref=audio_ref autoplay=true data-remote="true"></audio>
                                </Show>
                                <Show when=move || cam_muted() || !has_video()>
                                    <div class="placeholder" aria-hidden="true">{initials.clone()}</div>
                                </Show>
                                <div class="tile-tools">
                                    <Show when=move || !is_me() && audio_track().is_some()>
                                        <input type="range" min="0" max="1" step="0.05" aria-label="Volume" title="Volume"
                                            data-testid="volume"
                                            prop:value=move || volume.get().to_string()
                                            on:input=move |ev| volume.set(event_target_value(&ev).parse().unwrap_or(1.0))/>
                                    </Show>
                                    <button class="icon-button" data-testid="pin"
                                        title=move || if pinned.get() == Some(TileKey::Person(pid_s.get_value())) { "Unpin" } else { "Pin: keep large" }
                                        aria-pressed=move || (pinned.get() == Some(TileKey::Person(pid_s.get_value()))).to_string()
                                        on:click=move |_| toggle_pin(TileKey::Person(pid_s.get_value()))>
                                        {move || if pinned.get() == Some(TileKey::Person(pid_s.get_value())) { "Unpin" } else { "Pin" }}
                                    </button>
                                    <button class="icon-button" title="Full screen" aria-label="Full screen"
                                        data-testid="fullscreen" on:click=fullscreen>
                                        <svg viewBox="0 0 16 16" width="14" height="14" aria-hidden="true" fill="none" stroke="currentColor" stroke-width="2">
                                            <path d="M1 5V1h4M11 1h4v4M15 11v4h-4M5 15H1v-4"/>
                                        </svg>
                                    </button>
                                </div>
                                <figcaption>
                                    <span class="name">{person.name.clone()}{move || if is_me() { " (you)" } else { "" }}</span>
                                    <span class="role-badge">{role_label(&person.role)}</span>
                                    <Show when=mic_muted>
                                        <span class="muted-flag" data-testid="mic-muted" title="Microphone off">"mic off"</span>
                                    </Show>
                                    <Show when=cam_muted>
                                        <span class="muted-flag" data-testid="muted-flag">"camera off"</span>
                                    </Show>
                                    <Show when=move || !is_me()>
                                        <span class="quality" data-testid="quality"
                                        data-level=move || quality_of().map(|q| q.0).unwrap_or("unknown")
                                        data-received=move || quality_of().map(|q| q.2).unwrap_or("")
                                        title=move || quality_of().map(|q| q.1).unwrap_or_else(|| "Measuring the connection…".into())>
                                        <span class="bar b1"></span><span class="bar b2"></span><span class="bar b3"></span>
                                    </span>
                                    </Show>
                                </figcaption>
                            </figure>
                        }
                    }
                </For>
                <For each=screens key=|(t, _)| t.id.clone() let:shared>
                    {
                        let (track, owner) = shared;
                        let key = TileKey::Screen(track.id.clone());
                        let mine = me.get_untracked().is_some_and(|(m, _)| m == track.participant_id);
                        view! {
                            <ScreenTile track=track owner=owner mine=mine streams=streams tracks=tracks
                                local_screen=screen sound_blocked=sound_blocked
                                main=Signal::derive({ let key = key.clone(); move || main_tile.get().as_ref() == Some(&key) })
                                pinned=Signal::derive({ let key = key.clone(); move || pinned.get().as_ref() == Some(&key) })
                                on_pin=Callback::new(move |_: ()| toggle_pin(key.clone()))/>
                        }
                    }
                </For>
            </div>
            <div class="toolbar">
                <Show when=move || local.get().is_some()>
                    <button class="button secondary" data-testid="toggle-camera" on:click=move |_| toggle(true)
                        aria-pressed=move || cam_off.get().to_string() disabled=move || locked_by_host(true)>
                        {move || if locked_by_host(true) { "Camera stopped by the host" } else if cam_off.get() { "Turn camera on" } else { "Turn camera off" }}
                    </button>
                    <button class="button secondary" data-testid="toggle-mic" on:click=move |_| toggle(false)
                        aria-pressed=move || mic_off.get().to_string() disabled=move || locked_by_host(false)>
                        {move || if locked_by_host(false) { "Muted by the host" } else if mic_off.get() { "Unmute microphone" } else { "Mute microphone" }}
                    </button>
                    <label class="device">"Camera"
                        <select aria-label="Camera" on:change=move |ev| switch_device("videoinput", event_target_value(&ev))>
                            {move || device_options("videoinput")}
                        </select>
                    </label>
                    <label class="device">"Microphone"
                        <select aria-label="Microphone" on:change=move |ev| switch_device("audioinput", event_target_value(&ev))>
                            {move || device_options("audioinput")}
                        </select>
                    </label>
                </Show>
                <Show when=move || local.get().is_some()>
                    <button class="button secondary" data-testid="share-screen" on:click=share
                        aria-pressed=move || screen.get().is_some().to_string()>
                        {move || if screen.get().is_some() { "Stop sharing" } else { "Share screen" }}
                    </button>
                </Show>
                <button class="button secondary" data-testid="speaker-view"
                    on:click=move |_| {
                        let next = if layout_now.get_untracked() == Layout::Speaker { Layout::Grid } else { Layout::Speaker };
                        if next == Layout::Grid { pinned.set(None); }
                        layout_choice.set(Some(next));
                    }>
                    {move || if layout_now.get() == Layout::Speaker { "Grid view" } else { "Speaker view" }}
                </button>
                <button class="button secondary" data-testid="toggle-layout" on:click=move |_| compact.update(|c| *c = !*c)>
                    {move || if compact.get() { "Large tiles" } else { "Small tiles" }}
                </button>
                <Show when=is_host>
                    <button class="button secondary" data-testid="copy-link" on:click=copy_link>
                        {move || if copied.get() { "Link copied" } else { "Copy join link" }}
                    </button>
                    <button class="button secondary record-button" data-testid="record" on:click=toggle_recording
                        class:recording=recording aria-pressed=move || recording().to_string()
                        disabled=move || record_busy.get()>
                        {move || if recording() { "Stop recording" } else { "Record" }}
                    </button>
                </Show>
                <button class="button danger" data-testid="leave" on:click=leave>"Leave"</button>
                <Show when=is_host>
                    <Show when=move || confirm_end.get()
                        fallback=move || view! {
                            <button class="button danger" data-testid="end-session" on:click=move |_| confirm_end.set(true)>"End session"</button>
                        }>
                        <span class="confirm">"End the session for everyone?"
                            <button class="button danger" data-testid="confirm-end" on:click=end_session>"End now"</button>
                            <button class="button secondary" on:click=move |_| confirm_end.set(false)>"Cancel"</button>
                        </span>
                    </Show>
                </Show>
            </div>
            </div>
            <div class="room-side">
                <PeoplePanel session_id=sid.get_value() me=me members=members moderation=moderation
                    class_id=class_id notice=notice on_accept_stage=accept_stage/>
                <Show when=move || me.get().is_some()>
                    <SidePanel session_id=sid.get_value() state=talk
                        role=Signal::derive(move || me.get().map(|(_, r)| r).unwrap_or_default())/>
                </Show>
            </div>
            </div>
            </Show>
        </section>
    }
}

fn initials(name: &str) -> String {
    name.split_whitespace()
        .filter_map(|w| w.chars().next())
        .take(2)
        .collect::<String>()
        .to_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_read_as_people_say_them() {
        assert_eq!(
            device_label("Default - Built-in Audio Analog Stereo", "audioinput", 0),
            "Built-in Audio Analog Stereo"
        );
        assert_eq!(
            device_label("HD Pro Webcam C920 (046d:082d)", "videoinput", 0),
            "HD Pro Webcam C920"
        );
        assert_eq!(
            device_label("fake_device_0", "videoinput", 0),
            "Fake device 0"
        );
        assert_eq!(device_label("", "audioinput", 1), "Microphone 2");
        // A parenthesis that is not a USB id stays.
        assert_eq!(device_label("Mic (front)", "audioinput", 0), "Mic (front)");
    }

    #[test]
    fn a_received_picture_is_named_by_its_height() {
        assert_eq!(received_picture(0.0), "no picture yet");
        assert_eq!(received_picture(180.0), "180p");
        assert_eq!(received_picture(360.0), "360p");
        assert_eq!(received_picture(720.0), "720p");
        assert_eq!(received_picture(1080.0), "1080p");
    }

    #[test]
    fn quality_comes_from_loss_and_round_trip() {
        assert_eq!(quality_level(0.0, 1.0), "good");
        assert_eq!(quality_level(4.0, 20.0), "fair");
        assert_eq!(quality_level(0.0, 300.0), "fair");
        assert_eq!(quality_level(12.0, 20.0), "poor");
    }
}

/// A shared screen on the stage: its picture (large in speaker view), its sound if shared, whose
/// it is, and a pin. The sharer sees their own capture.
#[component]
#[allow(clippy::too_many_arguments)]
fn ScreenTile(
    track: Track,
    owner: String,
    mine: bool,
    streams: RwSignal<HashMap<String, MediaStream>>,
    tracks: RwSignal<Vec<Track>>,
    local_screen: RwSignal<Option<MediaStream>>,
    sound_blocked: RwSignal<bool>,
    main: Signal<bool>,
    pinned: Signal<bool>,
    on_pin: Callback<()>,
) -> impl IntoView {
    let video_ref = NodeRef::<html::Video>::new();
    let audio_ref = NodeRef::<html::Audio>::new();
    let tile_ref = NodeRef::<html::Figure>::new();
    let id = track.id.clone();
    let owner_id = track.participant_id.clone();
    let picture = {
        let id = id.clone();
        move || {
            if mine {
                local_screen.get()
            } else {
                streams.with(|m| m.get(&id).cloned())
            }
        }
    };
    // The screen's sound: a track of the same sharer marked SCREEN_AUDIO.
    let sound = move || {
        if mine {
            return None;
        }
        let t = tracks.with(|l| {
            l.iter()
                .find(|t| t.participant_id == owner_id && t.source == "SCREEN_AUDIO")
                .map(|t| t.id.clone())
        })?;
        streams.with(|m| m.get(&t).cloned())
    };
    Effect::new(move |_| {
        if let Some(el) = video_ref.get() {
            show(el.into(), picture(), None);
        }
    });
    Effect::new(move |_| {
        if let Some(el) = audio_ref.get() {
            show(el.into(), sound(), Some(sound_blocked));
        }
    });
    let fullscreen = move |_| {
        if let Some(el) = tile_ref.get() {
            let _ = el.request_fullscreen();
        }
    };
    let label = if mine {
        "Your screen".to_owned()
    } else {
        format!("{owner}'s screen")
    };
    view! {
        <figure class="tile screen" node_ref=tile_ref class:main=move || main.get()
            data-testid="screen-tile" data-track=id.clone() data-participant=track.participant_id.clone()>
            <video node_ref=video_ref autoplay=true playsinline=true prop:muted=true></video>
            <audio node_ref=audio_ref autoplay=true data-remote="true"></audio>
            <div class="tile-tools">
                <button class="icon-button" data-testid="pin"
                    title=move || if pinned.get() { "Unpin" } else { "Pin: keep large" }
                    aria-pressed=move || pinned.get().to_string()
                    on:click=move |_| on_pin.run(())>
                    {move || if pinned.get() { "Unpin" } else { "Pin" }}
                </button>
                <button class="icon-button" title="Full screen" aria-label="Full screen" on:click=fullscreen>
                    <svg viewBox="0 0 16 16" width="14" height="14" aria-hidden="true" fill="none" stroke="currentColor" stroke-width="2">
                        <path d="M1 5V1h4M11 1h4v4M15 11v4h-4M5 15H1v-4"/>
                    </svg>
                </button>
            </div>
            <figcaption>
                <span class="screen-flag" aria-hidden="true">"▣"</span>
                <span class="name">{label}</span>
            </figcaption>
        </figure>
    }
}
