//! `/live/:id`: the classroom. Joins the session, publishes camera and microphone (host, co-hosts
//! and speakers; with simulcast), shows everyone on stage in a grid with names, role badges, the
//! active speaker highlighted and each tile's connection quality, and keeps going through a
//! dropped websocket (it resubscribes) or a failed media connection (it reconnects; the server
//! keeps the participant's place for 30 s).

use std::collections::HashMap;

use leptos::html;
use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_params_map;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{MediaStream, MediaStreamTrack};

use crate::api;
use crate::call::{self, Call, Handlers};
use crate::pages::classes::role_label;
use crate::ws::{Subscription, WsStatus};

const EVENTS: &str = "subscription($s: ID!) { sessionEvents(sessionId: $s) { __typename
  ... on ServerOffer { sdp }
  ... on ParticipantJoined { participant { id name role connected } }
  ... on ParticipantLeft { participantId }
  ... on ParticipantRoleChanged { participantId role }
  ... on TrackPublished { track { id streamId participantId kind muted } }
  ... on TrackUnpublished { trackId }
  ... on TrackMuted { trackId muted }
  ... on ActiveSpeakerChanged { participantId }
  ... on LayerChanged { trackId layer }
  ... on SessionEnded { sessionId }
  ... on RemovedFromSession { reason } } }";

#[derive(Clone, Debug, PartialEq)]
struct Person {
    id: String,
    name: String,
    role: String,
}

#[derive(Clone, Debug, PartialEq)]
struct Track {
    id: String,
    stream_id: String,
    participant_id: String,
    video: bool,
    muted: bool,
}

#[derive(Clone, Debug, PartialEq)]
enum Phase {
    Joining,
    Live,
    Reconnecting(&'static str),
    Ended,
    Removed(String),
    Failed(String),
    Left,
}

fn can_publish(role: &str) -> bool {
    matches!(role, "HOST" | "CO_HOST" | "SPEAKER")
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

#[component]
pub fn Classroom() -> impl IntoView {
    let params = use_params_map();
    let session_id = params.read_untracked().get("id").unwrap_or_default();

    let me = RwSignal::new(None::<(String, String)>); // (participant id, role)
    let title = RwSignal::new("Live class".to_owned());
    {
        let session_id = session_id.clone();
        leptos::task::spawn_local(async move {
            if let Ok(d) = api::graphql(
                "query($id: ID!) { session(id: $id) { class { title } } }",
                serde_json::json!({ "id": session_id }),
            )
            .await
                && let Some(t) = d["session"]["class"]["title"].as_str()
            {
                title.set(t.to_owned());
            }
        });
    }
    let people = RwSignal::new(Vec::<Person>::new());
    let tracks = RwSignal::new(Vec::<Track>::new());
    let streams = RwSignal::new(HashMap::<String, MediaStream>::new());
    let speaker = RwSignal::new(None::<String>);
    let phase = RwSignal::new(Phase::Joining);
    let notice = RwSignal::new(None::<String>);
    let local = RwSignal::new(None::<MediaStream>);
    let cam_off = RwSignal::new(false);
    let mic_off = RwSignal::new(false);
    let compact = RwSignal::new(false);
    let devices = RwSignal::new(Vec::<(String, String, String)>::new());
    let ice_servers = StoredValue::new(Vec::<String>::new());
    let call = StoredValue::new_local(None::<Call>);
    let pending_offers = StoredValue::new(Vec::<String>::new());
    let subscription = StoredValue::new_local(None::<Subscription>);
    let requested_layers = StoredValue::new(HashMap::<String, &'static str>::new());

    let apply_offer = move |sdp: String| match call.get_value() {
        Some(c) => leptos::task::spawn_local(async move {
            if let Err(e) = c.on_server_offer(sdp).await {
                notice.set(Some(format!("Media renegotiation failed: {e}")));
            }
        }),
        None => pending_offers.update_value(|p| p.push(sdp)),
    };

    let on_event = move |data: serde_json::Value| {
        let e = &data["sessionEvents"];
        let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
        match e["__typename"].as_str().unwrap_or_default() {
            "ServerOffer" => apply_offer(s(&e["sdp"])),
            "ParticipantJoined" => {
                let p = &e["participant"];
                let person = Person {
                    id: s(&p["id"]),
                    name: s(&p["name"]),
                    role: s(&p["role"]),
                };
                people.update(|list| {
                    list.retain(|x| x.id != person.id);
                    list.push(person);
                });
            }
            "ParticipantLeft" => {
                let id = s(&e["participantId"]);
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
            }
            "TrackPublished" => {
                let t = &e["track"];
                let track = Track {
                    id: s(&t["id"]),
                    stream_id: s(&t["streamId"]),
                    participant_id: s(&t["participantId"]),
                    video: t["kind"] == "VIDEO",
                    muted: t["muted"].as_bool().unwrap_or(false),
                };
                tracks.update(|list| {
                    list.retain(|x| x.id != track.id);
                    list.push(track);
                });
            }
            "TrackUnpublished" => {
                let id = s(&e["trackId"]);
                tracks.update(|list| list.retain(|t| t.id != id));
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
                if let Some(c) = call.get_value() {
                    c.close();
                }
            }
            "RemovedFromSession" => {
                phase.set(Phase::Removed(s(&e["reason"])));
                if let Some(c) = call.get_value() {
                    c.close();
                }
            }
            _ => {}
        }
    };

    // Join, get media, subscribe, connect.
    {
        let session_id = session_id.clone();
        leptos::task::spawn_local(async move {
            let joined = match api::graphql(
                "mutation($s: ID!) { joinSession(sessionId: $s) { participantId role iceServers { urls } } }",
                serde_json::json!({ "s": session_id }),
            )
            .await
            {
                Ok(d) => d["joinSession"].clone(),
                Err(e) => {
                    let message = match e.code.as_str() {
                        "UNAUTHENTICATED" => "Sign in to join this class.".to_owned(),
                        "CONFLICT" => format!("{} — it may not have started yet, or it has ended.", e.message),
                        _ => e.message,
                    };
                    phase.set(Phase::Failed(message));
                    return;
                }
            };
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
            if can_publish(&role) {
                match call::local_media(None, None).await {
                    Ok(stream) => {
                        local.set(Some(stream));
                        devices.set(call::devices().await);
                    }
                    Err(message) => notice.set(Some(message)),
                }
            }
            let sub = Subscription::start(
                EVENTS,
                serde_json::json!({ "s": session_id }),
                on_event,
                move |message| notice.set(Some(message)),
                move |status| match status {
                    WsStatus::Open => {
                        // A (re)subscription starts with a full picture: rebuild from it.
                        people.set(Vec::new());
                        tracks.set(Vec::new());
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
                    let _ =
                        js_sys::Reflect::set(&w, &"__classroomDropSocket".into(), drop_ws.as_ref());
                }
                drop_ws.forget();
            }
            subscription.set_value(Some(sub));
            let handlers = Handlers {
                on_track: Box::new(move |stream_id: String, track: MediaStreamTrack| {
                    // One media stream per publisher (its audio and video), rebuilt with each
                    // new track so that the tile's element picks it up.
                    let tracks_now = js_sys::Array::new();
                    if let Some(old) = streams.get_untracked().get(&stream_id) {
                        for t in old.get_tracks().iter() {
                            let t: MediaStreamTrack = t.unchecked_into();
                            if t.kind() != track.kind()
                                && t.ready_state() == web_sys::MediaStreamTrackState::Live
                            {
                                tracks_now.push(&t);
                            }
                        }
                    }
                    tracks_now.push(&track);
                    if let Ok(stream) = MediaStream::new_with_tracks(&tracks_now) {
                        streams.update(|m| {
                            m.insert(stream_id, stream);
                        });
                    }
                }),
                on_state: Box::new(move |state: String| match state.as_str() {
                    "connected"
                        if !matches!(
                            phase.get_untracked(),
                            Phase::Ended | Phase::Removed(_) | Phase::Left
                        ) =>
                    {
                        phase.set(Phase::Live);
                    }
                    "failed" => {
                        if matches!(phase.get_untracked(), Phase::Live | Phase::Reconnecting(_)) {
                            phase.set(Phase::Reconnecting("Media connection lost. Reconnecting…"));
                            leptos::task::spawn_local(async move {
                                if let Some(c) = call.get_value() {
                                    let servers = ice_servers.get_value();
                                    let stream = local.get_untracked();
                                    if let Err(e) = c.restart(&servers, stream.as_ref()).await {
                                        phase.set(Phase::Failed(format!(
                                            "Could not reconnect: {e}"
                                        )));
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
                    if let Some(w) = web_sys::window() {
                        let _ = js_sys::Reflect::set(&w, &"__classroomCall".into(), &JsValue::TRUE);
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
    }

    // Quality per remote video track, every 2 s: (loss %, kbit/s, rtt ms).
    let quality = RwSignal::new(HashMap::<String, String>::new());
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
                if let Some((lost, received, bytes, rtt, at)) = c.inbound_stats(&id).await {
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
                    let text = format!(
                        "{kbps:.0} kbit/s · {loss:.1} % loss · {:.0} ms",
                        rtt * 1000.0
                    );
                    quality.update(|q| {
                        q.insert(id, text);
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

    // Closes the media connection and the subscription, and releases camera and microphone.
    let hang_up = move || {
        if let Some(c) = call.get_value() {
            c.close();
        }
        if let Some(s) = subscription.get_value() {
            s.close();
        }
        if let Some(stream) = local.get_untracked() {
            for t in stream.get_tracks().iter() {
                t.unchecked_into::<MediaStreamTrack>().stop();
            }
        }
    };
    let session_for_leave = session_id.clone();
    let leave = move |_| {
        phase.set(Phase::Left);
        hang_up();
        let sid = session_for_leave.clone();
        leptos::task::spawn_local(async move {
            let _ = api::graphql(
                "mutation($s: ID!) { leaveSession(sessionId: $s) }",
                serde_json::json!({ "s": sid }),
            )
            .await;
        });
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
            .find(|t| t.participant_id == pid && t.video == video)
            .map(|t| t.id)
    };
    let session_for_mute = session_id.clone();
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
            let sid = session_for_mute.clone();
            leptos::task::spawn_local(async move {
                let _ = api::graphql(
                    "mutation($s: ID!, $t: ID!, $m: Boolean!) { setTrackMuted(sessionId: $s, trackId: $t, muted: $m) }",
                    serde_json::json!({ "s": sid, "t": track_id, "m": now_off }),
                )
                .await;
            });
        }
    };
    let toggle_cam = {
        let toggle = toggle.clone();
        move |_: leptos::ev::MouseEvent| toggle(true)
    };
    let toggle_mic = move |_: leptos::ev::MouseEvent| toggle(false);
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
    let session_for_layers = session_id.clone();

    view! {
        <section class="classroom" class:compact=move || compact.get()>
            <div class="room-head">
                <div>
                    <h1 data-testid="room-title">{move || title.get()}</h1>
                    <p class="muted" data-testid="room-counts">
                        {move || format!("{} on stage · {} watching", stage().len(), viewers())}
                    </p>
                </div>
                <div class="room-state" data-testid="room-state" data-phase=move || match phase.get() {
                    Phase::Joining => "joining", Phase::Live => "live", Phase::Reconnecting(_) => "reconnecting",
                    Phase::Ended => "ended", Phase::Removed(_) => "removed", Phase::Failed(_) => "failed", Phase::Left => "left",
                }>
                    {move || match phase.get() {
                        Phase::Joining => view! { <span class="badge warn">"Joining…"</span> }.into_any(),
                        Phase::Live => view! { <span class="badge good">"● Live"</span> }.into_any(),
                        Phase::Reconnecting(m) => view! { <span class="badge warn">{m}</span> }.into_any(),
                        Phase::Ended => view! { <span class="badge">"The session has ended."</span> }.into_any(),
                        Phase::Removed(r) => view! { <span class="badge bad">{format!("You were removed: {r}")}</span> }.into_any(),
                        Phase::Failed(m) => view! { <span class="badge bad">{m}</span> }.into_any(),
                        Phase::Left => view! { <span class="badge">"You left the class."</span> }.into_any(),
                    }}
                </div>
            </div>
            <Show when=move || notice.get().is_some()>
                <p class="notice" role="alert" data-testid="notice">{move || notice.get().unwrap_or_default()}</p>
            </Show>
            <Show when=move || matches!(phase.get(), Phase::Ended | Phase::Left | Phase::Failed(_) | Phase::Removed(_))>
                <p><A href="/classes">"Back to classes"</A></p>
            </Show>
            <div class="stage" data-testid="stage">
                <For each=stage key=|p| (p.id.clone(), p.role.clone()) let:person>
                    {
                        let pid = person.id.clone();
                        let pid_s = StoredValue::new(pid.clone());
                        let is_me = move || me.get().is_some_and(|(m, _)| pid_s.with_value(|p| *p == m));
                        let video_track = move || {
                            let p = pid_s.get_value();
                            tracks.get().into_iter().find(|t| t.participant_id == p && t.video)
                        };
                        let video_ref = NodeRef::<html::Video>::new();
                        let session_id = StoredValue::new(session_for_layers.clone());
                        // Attach the right stream: my camera, or the stream the SFU sends.
                        Effect::new(move |_| {
                            let Some(el) = video_ref.get() else { return };
                            let stream = if is_me() {
                                local.get()
                            } else {
                                video_track().and_then(|t| streams.get().get(&t.stream_id).cloned())
                            };
                            let current = el.src_object();
                            if current.as_ref().map(|s| s.id()) != stream.as_ref().map(|s| s.id()) {
                                el.set_src_object(stream.as_ref());
                                let _ = el.play();
                                if !is_me() && stream.is_some() {
                                    // When the first remote picture shows, since the page opened
                                    // (`playing` does not bubble, so it is listened to here).
                                    let first = Closure::once_into_js(|| {
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
                        // Ask for the layer this tile's size needs.
                        Effect::new(move |_| {
                            compact.get();
                            let Some(track) = video_track() else { return };
                            if is_me() { return; }
                            let Some(el) = video_ref.get() else { return };
                            let width = if compact.get() { 160.0 } else { f64::from(el.client_width().max(1)) };
                            let layer = layer_for_width(width);
                            let previous = requested_layers.try_update_value(|m| m.insert(track.id.clone(), layer)).flatten();
                            if previous != Some(layer) {
                                let sid = session_id.get_value();
                                leptos::task::spawn_local(async move {
                                    let _ = api::graphql(
                                        "mutation($s: ID!, $t: ID!, $l: VideoLayer) { setPreferredLayer(sessionId: $s, trackId: $t, layer: $l) }",
                                        serde_json::json!({ "s": sid, "t": track.id, "l": layer }),
                                    ).await;
                                });
                            }
                        });
                        let initials = initials(&person.name);
                        let muted = move || video_track().is_some_and(|t| t.muted) || (is_me() && cam_off.get());
                        let has_video = move || is_me() && local.get().is_some() || video_track().is_some();
                        let quality_text = move || {
                            let t = video_track()?;
                            let stream = streams.get().get(&t.stream_id).cloned()?;
                            let id = stream.get_video_tracks().get(0).dyn_into::<MediaStreamTrack>().ok()?.id();
                            quality.get().get(&id).cloned()
                        };
                        view! {
                            <figure class="tile"
                                class:speaking=move || speaker.get().is_some_and(|s| pid_s.with_value(|p| *p == s))
                                class:self=is_me
                                data-testid="tile" data-participant=pid.clone()
                                data-muted=move || muted().to_string()
                                data-track=move || video_track().map(|t| t.id).unwrap_or_default()>
                                <video node_ref=video_ref autoplay=true playsinline=true
                                    prop:muted=is_me

                                    class:hidden=move || muted() || !has_video()></video>
                                <Show when=move || muted() || !has_video()>
                                    <div class="placeholder" aria-hidden="true">{initials.clone()}</div>
                                </Show>
                                <figcaption>
                                    <span class="name">{person.name.clone()}{move || if is_me() { " (you)" } else { "" }}</span>
                                    <span class="role-badge">{role_label(&person.role)}</span>
                                    <Show when=muted>
                                        <span class="muted-flag" data-testid="muted-flag">"camera off"</span>
                                    </Show>
                                    <span class="quality" data-testid="quality">{move || quality_text().unwrap_or_default()}</span>
                                </figcaption>
                            </figure>
                        }
                    }
                </For>
            </div>
            <div class="toolbar">
                <Show when=move || local.get().is_some()>
                    <button class="button secondary" data-testid="toggle-camera" on:click=toggle_cam.clone()
                        aria-pressed=move || cam_off.get().to_string()>
                        {move || if cam_off.get() { "Turn camera on" } else { "Turn camera off" }}
                    </button>
                    <button class="button secondary" data-testid="toggle-mic" on:click=toggle_mic.clone()
                        aria-pressed=move || mic_off.get().to_string()>
                        {move || if mic_off.get() { "Unmute" } else { "Mute" }}
                    </button>
                    <select aria-label="Camera" on:change=move |ev| switch_device("videoinput", event_target_value(&ev))>
                        {move || devices.get().into_iter().filter(|d| d.0 == "videoinput").map(|(_, id, label)| view! { <option value=id>{label}</option> }).collect_view()}
                    </select>
                    <select aria-label="Microphone" on:change=move |ev| switch_device("audioinput", event_target_value(&ev))>
                        {move || devices.get().into_iter().filter(|d| d.0 == "audioinput").map(|(_, id, label)| view! { <option value=id>{label}</option> }).collect_view()}
                    </select>
                </Show>
                <button class="button secondary" data-testid="toggle-layout" on:click=move |_| compact.update(|c| *c = !*c)>
                    {move || if compact.get() { "Large tiles" } else { "Small tiles" }}
                </button>
                <button class="button danger" data-testid="leave" on:click=leave>"Leave"</button>
            </div>
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
