//! Raised hands, the stage, moderation and attendance through GraphQL: every moderation
//! operation refused to a viewer (FORBIDDEN), a removed participant kept out, a locked session
//! refusing new joins, a mute by the host the person cannot undo, and the attendance report
//! (GraphQL and CSV). No browser: SFU events are injected into the gateway's `Live`; nothing
//! waits on a clock to synchronise.

mod support;

use serde_json::{Value, json};
use sfu::{PeerId, SfuEvent, TrackKey};
use support::events::{self, Events};
use support::{Api, TestServer, join, live_session, user};

const EVENTS: &str = "subscription($s: ID!) { sessionEvents(sessionId: $s) { __typename
  ... on SessionSnapshot { seq locked hands { participantId } hostMutes { participantId kind } }
  ... on ParticipantLeft { participantId }
  ... on ParticipantRoleChanged { participantId role }
  ... on HandRaised { hand { participantId raisedAt } }
  ... on HandLowered { participantId reason }
  ... on HostMuteChanged { participantId kind locked }
  ... on TrackMuted { trackId muted }
  ... on TrackPublished { track { id source } }
  ... on SessionLockChanged { locked }
  ... on StageInvitation { invited }
  ... on RemovedFromSession { reason } } }";

const JOIN: &str = "mutation($s: ID!) { joinSession(sessionId: $s) { participantId role } }";

async fn subscribe(server: &TestServer, token: &str, session: &str) -> Events {
    let mut events = events::subscribe(
        &server.url,
        token,
        EVENTS,
        json!({ "s": session }),
        "sessionEvents",
    )
    .await;
    assert_eq!(events.next().await["__typename"], "SessionSnapshot");
    events
}

fn s_p(session: &str, participant: i64) -> Value {
    json!({ "s": session, "p": participant.to_string() })
}

const INVITE: &str =
    "mutation($s: ID!, $p: ID!) { inviteToStage(sessionId: $s, participantId: $p) }";
const SEND_BACK: &str =
    "mutation($s: ID!, $p: ID!) { sendToAudience(sessionId: $s, participantId: $p) }";
const MUTE: &str =
    "mutation($s: ID!, $p: ID!) { muteParticipant(sessionId: $s, participantId: $p, kind: AUDIO) }";
const ALLOW: &str =
    "mutation($s: ID!, $p: ID!) { allowUnmute(sessionId: $s, participantId: $p, kind: AUDIO) }";
const REMOVE: &str =
    "mutation($s: ID!, $p: ID!) { removeParticipant(sessionId: $s, participantId: $p) }";
const DISMISS: &str =
    "mutation($s: ID!, $p: ID!) { dismissHand(sessionId: $s, participantId: $p) }";
const LOCK: &str = "mutation($s: ID!, $l: Boolean!) { lockSession(sessionId: $s, locked: $l) }";
const RAISE: &str = "mutation($s: ID!) { raiseHand(sessionId: $s) }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_may_raise_a_hand_but_not_moderate_and_the_host_takes_them_on_stage_and_back() {
    let server = TestServer::start(std::path::PathBuf::from("/nonexistent")).await;
    let (host, host_token) = user(&server, "host@example.org", "Hannah Host").await;
    let session = live_session(&host).await.1;
    let host_pid = join(&host, &session).await;
    let (ann, ann_token) = user(&server, "ann@example.org", "Ann").await;
    let ann_pid = join(&ann, &session).await;
    let (bo, _) = user(&server, "bo@example.org", "Bo").await;
    let bo_pid = join(&bo, &session).await;
    let mut host_events = subscribe(&server, &host_token, &session).await;
    let mut ann_events = subscribe(&server, &ann_token, &session).await;

    // A viewer may do none of what moderators do, to anyone.
    for (doc, vars) in [
        (INVITE, s_p(&session, bo_pid)),
        (SEND_BACK, s_p(&session, bo_pid)),
        (MUTE, s_p(&session, bo_pid)),
        (ALLOW, s_p(&session, bo_pid)),
        (REMOVE, s_p(&session, bo_pid)),
        (REMOVE, s_p(&session, host_pid)),
        (DISMISS, s_p(&session, bo_pid)),
        (LOCK, json!({ "s": session, "l": true })),
    ] {
        assert_eq!(ann.error_code(doc, vars).await, "FORBIDDEN", "{doc}");
    }
    // Nor see attendance.
    assert_eq!(
        ann.error_code(
            "query($s: ID!) { attendance(sessionId: $s) { people } }",
            json!({ "s": session })
        )
        .await,
        "FORBIDDEN"
    );

    // Two hands, in order.
    ann.ok(RAISE, json!({ "s": session })).await;
    bo.ok(RAISE, json!({ "s": session })).await;
    let first = host_events.until("HandRaised").await;
    assert_eq!(first["hand"]["participantId"], ann_pid.to_string());
    let second = host_events.until("HandRaised").await;
    assert_eq!(second["hand"]["participantId"], bo_pid.to_string());
    // A later subscriber starts from the queue (its snapshot).
    let sid: i64 = session.parse().unwrap();
    let queue: Vec<i64> = server
        .state()
        .live
        .snapshot(sid)
        .unwrap()
        .hands
        .iter()
        .map(|h| h.participant_id)
        .collect();
    assert_eq!(queue, vec![ann_pid, bo_pid]);

    // Bo's hand is dismissed; Ann is invited.
    host.ok(DISMISS, s_p(&session, bo_pid)).await;
    let lowered = host_events.until("HandLowered").await;
    assert_eq!(lowered["reason"], "DISMISSED");
    assert_eq!(
        host.error_code(DISMISS, s_p(&session, bo_pid)).await,
        "CONFLICT"
    );
    host.ok(INVITE, s_p(&session, ann_pid)).await;
    // Her own lane (the invitation) comes before room events: any order between the two.
    let (mut invited, mut speaker, mut lowered) = (false, false, None);
    let ann_id = ann_pid.to_string();
    while !(invited && speaker && lowered.is_some()) {
        let e = ann_events.next().await;
        match e["__typename"].as_str().unwrap() {
            "StageInvitation" => invited = true,
            "ParticipantRoleChanged" if e["participantId"].as_str() == Some(&ann_id) => {
                assert_eq!(e["role"], "SPEAKER");
                speaker = true;
            }
            "HandLowered" if e["participantId"].as_str() == Some(&ann_id) => {
                lowered = Some(e["reason"].clone());
            }
            _ => {}
        }
    }
    assert_eq!(lowered.unwrap(), "INVITED");
    assert_eq!(
        ann.ok(JOIN, json!({ "s": session })).await["joinSession"]["role"],
        "SPEAKER",
        "a rejoin keeps the stage"
    );
    // A speaker is no moderator either.
    assert_eq!(
        ann.error_code(INVITE, s_p(&session, bo_pid)).await,
        "FORBIDDEN"
    );
    // Only viewers are invited; the host cannot be moderated.
    assert_eq!(
        host.error_code(INVITE, s_p(&session, ann_pid)).await,
        "CONFLICT"
    );
    // Back to the audience.
    host.ok(SEND_BACK, s_p(&session, ann_pid)).await;
    let role = ann_events.until("ParticipantRoleChanged").await;
    assert_eq!(role["role"], "VIEWER");
    // Declining (leaving the stage) works the same way from the invited side.
    host.ok(INVITE, s_p(&session, ann_pid)).await;
    ann.ok(
        "mutation($s: ID!) { leaveStage(sessionId: $s) }",
        json!({ "s": session }),
    )
    .await;
    loop {
        let e = host_events.until("ParticipantRoleChanged").await;
        if e["role"] == "VIEWER" {
            break;
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mute_by_the_host_holds_until_the_host_allows_an_unmute() {
    let server = TestServer::start(std::path::PathBuf::from("/nonexistent")).await;
    let (host, host_token) = user(&server, "host@example.org", "Hannah Host").await;
    let session = live_session(&host).await.1;
    join(&host, &session).await;
    let (ann, _) = user(&server, "ann@example.org", "Ann").await;
    let ann_pid = join(&ann, &session).await;
    host.ok(INVITE, s_p(&session, ann_pid)).await;
    // Ann's microphone, as the SFU would tell it.
    let live = server.state().live.clone();
    let sid: i64 = session.parse().unwrap();
    let peer = PeerId::from_u64(9_001);
    live.attach(sid, ann_pid, peer);
    live.on_sfu_event(SfuEvent::TrackPublished {
        peer,
        track: "mic".into(),
        video: false,
    });
    let track = TrackKey::new(peer, "mic").msid_track();
    let mut events = subscribe(&server, &host_token, &session).await;

    host.ok(MUTE, s_p(&session, ann_pid)).await;
    let muted = events.until("HostMuteChanged").await;
    assert_eq!(muted["locked"], true);
    assert_eq!(muted["kind"], "AUDIO");
    let track_muted = events.until("TrackMuted").await;
    assert_eq!(track_muted["muted"], true);
    let unmute =
        "mutation($s: ID!, $t: ID!) { setTrackMuted(sessionId: $s, trackId: $t, muted: false) }";
    let vars = json!({ "s": session, "t": track });
    assert_eq!(ann.error_code(unmute, vars.clone()).await, "FORBIDDEN");
    // A new subscriber knows it from the snapshot.
    assert_eq!(live.snapshot(sid).unwrap().host_mutes.len(), 1);

    host.ok(ALLOW, s_p(&session, ann_pid)).await;
    assert_eq!(events.until("HostMuteChanged").await["locked"], false);
    // Still muted until Ann unmutes herself.
    assert!(live.snapshot(sid).unwrap().tracks[0].muted);
    ann.ok(unmute, vars).await;
    assert_eq!(events.until("TrackMuted").await["muted"], false);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_participant_cannot_rejoin_and_a_locked_session_admits_no_one_new() {
    let server = TestServer::start(std::path::PathBuf::from("/nonexistent")).await;
    let (host, host_token) = user(&server, "host@example.org", "Hannah Host").await;
    let session = live_session(&host).await.1;
    join(&host, &session).await;
    let (ann, ann_token) = user(&server, "ann@example.org", "Ann").await;
    let ann_pid = join(&ann, &session).await;
    let mut ann_events = subscribe(&server, &ann_token, &session).await;
    let mut host_events = subscribe(&server, &host_token, &session).await;

    host.ok(REMOVE, s_p(&session, ann_pid)).await;
    let removed = ann_events.until("RemovedFromSession").await;
    assert!(removed["reason"].as_str().unwrap().contains("removed"));
    assert_eq!(ann_events.next().await["__typename"], "complete");
    let left = host_events.until("ParticipantLeft").await;
    assert_eq!(left["participantId"], ann_pid.to_string());
    assert_eq!(
        ann.error_code(JOIN, json!({ "s": session })).await,
        "FORBIDDEN"
    );
    assert_eq!(
        ann.error_code(RAISE, json!({ "s": session })).await,
        "FORBIDDEN"
    );

    // Locked: a new viewer is refused, a co-host is not, the lock is told to everyone.
    host.ok(LOCK, json!({ "s": session, "l": true })).await;
    assert_eq!(
        host_events.until("SessionLockChanged").await["locked"],
        true
    );
    let (bo, _) = user(&server, "bo@example.org", "Bo").await;
    assert_eq!(
        bo.error_code(JOIN, json!({ "s": session })).await,
        "FORBIDDEN"
    );
    // Still after everyone left (the lock and the removal are stored).
    host.ok(
        "mutation($s: ID!) { leaveSession(sessionId: $s) }",
        json!({ "s": session }),
    )
    .await;
    assert_eq!(
        bo.error_code(JOIN, json!({ "s": session })).await,
        "FORBIDDEN"
    );
    assert_eq!(
        ann.error_code(JOIN, json!({ "s": session })).await,
        "FORBIDDEN"
    );
    join(&host, &session).await;
    let sid: i64 = session.parse().unwrap();
    assert!(server.state().live.snapshot(sid).unwrap().locked);
    // Opened again: Bo joins; Ann is still out.
    host.ok(LOCK, json!({ "s": session, "l": false })).await;
    join(&bo, &session).await;
    assert_eq!(
        ann.error_code(JOIN, json!({ "s": session })).await,
        "FORBIDDEN"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attendance_lists_every_visit_for_hosts_as_graphql_and_csv() {
    let server = TestServer::start(std::path::PathBuf::from("/nonexistent")).await;
    let (host, _) = user(&server, "host@example.org", "Hannah Host").await;
    let session = live_session(&host).await.1;
    join(&host, &session).await;
    let (ann, _) = user(&server, "ann@example.org", "Ann, \"the\" student").await;
    // Two visits.
    join(&ann, &session).await;
    ann.ok(
        "mutation($s: ID!) { leaveSession(sessionId: $s) }",
        json!({ "s": session }),
    )
    .await;
    join(&ann, &session).await;

    let report = host
        .ok(
            "query($s: ID!) { attendance(sessionId: $s) { people visits { name email role joinedAt leftAt presentSeconds talkSeconds } } }",
            json!({ "s": session }),
        )
        .await["attendance"]
        .clone();
    assert_eq!(report["people"], 2);
    let visits = report["visits"].as_array().unwrap();
    assert_eq!(visits.len(), 3, "{report}");
    let ann_visits: Vec<&Value> = visits
        .iter()
        .filter(|v| v["email"] == "ann@example.org")
        .collect();
    assert_eq!(ann_visits.len(), 2);
    assert!(ann_visits[0]["leftAt"].is_string());
    assert!(ann_visits[1]["leftAt"].is_null(), "still here");

    let csv = host
        .get(&format!("/sessions/{session}/attendance.csv"))
        .await;
    assert_eq!(csv.status(), 200);
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let body = csv.text().await.unwrap();
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.len(), 4, "{body}");
    assert!(lines[0].starts_with("participant_id,user_id,name,email,role"));
    assert!(body.contains("\"Ann, \"\"the\"\" student\""), "{body}");
    // A viewer, and someone signed out, get no report.
    assert_eq!(
        ann.get(&format!("/sessions/{session}/attendance.csv"))
            .await
            .status(),
        403
    );
    assert_eq!(
        Api::new(&server.url)
            .get(&format!("/sessions/{session}/attendance.csv"))
            .await
            .status(),
        401
    );
    // When the session ends, every visit is closed.
    host.ok(
        "mutation($id: ID!) { endSession(id: $id) { id } }",
        json!({ "id": session }),
    )
    .await;
    let report = host
        .ok(
            "query($s: ID!) { attendance(sessionId: $s) { visits { leftAt } } }",
            json!({ "s": session }),
        )
        .await;
    let open = report["attendance"]["visits"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["leftAt"].is_null())
        .count();
    assert_eq!(open, 0, "{report}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announced_screen_share_is_published_as_a_screen_for_everyone() {
    let server = TestServer::start(std::path::PathBuf::from("/nonexistent")).await;
    let (host, host_token) = user(&server, "host@example.org", "Hannah Host").await;
    let session = live_session(&host).await.1;
    let host_pid = join(&host, &session).await;
    let (ann, _) = user(&server, "ann@example.org", "Ann").await;
    join(&ann, &session).await;
    let share = "mutation($s: ID!, $t: [String!]!) { shareScreen(sessionId: $s, trackIds: $t) }";
    // Bad input names the field; a viewer may not share.
    for bad in [
        json!([]),
        json!(["a", "b", "c"]),
        json!(["x".repeat(65)]),
        json!(["a b"]),
    ] {
        let body = host.post(share, json!({ "s": session, "t": bad })).await;
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{body}"
        );
        assert_eq!(
            body["errors"][0]["extensions"]["field"], "trackIds",
            "{body}"
        );
    }
    assert_eq!(
        ann.error_code(share, json!({ "s": session, "t": ["scr"] }))
            .await,
        "FORBIDDEN"
    );
    host.ok(share, json!({ "s": session, "t": ["scr", "scr-sound"] }))
        .await;
    let mut events = subscribe(&server, &host_token, &session).await;
    // The browser's offer then publishes them (as the SFU tells it), next to the camera.
    let live = server.state().live.clone();
    let sid: i64 = session.parse().unwrap();
    let peer = PeerId::from_u64(9_002);
    live.attach(sid, host_pid, peer);
    for (track, video) in [("cam", true), ("scr", true), ("scr-sound", false)] {
        live.on_sfu_event(SfuEvent::TrackPublished {
            peer,
            track: track.into(),
            video,
        });
    }
    let mut sources = Vec::new();
    for _ in 0..3 {
        let published = events.until("TrackPublished").await;
        sources.push((
            published["track"]["id"].as_str().unwrap().to_owned(),
            published["track"]["source"].as_str().unwrap().to_owned(),
        ));
    }
    let id = |t: &str| TrackKey::new(peer, t).msid_track();
    assert_eq!(
        sources,
        vec![
            (id("cam"), "CAMERA".to_owned()),
            (id("scr"), "SCREEN".to_owned()),
            (id("scr-sound"), "SCREEN_AUDIO".to_owned()),
        ]
    );
    server.stop().await;
}
