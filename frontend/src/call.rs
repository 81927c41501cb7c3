//! The browser side of a session's media: one `RTCPeerConnection` to the SFU, signaled through
//! GraphQL (offers and answers as mutations, the server's offers from `sessionEvents`).
//!
//! Publishers send their camera with simulcast (three layers: a quarter, half and full size) and
//! their microphone; viewers connect receive-only. Remote tracks arrive in media streams whose id
//! names their publisher's stream (see the `Track` type of the API).

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Array, Object, Reflect};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    MediaStream, MediaStreamConstraints, MediaStreamTrack, RtcConfiguration, RtcPeerConnection,
    RtcRtpTransceiverDirection, RtcRtpTransceiverInit, RtcSdpType, RtcSessionDescriptionInit,
    RtcTrackEvent,
};

use crate::api;

fn js_err(e: JsValue) -> String {
    e.as_string()
        .or_else(|| {
            Reflect::get(&e, &"message".into())
                .ok()
                .and_then(|m| m.as_string())
        })
        .unwrap_or_else(|| format!("{e:?}"))
}

/// The `name` of a DOM exception (`NotAllowedError`, ...), empty for anything else.
fn error_name(e: &JsValue) -> String {
    Reflect::get(e, &"name".into())
        .ok()
        .and_then(|n| n.as_string())
        .unwrap_or_default()
}

/// A `performance.mark` of a step of connecting.
fn mark(name: &str) {
    if let Some(p) = web_sys::window().and_then(|w| w.performance()) {
        let _ = p.mark(name);
    }
}

fn set(obj: &Object, key: &str, value: impl Into<JsValue>) {
    let _ = Reflect::set(obj, &key.into(), &value.into());
}

/// The connection's `signalingState`.
fn signaling_state(pc: &RtcPeerConnection) -> String {
    Reflect::get(pc, &"signalingState".into())
        .ok()
        .and_then(|v| v.as_string())
        .unwrap_or_default()
}

/// The SDP of the connection's remote description, if it has one.
fn remote_sdp(pc: &RtcPeerConnection) -> Option<String> {
    let d = Reflect::get(pc, &"remoteDescription".into()).ok()?;
    Reflect::get(&d, &"sdp".into()).ok()?.as_string()
}

/// The first `a=ice-ufrag` of a description.
fn ice_ufrag(sdp: &str) -> Option<&str> {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
}

/// Resolves at the connection's next signaling state change (or when it closes).
async fn signaling_settled(pc: &RtcPeerConnection) {
    let target = pc.clone();
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let options = Object::new();
        set(&options, "once", true);
        let add = Reflect::get(&target, &"addEventListener".into())
            .ok()
            .and_then(|f| f.dyn_into::<js_sys::Function>().ok());
        if let Some(add) = add {
            let _ = add.call3(&target, &"signalingstatechange".into(), &resolve, &options);
        } else {
            let _ = resolve.call0(&JsValue::NULL);
        }
    });
    let _ = JsFuture::from(promise).await;
}

/// Asks for camera and microphone (optionally specific devices).
pub async fn local_media(
    camera: Option<String>,
    microphone: Option<String>,
) -> Result<MediaStream, String> {
    let devices = web_sys::window()
        .ok_or("no window")?
        .navigator()
        .media_devices()
        .map_err(|_| "this browser has no camera access (insecure page?)".to_owned())?;
    let video = Object::new();
    set(&video, "width", 1280);
    set(&video, "height", 720);
    if let Some(id) = camera {
        let exact = Object::new();
        set(&exact, "exact", id);
        set(&video, "deviceId", exact);
    }
    let audio: JsValue = match microphone {
        Some(id) => {
            let a = Object::new();
            let exact = Object::new();
            set(&exact, "exact", id);
            set(&a, "deviceId", exact);
            a.into()
        }
        None => true.into(),
    };
    let constraints = MediaStreamConstraints::new();
    constraints.set_video(&video);
    constraints.set_audio(&audio);
    let promise = devices
        .get_user_media_with_constraints(&constraints)
        .map_err(js_err)?;
    let stream = JsFuture::from(promise).await.map_err(|e| {
        let name = error_name(&e);
        if name == "NotAllowedError" {
            "Camera or microphone access was denied. Allow it in the browser's site settings, then reload.".to_owned()
        } else if name == "NotFoundError" {
            "No camera or microphone was found.".to_owned()
        } else {
            format!("The camera could not start: {}", js_err(e))
        }
    })?;
    Ok(stream.unchecked_into())
}

/// Cameras and microphones: (kind, device id, label).
pub async fn devices() -> Vec<(String, String, String)> {
    let Some(media) = web_sys::window().and_then(|w| w.navigator().media_devices().ok()) else {
        return Vec::new();
    };
    let Ok(promise) = media.enumerate_devices() else {
        return Vec::new();
    };
    let Ok(list) = JsFuture::from(promise).await else {
        return Vec::new();
    };
    Array::from(&list)
        .iter()
        .filter_map(|d| {
            let get = |k: &str| {
                Reflect::get(&d, &k.into())
                    .ok()
                    .and_then(|v| v.as_string())
                    .unwrap_or_default()
            };
            let kind = get("kind");
            (kind == "videoinput" || kind == "audioinput")
                .then(|| (kind, get("deviceId"), get("label")))
        })
        .collect()
}

/// The track id in the `a=msid:<stream> <track>` line of the m-section with `a=mid:<mid>`:
/// the id the server gives the track (the API's `Track.id`).
fn msid_track_of(sdp: &str, mid: &str) -> Option<String> {
    let mut in_section = false;
    let mut msid = None;
    for line in sdp.lines().map(str::trim) {
        if line.starts_with("m=") {
            if in_section {
                return msid;
            }
            msid = None;
        } else if let Some(m) = line.strip_prefix("a=mid:") {
            in_section = m == mid;
        } else if let Some(rest) = line.strip_prefix("a=msid:") {
            msid = rest.split_whitespace().nth(1).map(str::to_owned);
        }
    }
    if in_section { msid } else { None }
}

/// A JavaScript event listener kept alive with what it listens to.
type Listener = Closure<dyn FnMut(JsValue)>;

/// Callbacks of a call.
pub struct Handlers {
    /// A remote track arrived: its id as the API names it (`Track.id`), and the track.
    pub on_track: Box<dyn Fn(String, MediaStreamTrack)>,
    /// The connection state changed (`new`, `connecting`, `connected`, `disconnected`, `failed`,
    /// `closed`).
    pub on_state: Box<dyn Fn(String)>,
}

struct Inner {
    session_id: String,
    pc: RtcPeerConnection,
    handlers: Rc<Handlers>,
    closures: Vec<Listener>,
}

/// The media connection of this browser in a session.
#[derive(Clone)]
pub struct Call(Rc<RefCell<Inner>>);

const SEND_OFFER: &str = "mutation($s: ID!, $sdp: String!, $r: Boolean!) { sendOffer(sessionId: $s, sdp: $sdp, restart: $r) }";
const SEND_ANSWER: &str =
    "mutation($s: ID!, $sdp: String!) { sendAnswer(sessionId: $s, sdp: $sdp) }";

fn new_pc(
    ice_servers: &[String],
    handlers: &Rc<Handlers>,
) -> Result<(RtcPeerConnection, Vec<Listener>), String> {
    let config = RtcConfiguration::new();
    let servers = Array::new();
    for url in ice_servers {
        let s = Object::new();
        set(&s, "urls", url.as_str());
        servers.push(&s);
    }
    config.set_ice_servers(&servers);
    let pc = RtcPeerConnection::new_with_configuration(&config).map_err(js_err)?;
    // For diagnostics in the browser's console (and the end-to-end tests): the current connection.
    if let Some(w) = web_sys::window() {
        let _ = Reflect::set(&w, &"__classroomPc".into(), &pc);
    }
    let on_track = {
        let handlers = Rc::clone(handlers);
        Closure::<dyn FnMut(JsValue)>::new(move |e: JsValue| {
            let e: RtcTrackEvent = e.unchecked_into();
            // The track's id, from the `a=msid` of this transceiver's m-section in the server's
            // description (what the browser calls the track may differ).
            let mid = e.transceiver().mid().unwrap_or_default();
            let sdp = Reflect::get(
                &e.target().unwrap_or(JsValue::NULL.into()),
                &"remoteDescription".into(),
            )
            .ok()
            .and_then(|d| Reflect::get(&d, &"sdp".into()).ok())
            .and_then(|s| s.as_string())
            .unwrap_or_default();
            let track = e.track();
            let id = msid_track_of(&sdp, &mid).unwrap_or_else(|| track.id());
            (handlers.on_track)(id, track);
        })
    };
    pc.set_ontrack(Some(on_track.as_ref().unchecked_ref()));
    let on_state = {
        let (handlers, pc) = (Rc::clone(handlers), pc.clone());
        Closure::<dyn FnMut(JsValue)>::new(move |_: JsValue| {
            let state = Reflect::get(&pc, &"connectionState".into())
                .ok()
                .and_then(|s| s.as_string())
                .unwrap_or_default();
            (handlers.on_state)(state);
        })
    };
    pc.set_onconnectionstatechange(Some(on_state.as_ref().unchecked_ref()));
    Ok((pc, vec![on_track, on_state]))
}

/// Asks the person to pick a screen, window or tab to share, with its sound when the browser
/// offers it.
pub async fn display_media() -> Result<MediaStream, String> {
    let devices = web_sys::window()
        .ok_or("no window")?
        .navigator()
        .media_devices()
        .map_err(|_| "this browser cannot share a screen (insecure page?)".to_owned())?;
    let constraints = web_sys::DisplayMediaStreamConstraints::new();
    constraints.set_video_bool(true);
    constraints.set_audio_bool(true);
    let promise = devices
        .get_display_media_with_constraints(&constraints)
        .map_err(js_err)?;
    let stream = JsFuture::from(promise).await.map_err(|e| {
        let name = error_name(&e);
        if name == "NotAllowedError" {
            "Screen sharing was cancelled or is not allowed.".to_owned()
        } else {
            format!("The screen could not be shared: {}", js_err(e))
        }
    })?;
    Ok(stream.unchecked_into())
}

/// A track of a shared screen (marked by [`add_screen`]).
fn is_screen(track: &MediaStreamTrack) -> bool {
    let hint = Reflect::get(track, &"contentHint".into())
        .ok()
        .and_then(|h| h.as_string())
        .unwrap_or_default();
    track.kind() == "video" && hint == "detail" || track.kind() == "audio" && hint == "music"
}

/// Adds a shared screen's tracks (its picture, and its sound if any): one layer, sent as
/// captured (text stays readable), in their own stream.
fn add_screen(pc: &RtcPeerConnection, screen: &MediaStream) {
    for track in screen.get_tracks().iter() {
        let track: MediaStreamTrack = track.unchecked_into();
        // A screen's picture: sharpness over smoothness (the encoder keeps the resolution and
        // drops frames); its sound is music or a video's, not speech. This also marks them
        // apart from the camera and microphone.
        let hint = if track.kind() == "video" {
            "detail"
        } else {
            "music"
        };
        set(track.unchecked_ref(), "contentHint", hint);
        let init = RtcRtpTransceiverInit::new();
        init.set_direction(RtcRtpTransceiverDirection::Sendonly);
        let streams = Array::new();
        streams.push(screen);
        init.set_streams(&streams);
        pc.add_transceiver_with_media_stream_track_and_init(&track, &init);
    }
}

/// Adds what this browser sends (or receive-only lines for a viewer).
fn add_media(pc: &RtcPeerConnection, local: Option<&MediaStream>) {
    match local {
        Some(stream) => {
            for track in stream.get_tracks().iter() {
                let track: MediaStreamTrack = track.unchecked_into();
                let init = RtcRtpTransceiverInit::new();
                init.set_direction(RtcRtpTransceiverDirection::Sendonly);
                let streams = Array::new();
                streams.push(stream);
                init.set_streams(&streams);
                if track.kind() == "video" {
                    let encodings = Array::new();
                    for (rid, scale) in [("q", 4.0), ("h", 2.0), ("f", 1.0)] {
                        let e = Object::new();
                        set(&e, "rid", rid);
                        set(&e, "scaleResolutionDownBy", scale);
                        encodings.push(&e);
                    }
                    set(&init, "sendEncodings", encodings);
                }
                pc.add_transceiver_with_media_stream_track_and_init(&track, &init);
            }
        }
        None => {
            for kind in ["audio", "video"] {
                let init = RtcRtpTransceiverInit::new();
                init.set_direction(RtcRtpTransceiverDirection::Recvonly);
                pc.add_transceiver_with_str_and_init(kind, &init);
            }
        }
    }
}

async fn offer_and_send(
    pc: &RtcPeerConnection,
    session_id: &str,
    restart: bool,
) -> Result<(), String> {
    // A server offer being answered finishes first (an offer cannot be made meanwhile).
    while signaling_state(pc) != "stable" {
        if signaling_state(pc) == "closed" {
            return Err("the connection is closed".into());
        }
        signaling_settled(pc).await;
    }
    let offer = JsFuture::from(pc.create_offer()).await.map_err(js_err)?;
    let sdp = Reflect::get(&offer, &"sdp".into())
        .ok()
        .and_then(|s| s.as_string())
        .ok_or("no offer")?;
    let init = RtcSessionDescriptionInit::new(RtcSdpType::Offer);
    init.set_sdp(&sdp);
    JsFuture::from(pc.set_local_description(&init))
        .await
        .map_err(js_err)?;
    mark("classroom:offer-made");
    let data = api::graphql(
        SEND_OFFER,
        serde_json::json!({ "s": session_id, "sdp": sdp, "r": restart }),
    )
    .await
    .map_err(|e| e.message)?;
    let answer = data["sendOffer"].as_str().ok_or("no answer")?.to_owned();
    mark("classroom:answer-received");
    let init = RtcSessionDescriptionInit::new(RtcSdpType::Answer);
    init.set_sdp(&answer);
    JsFuture::from(pc.set_remote_description(&init))
        .await
        .map_err(js_err)?;
    Ok(())
}

/// What the browser says of one received track.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct InboundStats {
    pub lost: f64,
    pub received: f64,
    pub bytes: f64,
    pub rtt_s: f64,
    /// When measured (the browser's clock, ms).
    pub at_ms: f64,
    /// Height of the frames received now (the simulcast layer the server sends): 0 before any.
    pub frame_height: f64,
}

impl Call {
    /// Connects to the session's media: sends `local` if given, receives everything.
    pub async fn start(
        session_id: &str,
        ice_servers: &[String],
        local: Option<&MediaStream>,
        handlers: Handlers,
    ) -> Result<Call, String> {
        let handlers = Rc::new(handlers);
        let (pc, closures) = new_pc(ice_servers, &handlers)?;
        add_media(&pc, local);
        // A new page replaces any connection an earlier page of this participant left behind.
        offer_and_send(&pc, session_id, true).await?;
        Ok(Call(Rc::new(RefCell::new(Inner {
            session_id: session_id.to_owned(),
            pc,
            handlers,
            closures,
        }))))
    }

    /// Replaces the connection with a new one (after ICE failed or the network changed); the
    /// server keeps the participant and its role, and the tracks are published again.
    pub async fn restart(
        &self,
        ice_servers: &[String],
        local: Option<&MediaStream>,
        screen: Option<&MediaStream>,
    ) -> Result<(), String> {
        let (session_id, handlers, old) = {
            let inner = self.0.borrow();
            (
                inner.session_id.clone(),
                Rc::clone(&inner.handlers),
                inner.pc.clone(),
            )
        };
        old.close();
        let (pc, closures) = new_pc(ice_servers, &handlers)?;
        add_media(&pc, local);
        if let Some(screen) = screen {
            add_screen(&pc, screen);
        }
        {
            let mut inner = self.0.borrow_mut();
            inner.pc = pc.clone();
            inner.closures = closures;
        }
        offer_and_send(&pc, &session_id, true).await
    }

    /// Applies a server offer and answers it. An offer made for an earlier connection of this
    /// page (the server's ICE credentials differ from the current connection's: it crossed a
    /// restart, such as joining the stage) is dropped: the current connection gets its own.
    /// While this page's own offer waits for its answer, the server's waits for that.
    pub async fn on_server_offer(&self, sdp: String) -> Result<(), String> {
        let (pc, session_id) = {
            let inner = self.0.borrow();
            (inner.pc.clone(), inner.session_id.clone())
        };
        if signaling_state(&pc) == "have-local-offer" {
            signaling_settled(&pc).await;
            if self.0.borrow().pc != pc {
                return Ok(());
            }
        }
        if let (Some(current), Some(offered)) = (
            remote_sdp(&pc)
                .as_deref()
                .and_then(ice_ufrag)
                .map(str::to_owned),
            ice_ufrag(&sdp),
        ) && current != offered
        {
            return Ok(());
        }
        let init = RtcSessionDescriptionInit::new(RtcSdpType::Offer);
        init.set_sdp(&sdp);
        JsFuture::from(pc.set_remote_description(&init))
            .await
            .map_err(js_err)?;
        let answer = JsFuture::from(pc.create_answer()).await.map_err(js_err)?;
        let sdp = Reflect::get(&answer, &"sdp".into())
            .ok()
            .and_then(|s| s.as_string())
            .ok_or("no answer")?;
        let init = RtcSessionDescriptionInit::new(RtcSdpType::Answer);
        init.set_sdp(&sdp);
        JsFuture::from(pc.set_local_description(&init))
            .await
            .map_err(js_err)?;
        api::graphql(
            SEND_ANSWER,
            serde_json::json!({ "s": session_id, "sdp": sdp }),
        )
        .await
        .map_err(|e| e.message)?;
        Ok(())
    }

    /// Starts sending a shared screen (announced first with `shareScreen`): renegotiates.
    pub async fn share_screen(&self, screen: &MediaStream) -> Result<(), String> {
        let (pc, session_id) = {
            let inner = self.0.borrow();
            (inner.pc.clone(), inner.session_id.clone())
        };
        add_screen(&pc, screen);
        offer_and_send(&pc, &session_id, false).await
    }

    /// Stops sending a shared screen's tracks: renegotiates (the server unpublishes them).
    pub async fn stop_screen(&self, screen: &MediaStream) -> Result<(), String> {
        let (pc, session_id) = {
            let inner = self.0.borrow();
            (inner.pc.clone(), inner.session_id.clone())
        };
        let ids: Vec<String> = screen
            .get_tracks()
            .iter()
            .map(|t| t.unchecked_into::<MediaStreamTrack>().id())
            .collect();
        let mut removed = false;
        for sender in pc.get_senders().iter() {
            let sender: web_sys::RtcRtpSender = sender.unchecked_into();
            // The screen's tracks (any screen's: nothing of a share may stay on the air).
            if let Some(track) = sender.track()
                && (ids.contains(&track.id()) || is_screen(&track))
            {
                track.stop();
                pc.remove_track(&sender);
                removed = true;
            }
        }
        if !removed || signaling_state(&pc) == "closed" {
            return Ok(());
        }
        offer_and_send(&pc, &session_id, false).await
    }

    /// Replaces the camera or microphone being sent with `track` (a device change).
    pub fn replace_track(&self, track: &MediaStreamTrack) {
        let pc = self.0.borrow().pc.clone();
        for sender in pc.get_senders().iter() {
            let sender: web_sys::RtcRtpSender = sender.unchecked_into();
            // The camera's or microphone's sender (a screen's track keeps its own).
            if sender
                .track()
                .is_some_and(|t| t.kind() == track.kind() && !is_screen(&t))
            {
                let _ = sender.replace_track(Some(track));
            }
        }
    }

    /// Inbound statistics of the remote track with id `track_id` and the connection's round-trip
    /// time: (packets lost, packets received, bytes received, round-trip seconds, the stats'
    /// timestamp in ms).
    pub async fn inbound_stats(&self, track_id: &str) -> Option<InboundStats> {
        let pc = self.0.borrow().pc.clone();
        let report = JsFuture::from(pc.get_stats()).await.ok()?;
        let mut out = InboundStats::default();
        let mut found = false;
        let values = Reflect::get(&report, &"values".into()).ok()?;
        let values: js_sys::Function = values.dyn_into().ok()?;
        let iter = values.call0(&report).ok()?;
        for stat in js_sys::try_iter(&iter).ok()??.flatten() {
            let text = |k: &str| {
                Reflect::get(&stat, &k.into())
                    .ok()
                    .and_then(|v| v.as_string())
                    .unwrap_or_default()
            };
            let num = |k: &str| {
                Reflect::get(&stat, &k.into())
                    .ok()
                    .and_then(|v| v.as_f64())
                    .unwrap_or(0.0)
            };
            match text("type").as_str() {
                "inbound-rtp" if text("trackIdentifier") == track_id => {
                    out.lost = num("packetsLost");
                    out.received = num("packetsReceived");
                    out.bytes = num("bytesReceived");
                    out.at_ms = num("timestamp");
                    out.frame_height = num("frameHeight");
                    found = true;
                }
                "candidate-pair"
                    if text("state") == "succeeded" && num("currentRoundTripTime") > 0.0 =>
                {
                    out.rtt_s = num("currentRoundTripTime");
                }
                _ => {}
            }
        }
        found.then_some(out)
    }

    pub fn close(&self) {
        self.0.borrow().pc.close();
    }
}
