//! Live sessions through GraphQL: joining, the browser's offers and answers as mutations, the
//! server's offers and session events on `sessionEvents`, the role checked for publishing, media
//! reaching a viewer through the SFU. The "browsers" are webrtc-rs peers in the test process.

mod support;

#[path = "../../sfu/tests/support/mod.rs"]
#[allow(unused_imports)]
mod media;

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use serde_json::{Value, json};
use support::{Api, TestServer, live_session, user};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::TrackRemoteEvent;

const WAIT: Duration = Duration::from_secs(20);

const EVENTS: &str = "subscription($s: ID!) { sessionEvents(sessionId: $s) { __typename
  ... on SessionSnapshot { reason seq participants { id name role } tracks { id streamId participantId kind muted } }
  ... on ServerOffer { sdp }
  ... on ParticipantJoined { participant { id name role } }
  ... on ParticipantLeft { participantId }
  ... on ParticipantRoleChanged { participantId role }
  ... on TrackPublished { track { id streamId participantId kind muted } }
  ... on TrackUnpublished { trackId participantId }
  ... on TrackMuted { trackId muted }
  ... on LayerChanged { trackId layer }
  ... on SessionEnded { sessionId }
  ... on RemovedFromSession { reason } } }";

const JOIN: &str =
    "mutation($s: ID!) { joinSession(sessionId: $s) { participantId role iceServers { urls } } }";
const OFFER: &str = "mutation($s: ID!, $sdp: String!) { sendOffer(sessionId: $s, sdp: $sdp) }";
const ANSWER: &str = "mutation($s: ID!, $sdp: String!) { sendAnswer(sessionId: $s, sdp: $sdp) }";

/// The connection a user's server offers go to: none until its own offer was answered (as the
/// app does, offers that arrive earlier wait), replaced when the user reconnects.
type SharedPc =
    tokio::sync::watch::Sender<Option<Arc<dyn webrtc::peer_connection::PeerConnection>>>;

fn shared_pc() -> Arc<SharedPc> {
    Arc::new(tokio::sync::watch::channel(None).0)
}

/// The session's events for one user, as they arrive; server offers are answered by `pc`.
async fn subscribe(
    server: &TestServer,
    token: &str,
    session: &str,
    api: Api,
    pc: Arc<SharedPc>,
) -> mpsc::UnboundedReceiver<Value> {
    let mut request = format!("{}/graphql/ws", server.url.replace("http://", "ws://"))
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    ws.send(Message::text(
        json!({ "type": "connection_init", "payload": { "token": token } }).to_string(),
    ))
    .await
    .unwrap();
    ws.send(Message::text(
        json!({ "id": "1", "type": "subscribe",
                "payload": { "query": EVENTS, "variables": { "s": session } } })
        .to_string(),
    ))
    .await
    .unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let session = session.to_owned();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Text(text) = msg else { continue };
            let value: Value = serde_json::from_str(&text).unwrap();
            match value["type"].as_str() {
                Some("next") => {
                    let event = value["payload"]["data"]["sessionEvents"].clone();
                    if event["__typename"] == "ServerOffer" {
                        let pc = pc
                            .subscribe()
                            .wait_for(Option::is_some)
                            .await
                            .unwrap()
                            .clone()
                            .unwrap();
                        let sdp = event["sdp"].as_str().unwrap().to_owned();
                        pc.set_remote_description(RTCSessionDescription::offer(sdp).unwrap())
                            .await
                            .unwrap();
                        let answer = pc.create_answer(None).await.unwrap();
                        pc.set_local_description(answer).await.unwrap();
                        let sdp = pc.local_description().await.unwrap().sdp;
                        api.ok(ANSWER, json!({ "s": session, "sdp": sdp })).await;
                    }
                    let _ = tx.send(event);
                }
                Some("error") | Some("complete") => {
                    let _ = tx.send(value);
                    return;
                }
                _ => {}
            }
        }
    });
    rx
}

/// The next event of one of `types`, skipping others.
async fn next_of(events: &mut mpsc::UnboundedReceiver<Value>, types: &[&str]) -> Value {
    loop {
        let event = tokio::time::timeout(WAIT, events.recv())
            .await
            .unwrap_or_else(|_| panic!("no {types:?} event"))
            .expect("subscription open");
        if types.iter().any(|t| event["__typename"] == *t) {
            return event;
        }
        assert!(
            event.get("__typename").is_some(),
            "subscription failed: {event}"
        );
    }
}

/// Offers (after gathering), sends it through GraphQL, applies the answer.
async fn connect(api: &Api, session: &str, c: &mut media::Client) -> Value {
    connect_as(api, session, c, false, |sdp| sdp).await
}

/// Like [`connect`], as a new connection replacing the participant's current one when
/// `restart`, and with the offer the server gets rewritten by `tamper` first (the client keeps
/// its own): what a client that lies about its media sends.
async fn connect_as(
    api: &Api,
    session: &str,
    c: &mut media::Client,
    restart: bool,
    tamper: impl FnOnce(String) -> String,
) -> Value {
    let offer = c.pc.create_offer(None).await.unwrap();
    c.pc.set_local_description(offer).await.unwrap();
    tokio::time::timeout(WAIT, c.gathered.recv()).await.unwrap();
    let sdp = tamper(c.pc.local_description().await.unwrap().sdp);
    let body = api
        .post(
            "mutation($s: ID!, $sdp: String!, $r: Boolean!) { sendOffer(sessionId: $s, sdp: $sdp, restart: $r) }",
            json!({ "s": session, "sdp": sdp, "r": restart }),
        )
        .await;
    if body.get("errors").is_none() {
        let answer = body["data"]["sendOffer"].as_str().unwrap().to_owned();
        c.pc.set_remote_description(RTCSessionDescription::answer(answer).unwrap())
            .await
            .unwrap();
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_publishes_a_viewer_watches_and_may_not_publish() {
    let server = TestServer::start(std::path::PathBuf::from("/nonexistent")).await;
    let (host, host_token) = user(&server, "host@example.org", "Hannah Host").await;
    let (viewer, viewer_token) = user(&server, "viewer@example.org", "Vic Viewer").await;
    let class = host
        .ok(
            "mutation($i: CreateClassInput!) { createClass(input: $i) { id } }",
            json!({ "i": { "title": "Optics" } }),
        )
        .await["createClass"]["id"]
        .clone();
    let session = host
        .ok(
            "mutation($i: ScheduleSessionInput!) { scheduleSession(input: $i) { id } }",
            json!({ "i": { "classId": class, "start": "2030-01-01T10:00:00Z" } }),
        )
        .await["scheduleSession"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Not live yet: nobody joins.
    assert_eq!(
        host.error_code(JOIN, json!({ "s": session })).await,
        "CONFLICT"
    );
    host.ok(
        "mutation($id: ID!) { startSession(id: $id) { id } }",
        json!({ "id": session }),
    )
    .await;

    // The host joins and publishes a camera.
    let joined = host.ok(JOIN, json!({ "s": session })).await["joinSession"].clone();
    assert_eq!(joined["role"], "HOST");
    let host_pid = joined["participantId"].as_str().unwrap().to_owned();
    let mut host_pc = media::client().await;
    const SSRC: u32 = 0x2020_0001;
    let camera = media::vp8_camera(SSRC, "camera");
    let sender = host_pc
        .pc
        .add_track(Arc::clone(&camera) as Arc<dyn TrackLocal>)
        .await
        .unwrap();
    let host_api = host.with_bearer(&host_token);
    let host_current = shared_pc();
    let mut host_events = subscribe(
        &server,
        &host_token,
        &session,
        host_api.clone(),
        Arc::clone(&host_current),
    )
    .await;
    // The subscription starts from a snapshot of the room, the host in it.
    let first = next_of(&mut host_events, &["SessionSnapshot"]).await;
    assert_eq!(first["reason"], "FIRST");
    assert_eq!(first["participants"][0]["name"], "Hannah Host");
    assert!(
        connect(&host, &session, &mut host_pc)
            .await
            .get("errors")
            .is_none()
    );
    host_current.send_replace(Some(Arc::clone(&host_pc.pc)));
    let pt = sender.get_parameters().await.unwrap().rtp_parameters.codecs[0].payload_type;
    let send = media::send_tagged(Arc::clone(&camera), pt, SSRC, [7, 7]);
    let published = next_of(&mut host_events, &["TrackPublished"]).await;
    assert_eq!(published["track"]["participantId"], host_pid.as_str());
    assert_eq!(published["track"]["kind"], "VIDEO");
    let track_id = published["track"]["id"].as_str().unwrap().to_owned();

    // A viewer joins: it sees the host and the track first (in its snapshot), then gets the
    // SFU's offer.
    let joined = viewer.ok(JOIN, json!({ "s": session })).await["joinSession"].clone();
    assert_eq!(joined["role"], "VIEWER");
    let viewer_pid = joined["participantId"].as_str().unwrap().to_owned();
    let mut viewer_pc = media::client().await;
    viewer_pc
        .pc
        .add_transceiver_from_kind(
            RtpCodecKind::Video,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Recvonly,
                streams: vec![],
                send_encodings: vec![],
            }),
        )
        .await
        .unwrap();
    let viewer_api = viewer.with_bearer(&viewer_token);
    let viewer_current = shared_pc();
    let mut viewer_events = subscribe(
        &server,
        &viewer_token,
        &session,
        viewer_api.clone(),
        Arc::clone(&viewer_current),
    )
    .await;
    let seen = next_of(&mut viewer_events, &["SessionSnapshot"]).await;
    assert_eq!(seen["tracks"][0]["id"], track_id.as_str());
    assert!(
        connect(&viewer, &session, &mut viewer_pc)
            .await
            .get("errors")
            .is_none()
    );
    viewer_current.send_replace(Some(Arc::clone(&viewer_pc.pc)));
    let joined_seen = next_of(&mut host_events, &["ParticipantJoined"]).await;
    assert_eq!(joined_seen["participant"]["role"], "VIEWER");

    // Media reaches the viewer, in the stream the event named.
    let remote = tokio::time::timeout(WAIT, viewer_pc.tracks.recv())
        .await
        .expect("a track")
        .unwrap();
    assert_eq!(
        remote.stream_id().await,
        published["track"]["streamId"].as_str().unwrap()
    );
    let mut got = 0;
    while got < 20 {
        match tokio::time::timeout(WAIT, remote.poll()).await {
            Ok(Some(TrackRemoteEvent::OnRtpPacket(p))) => {
                assert_eq!(&p.payload[2..], &[7, 7]);
                got += 1;
            }
            Ok(Some(_)) => {}
            _ => panic!("media reaches the viewer: {got} packets"),
        }
    }

    // The viewer may not publish: a new connection whose offer sends is refused by the server
    // (and the one it has stays).
    let mut sneaky = media::client().await;
    let track = media::vp8_camera(0x2020_0099, "sneak");
    sneaky
        .pc
        .add_track(track as Arc<dyn TrackLocal>)
        .await
        .unwrap();
    let refused = connect_as(&viewer, &session, &mut sneaky, true, |sdp| sdp).await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{refused}"
    );

    // The host mutes the camera: the viewer sees it. The viewer asks for the low layer.
    host.ok(
        "mutation($s: ID!, $t: ID!) { setTrackMuted(sessionId: $s, trackId: $t, muted: true) }",
        json!({ "s": session, "t": track_id }),
    )
    .await;
    let muted = next_of(&mut viewer_events, &["TrackMuted"]).await;
    assert_eq!(
        (muted["trackId"].as_str(), muted["muted"].as_bool()),
        (Some(track_id.as_str()), Some(true))
    );
    // A viewer cannot mute someone else's track.
    assert_eq!(
        viewer
            .error_code(
                "mutation($s: ID!, $t: ID!) { setTrackMuted(sessionId: $s, trackId: $t, muted: true) }",
                json!({ "s": session, "t": track_id }),
            )
            .await,
        "NOT_FOUND"
    );
    let layer = viewer
        .ok(
            "mutation($s: ID!, $t: ID!) { setPreferredLayer(sessionId: $s, trackId: $t, layer: LOW) }",
            json!({ "s": session, "t": track_id }),
        )
        .await;
    assert_eq!(layer["setPreferredLayer"], true);

    // Someone who has not joined gets nothing.
    let (stranger, _) = user(&server, "s@example.org", "Stranger").await;
    assert_eq!(
        stranger
            .error_code(OFFER, json!({ "s": session, "sdp": "v=0" }))
            .await,
        "FORBIDDEN"
    );

    // The host's media connection is replaced (as after an ICE failure): the same participant
    // and role; the camera, published again from the new connection, reaches the viewer.
    let again = host.ok(JOIN, json!({ "s": session })).await["joinSession"].clone();
    assert_eq!(again["participantId"], host_pid.as_str());
    assert_eq!(again["role"], "HOST");
    let mut host_pc2 = media::client().await;
    const SSRC2: u32 = 0x2020_0002;
    let camera2 = media::vp8_camera(SSRC2, "camera");
    let sender2 = host_pc2
        .pc
        .add_track(Arc::clone(&camera2) as Arc<dyn TrackLocal>)
        .await
        .unwrap();
    host_current.send_replace(None);
    let offer = host_pc2.pc.create_offer(None).await.unwrap();
    host_pc2.pc.set_local_description(offer).await.unwrap();
    tokio::time::timeout(WAIT, host_pc2.gathered.recv())
        .await
        .unwrap();
    let sdp = host_pc2.pc.local_description().await.unwrap().sdp;
    let answer = host
        .ok(
            "mutation($s: ID!, $sdp: String!) { sendOffer(sessionId: $s, sdp: $sdp, restart: true) }",
            json!({ "s": session, "sdp": sdp }),
        )
        .await["sendOffer"]
        .as_str()
        .unwrap()
        .to_owned();
    host_pc2
        .pc
        .set_remote_description(RTCSessionDescription::answer(answer).unwrap())
        .await
        .unwrap();
    host_current.send_replace(Some(Arc::clone(&host_pc2.pc)));
    send.abort();
    let pt2 = sender2
        .get_parameters()
        .await
        .unwrap()
        .rtp_parameters
        .codecs[0]
        .payload_type;
    let send = media::send_tagged(Arc::clone(&camera2), pt2, SSRC2, [8, 8]);
    let gone = next_of(&mut viewer_events, &["TrackUnpublished"]).await;
    assert_eq!(gone["trackId"], track_id.as_str());
    let back = next_of(&mut viewer_events, &["TrackPublished"]).await;
    assert_eq!(back["track"]["participantId"], host_pid.as_str());
    assert_ne!(
        back["track"]["id"],
        track_id.as_str(),
        "a new track of the new connection"
    );
    let remote = loop {
        let t = tokio::time::timeout(WAIT, viewer_pc.tracks.recv())
            .await
            .expect("the republished track")
            .unwrap();
        if t.stream_id().await == back["track"]["streamId"].as_str().unwrap() {
            break t;
        }
    };
    let mut got = 0;
    while got < 10 {
        match tokio::time::timeout(WAIT, remote.poll()).await {
            Ok(Some(TrackRemoteEvent::OnRtpPacket(p))) => {
                assert_eq!(&p.payload[2..], &[8, 8]);
                got += 1;
            }
            Ok(Some(_)) => {}
            _ => panic!("the republished camera reaches the viewer: {got} packets"),
        }
    }

    // The viewer leaves; the host sees it. The host ends the session; the host's events end.
    viewer
        .ok(
            "mutation($s: ID!) { leaveSession(sessionId: $s) }",
            json!({ "s": session }),
        )
        .await;
    let left = next_of(&mut host_events, &["ParticipantLeft"]).await;
    assert_eq!(left["participantId"], viewer_pid.as_str());
    host.ok(
        "mutation($id: ID!) { endSession(id: $id) { state } }",
        json!({ "id": session }),
    )
    .await;
    let ended = next_of(&mut host_events, &["SessionEnded"]).await;
    assert_eq!(ended["sessionId"], session.as_str());

    send.abort();
    for pc in [host_pc.pc, host_pc2.pc, viewer_pc.pc, sneaky.pc] {
        let _ = pc.close().await;
    }
    server.stop().await;
}

/// A client with one receive-only video section.
async fn receiving_client() -> media::Client {
    let c = media::client().await;
    c.pc.add_transceiver_from_kind(
        RtpCodecKind::Video,
        Some(RTCRtpTransceiverInit {
            direction: RTCRtpTransceiverDirection::Recvonly,
            streams: vec![],
            send_encodings: vec![],
        }),
    )
    .await
    .unwrap();
    c
}

/// Joins, subscribes and connects a receive-only client: (participant id, events, client).
async fn join_receiving(
    server: &TestServer,
    api: &Api,
    token: &str,
    session: &str,
) -> (String, mpsc::UnboundedReceiver<Value>, media::Client) {
    let joined = api.ok(JOIN, json!({ "s": session })).await["joinSession"].clone();
    let pid = joined["participantId"].as_str().unwrap().to_owned();
    let mut c = receiving_client().await;
    let current = shared_pc();
    let events = subscribe(
        server,
        token,
        session,
        api.with_bearer(token),
        Arc::clone(&current),
    )
    .await;
    let answered = connect(api, session, &mut c).await;
    assert!(answered.get("errors").is_none(), "{answered}");
    current.send_replace(Some(Arc::clone(&c.pc)));
    (pid, events, c)
}

/// The SFU's rights for a participant's connection.
async fn rights_of(server: &TestServer, session: &str, participant: &str) -> sfu::PeerRights {
    let (sid, pid) = (session.parse().unwrap(), participant.parse().unwrap());
    let peer = server.state().live.peer_of(sid, pid).expect("connected");
    server.state().sfu.stats(peer).await.expect("a peer").rights
}

/// No event of `types` arrives for a while.
async fn none_of(events: &mut mpsc::UnboundedReceiver<Value>, types: &[&str], wait: Duration) {
    let found = tokio::time::timeout(wait, next_of(events, types)).await;
    assert!(found.is_err(), "unexpected {found:?}");
}

/// A viewer's camera on a media line written `m= video` (which webrtc-rs reads as video, and the
/// old text check did not): refused on a first offer; on a renegotiation the SFU answers it
/// without receiving. Nobody gets a track either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_publishes_nothing_however_its_offer_is_written() {
    let server = TestServer::start(std::path::PathBuf::from("/nonexistent")).await;
    let (host, host_token) = user(&server, "host@example.org", "Hannah Host").await;
    let (viewer, viewer_token) = user(&server, "viewer@example.org", "Vic Viewer").await;
    let (_, session) = live_session(&host).await;
    let (_, mut host_events, mut host_pc) =
        join_receiving(&server, &host, &host_token, &session).await;
    let spaced = |sdp: String| {
        let tampered = sdp.replace("m=video ", "m= video ");
        assert_ne!(tampered, sdp);
        tampered
    };

    // A first offer with a camera.
    let joined = viewer.ok(JOIN, json!({ "s": session })).await["joinSession"].clone();
    let viewer_pid = joined["participantId"].as_str().unwrap().to_owned();
    let mut sneaky = media::client().await;
    const SSRC: u32 = 0x3030_0001;
    let camera = media::vp8_camera(SSRC, "sneak");
    let sender = sneaky
        .pc
        .add_track(Arc::clone(&camera) as Arc<dyn TrackLocal>)
        .await
        .unwrap();
    let refused = connect_as(&viewer, &session, &mut sneaky, false, spaced).await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{refused}"
    );
    let pt = sender.get_parameters().await.unwrap().rtp_parameters.codecs[0].payload_type;
    let sneak = media::send_tagged(Arc::clone(&camera), pt, SSRC, [6, 6]);

    // Receive-only first, then a renegotiation that adds the camera.
    let mut viewer_pc = receiving_client().await;
    let viewer_current = shared_pc();
    let _viewer_events = subscribe(
        &server,
        &viewer_token,
        &session,
        viewer.with_bearer(&viewer_token),
        Arc::clone(&viewer_current),
    )
    .await;
    let answered = connect(&viewer, &session, &mut viewer_pc).await;
    assert!(answered.get("errors").is_none(), "{answered}");
    viewer_current.send_replace(Some(Arc::clone(&viewer_pc.pc)));
    assert_eq!(
        rights_of(&server, &session, &viewer_pid).await,
        sfu::PeerRights::VIEWER
    );
    const SSRC2: u32 = 0x3030_0002;
    let camera2 = media::vp8_camera(SSRC2, "sneak2");
    let transceiver = viewer_pc
        .pc
        .add_transceiver_from_track(
            Arc::clone(&camera2) as Arc<dyn TrackLocal>,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Sendonly,
                streams: vec![],
                send_encodings: vec![],
            }),
        )
        .await
        .unwrap();
    let offer = viewer_pc.pc.create_offer(None).await.unwrap();
    viewer_pc.pc.set_local_description(offer).await.unwrap();
    let sdp = spaced(viewer_pc.pc.local_description().await.unwrap().sdp);
    let answer = viewer.ok(OFFER, json!({ "s": session, "sdp": sdp })).await["sendOffer"]
        .as_str()
        .unwrap()
        .to_owned();
    viewer_pc
        .pc
        .set_remote_description(RTCSessionDescription::answer(answer).unwrap())
        .await
        .unwrap();
    let sender2 = transceiver.sender().await.unwrap().unwrap();
    let pt2 = sender2
        .get_parameters()
        .await
        .unwrap()
        .rtp_parameters
        .codecs[0]
        .payload_type;
    let sneak2 = media::send_tagged(Arc::clone(&camera2), pt2, SSRC2, [9, 9]);

    // Nothing published, nothing received by the host.
    none_of(
        &mut host_events,
        &["TrackPublished"],
        Duration::from_secs(3),
    )
    .await;
    assert!(
        host_pc.tracks.try_recv().is_err(),
        "no track reached the host"
    );
    assert_eq!(
        rights_of(&server, &session, &viewer_pid).await,
        sfu::PeerRights::VIEWER
    );
    sneak.abort();
    sneak2.abort();
    for pc in [host_pc.pc, viewer_pc.pc, sneaky.pc] {
        let _ = pc.close().await;
    }
    server.stop().await;
}

/// A co-host publishes; the host takes the role away: everyone is told, the camera is
/// unpublished at once, and what the demoted co-host still sends goes nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demoted_co_host_stops_publishing_at_once() {
    let server = TestServer::start(std::path::PathBuf::from("/nonexistent")).await;
    let (host, host_token) = user(&server, "host@example.org", "Hannah Host").await;
    let co_host = Api::new(&server.url);
    let co_host_id = co_host.sign_up("co@example.org", "Cora Cohost").await;
    let co_host_token = co_host
        .ok(
            "mutation($i: CreateApiTokenInput!) { createApiToken(input: $i) { secret } }",
            json!({ "i": { "name": "ws", "scopes": ["READ", "WRITE"] } }),
        )
        .await["createApiToken"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let (class, session) = live_session(&host).await;
    host.ok(
        "mutation($c: ID!, $u: ID!) { assignRole(classId: $c, userId: $u, role: CO_HOST) }",
        json!({ "c": class, "u": co_host_id }),
    )
    .await;
    let (_, mut host_events, mut host_pc) =
        join_receiving(&server, &host, &host_token, &session).await;

    // The co-host joins and publishes a camera; the host receives it.
    let joined = co_host.ok(JOIN, json!({ "s": session })).await["joinSession"].clone();
    assert_eq!(joined["role"], "CO_HOST");
    let co_pid = joined["participantId"].as_str().unwrap().to_owned();
    let mut co_pc = media::client().await;
    const SSRC: u32 = 0x4040_0001;
    let camera = media::vp8_camera(SSRC, "camera");
    let sender = co_pc
        .pc
        .add_track(Arc::clone(&camera) as Arc<dyn TrackLocal>)
        .await
        .unwrap();
    let co_current = shared_pc();
    let mut co_events = subscribe(
        &server,
        &co_host_token,
        &session,
        co_host.with_bearer(&co_host_token),
        Arc::clone(&co_current),
    )
    .await;
    let answered = connect(&co_host, &session, &mut co_pc).await;
    assert!(answered.get("errors").is_none(), "{answered}");
    co_current.send_replace(Some(Arc::clone(&co_pc.pc)));
    let pt = sender.get_parameters().await.unwrap().rtp_parameters.codecs[0].payload_type;
    let send = media::send_tagged(Arc::clone(&camera), pt, SSRC, [5, 5]);
    let published = next_of(&mut host_events, &["TrackPublished"]).await;
    assert_eq!(published["track"]["participantId"], co_pid.as_str());
    let track_id = published["track"]["id"].as_str().unwrap().to_owned();
    let remote = tokio::time::timeout(WAIT, host_pc.tracks.recv())
        .await
        .expect("the co-host's camera reaches the host")
        .unwrap();
    loop {
        match tokio::time::timeout(WAIT, remote.poll()).await {
            Ok(Some(TrackRemoteEvent::OnRtpPacket(_))) => break,
            Ok(Some(_)) => {}
            _ => panic!("media reaches the host"),
        }
    }
    assert_eq!(
        rights_of(&server, &session, &co_pid).await,
        sfu::PeerRights::PUBLISHER
    );

    // Demoted.
    host.ok(
        "mutation($c: ID!, $u: ID!) { removeRole(classId: $c, userId: $u) }",
        json!({ "c": class, "u": co_host_id }),
    )
    .await;
    for events in [&mut host_events, &mut co_events] {
        let changed = next_of(events, &["ParticipantRoleChanged"]).await;
        assert_eq!(
            (changed["participantId"].as_str(), changed["role"].as_str()),
            (Some(co_pid.as_str()), Some("VIEWER"))
        );
    }
    let gone = next_of(&mut host_events, &["TrackUnpublished"]).await;
    assert_eq!(
        (gone["trackId"].as_str(), gone["participantId"].as_str()),
        (Some(track_id.as_str()), Some(co_pid.as_str()))
    );
    assert_eq!(
        rights_of(&server, &session, &co_pid).await,
        sfu::PeerRights::VIEWER
    );
    // The SFU's next offer says it receives nothing from it any more: the client stops sending.
    media::until_not_sending(&co_pc).await;
    // Its role in a rejoin is the new one.
    let again = co_host.ok(JOIN, json!({ "s": session })).await["joinSession"].clone();
    assert_eq!(again["role"], "VIEWER");
    send.abort();
    for pc in [host_pc.pc, co_pc.pc] {
        let _ = pc.close().await;
    }
    server.stop().await;
}

/// `sendAnswer` and `sendIceCandidate` refuse garbage and answers nobody asked for, with
/// BAD_USER_INPUT naming the field, instead of answering `true`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_unsolicited_answers_and_candidates_are_refused() {
    let server = TestServer::start(std::path::PathBuf::from("/nonexistent")).await;
    let (host, _) = user(&server, "host@example.org", "Hannah").await;
    let (viewer, token) = user(&server, "viewer@example.org", "Vera").await;
    let (_, session) = live_session(&host).await;
    let (_, _events, _client) = join_receiving(&server, &viewer, &token, &session).await;

    let field_of = |v: &Value| {
        (
            v["errors"][0]["extensions"]["code"].clone(),
            v["errors"][0]["extensions"]["field"].clone(),
        )
    };
    // No server offer is waiting: an answer (even a well-formed one) is unsolicited.
    let unsolicited = viewer
        .post(
            ANSWER,
            json!({ "s": session, "sdp": "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n" }),
        )
        .await;
    assert_eq!(
        field_of(&unsolicited),
        (json!("BAD_USER_INPUT"), json!("sdp")),
        "{unsolicited}"
    );
    let garbage = viewer
        .post(ANSWER, json!({ "s": session, "sdp": "not an answer" }))
        .await;
    assert_eq!(
        field_of(&garbage),
        (json!("BAD_USER_INPUT"), json!("sdp")),
        "{garbage}"
    );
    let candidate = viewer
        .post(
            "mutation($s: ID!, $c: String!) { sendIceCandidate(sessionId: $s, candidate: $c) }",
            json!({ "s": session, "c": "candidate:garbage" }),
        )
        .await;
    assert_eq!(
        field_of(&candidate),
        (json!("BAD_USER_INPUT"), json!("candidate")),
        "{candidate}"
    );
    server.stop().await;
}
