//! The role matrix: every mutation and subscription, against every kind of caller, with the
//! expected allow or deny. Each case runs on a fresh class, so cases cannot affect each other.
//!
//! Organisation: `CALLERS` are the columns; `cases()` are the rows, each a GraphQL document, the
//! variables it needs from the fixture, and who is allowed. A denied signed-in caller must get
//! FORBIDDEN or NOT_FOUND (never data); an anonymous one UNAUTHENTICATED. On an invite-only class
//! a caller who is not invited must get NOT_FOUND: FORBIDDEN would tell them it exists.

mod support;

use async_graphql::{Request, Variables};
use futures_util::StreamExt;
use gateway::AppState;
use gateway::auth::{Caller, Credential};
use gateway::live::{Command, ParticipantInfo};
use gateway::roles::Role;
use schema::models::{class, class_member, class_role, class_session, participant, user};
use serde_json::{Value, json};

/// The kinds of caller, in the column order of the table.
const CALLERS: [&str; 6] = [
    "host",
    "co-host",
    "speaker",
    "viewer",
    "stranger",
    "anonymous",
];

/// One unlisted class with a scheduled session, one invite-only class (the same roles; the viewer
/// invited) with a live session, and a user of each kind.
struct Fixture {
    class_id: i64,
    session_id: i64,
    private_class_id: i64,
    private_session_id: i64,
    callers: Vec<Caller>,
    /// Ids by kind: host, co-host, speaker, viewer, stranger, and a `target` user with no role.
    ids: std::collections::HashMap<&'static str, i64>,
    target_email: String,
    host_token_id: i64,
    /// Set by [`join_live`] for the live rows: a live session of the unlisted class that the
    /// host, co-host, speaker and viewer have joined, with a chat message, a question (the
    /// viewer's) and an open poll in it.
    live: LiveFixture,
    /// A live session of the unlisted class that host, co-host, speaker, viewer and target have
    /// joined (not the stranger); the target's hand is raised.
    live_session_id: i64,
    /// Participant ids in it by kind.
    pids: std::collections::HashMap<&'static str, i64>,
}

#[derive(Default)]
struct LiveFixture {
    session_id: i64,
    message_id: i64,
    question_id: i64,
    poll_id: i64,
}

async fn fixture(state: &AppState, n: usize, password_hash: &str) -> Fixture {
    let now = schema::now_ms();
    let hash = password_hash.to_owned();
    let (class_id, session_id, private_class_id, private_session_id, ids, live_session_id, pids) =
        state
            .db
            .interact(move |c| {
                let mut ids = std::collections::HashMap::new();
                for kind in ["host", "co-host", "speaker", "viewer", "stranger", "target"] {
                    let email = format!("{kind}-{n}@example.org");
                    let u = user::create(
                        c,
                        &user::NewUser {
                            email: Some(&email),
                            email_verified: false,
                            display_name: kind,
                            password_hash: Some(&hash),
                            created_at: now,
                        },
                    )?;
                    ids.insert(kind, u.id);
                }
                let mut classes = Vec::new();
                // The third (unlisted) holds the live session.
                for visibility in [class::UNLISTED, class::INVITE_ONLY, class::UNLISTED] {
                    let cl = class::create(
                        c,
                        &class::NewClass {
                            owner_id: ids["host"],
                            title: "Matrix",
                            description: "",
                            visibility,
                            created_at: now,
                            updated_at: now,
                        },
                    )?;
                    for (kind, role) in [
                        ("co-host", class_role::CO_HOST),
                        ("speaker", class_role::SPEAKER),
                    ] {
                        class_role::assign(
                            c,
                            &class_role::NewClassRole {
                                class_id: cl.id,
                                user_id: ids[kind],
                                role,
                                created_at: now,
                            },
                        )?;
                    }
                    classes.push(cl);
                }
                let (cl, private) = (&classes[0], &classes[1]);
                class_member::invite(
                    c,
                    &class_member::NewClassMember {
                        class_id: private.id,
                        user_id: ids["viewer"],
                        created_at: now,
                    },
                )?;
                let private_session = class_session::create(
                    c,
                    &class_session::NewClassSession {
                        class_id: private.id,
                        scheduled_start: now,
                        scheduled_end: None,
                        state: class_session::LIVE,
                        created_at: now,
                    },
                )?;
                let s = class_session::create(
                    c,
                    &class_session::NewClassSession {
                        class_id: cl.id,
                        scheduled_start: now,
                        scheduled_end: None,
                        state: "scheduled",
                        created_at: now,
                    },
                )?;
                participant::create(
                    c,
                    &participant::NewParticipant {
                        session_id: s.id,
                        user_id: ids["viewer"],
                        role: "viewer",
                        joined_at: now,
                    },
                )?;
                let live = class_session::create(
                    c,
                    &class_session::NewClassSession {
                        class_id: classes[2].id,
                        scheduled_start: now,
                        scheduled_end: None,
                        state: class_session::LIVE,
                        created_at: now,
                    },
                )?;
                let mut pids = std::collections::HashMap::new();
                for (kind, role) in [
                    ("host", "host"),
                    ("co-host", "co_host"),
                    ("speaker", "speaker"),
                    ("viewer", "viewer"),
                    ("target", "viewer"),
                ] {
                    let p = participant::create(
                        c,
                        &participant::NewParticipant {
                            session_id: live.id,
                            user_id: ids[kind],
                            role,
                            joined_at: now,
                        },
                    )?;
                    pids.insert(kind, p.id);
                }
                Ok((
                    cl.id,
                    s.id,
                    private.id,
                    private_session.id,
                    ids,
                    live.id,
                    pids,
                ))
            })
            .await
            .unwrap();
    for (kind, role) in [
        ("host", Role::Host),
        ("co-host", Role::CoHost),
        ("speaker", Role::Speaker),
        ("viewer", Role::Viewer),
        ("target", Role::Viewer),
    ] {
        state
            .live
            .join(
                live_session_id,
                ParticipantInfo {
                    id: pids[kind],
                    user_id: ids[kind],
                    name: kind.to_owned(),
                    role,
                    connected: false,
                },
            )
            .unwrap();
    }
    state
        .live
        .command(
            live_session_id,
            Command::RaiseHand {
                participant_id: pids["target"],
                at_ms: now,
            },
        )
        .unwrap();
    let mut callers = Vec::new();
    for kind in &CALLERS[..5] {
        let (session, _) = gateway::graphql::account::start_session(state, ids[kind])
            .await
            .unwrap();
        let u = state
            .db
            .interact({
                let id = ids[kind];
                move |c| user::find(c, id)
            })
            .await
            .unwrap()
            .unwrap();
        callers.push(Caller::User {
            user: Box::new(u),
            credential: Credential::Session {
                session_id: session,
            },
        });
    }
    callers.push(Caller::Anonymous);
    let host_id = ids["host"];
    let token = state
        .db
        .interact(move |c| {
            schema::models::api_token::create(
                c,
                &schema::models::api_token::NewApiToken {
                    user_id: host_id,
                    name: "t",
                    token_hash: &format!("h{n}"),
                    scopes: "read write",
                    created_at: now,
                },
            )
        })
        .await
        .unwrap();
    Fixture {
        class_id,
        session_id,
        private_class_id,
        private_session_id,
        callers,
        ids,
        target_email: format!("target-{n}@example.org"),
        host_token_id: token.id,
        live: LiveFixture::default(),
        live_session_id,
        pids,
    }
}

/// Makes the live part of the fixture (see [`Fixture::live`]).
async fn join_live(state: &AppState, f: &mut Fixture) {
    use schema::models::{chat_message, poll, question};
    let now = schema::now_ms();
    let (class_id, ids) = (f.class_id, f.ids.clone());
    let (sid, members, message, question, poll) = state
        .db
        .interact(move |c| {
            let s = class_session::create(
                c,
                &class_session::NewClassSession {
                    class_id,
                    scheduled_start: now,
                    scheduled_end: None,
                    state: class_session::LIVE,
                    created_at: now,
                },
            )?;
            let mut members = Vec::new();
            for (kind, role) in [
                ("host", gateway::roles::Role::Host),
                ("co-host", gateway::roles::Role::CoHost),
                ("speaker", gateway::roles::Role::Speaker),
                ("viewer", gateway::roles::Role::Viewer),
            ] {
                let p = participant::create(
                    c,
                    &participant::NewParticipant {
                        session_id: s.id,
                        user_id: ids[kind],
                        role: "viewer",
                        joined_at: now,
                    },
                )?;
                members.push((p.id, ids[kind], kind, role));
            }
            let m = chat_message::create(
                c,
                &chat_message::NewChatMessage {
                    session_id: s.id,
                    user_id: ids["viewer"],
                    body: "hello",
                    created_at: now,
                },
            )?;
            let q = question::create(
                c,
                &question::NewQuestion {
                    session_id: s.id,
                    user_id: ids["viewer"],
                    body: "why?",
                    state: question::OPEN,
                    created_at: now,
                    anonymous: false,
                },
            )?;
            let p = poll::create(
                c,
                &poll::NewPoll {
                    session_id: s.id,
                    created_by: ids["host"],
                    question: "which?",
                    options: "[\"a\",\"b\"]",
                    state: poll::OPEN,
                    created_at: now,
                    multiple_choice: false,
                },
            )?;
            Ok((s.id, members, m.id, q.id, p.id))
        })
        .await
        .unwrap();
    for (id, user_id, kind, role) in members {
        state
            .live
            .join(
                sid,
                gateway::live::ParticipantInfo {
                    id,
                    user_id,
                    name: kind.to_owned(),
                    role,
                    connected: false,
                },
            )
            .expect("joins the live session");
    }
    f.live = LiveFixture {
        session_id: sid,
        message_id: message,
        question_id: question,
        poll_id: poll,
    };
}

/// A row: name, document, variables from the fixture, and who may (host, co-host, speaker, viewer,
/// stranger, anonymous).
struct Case {
    name: &'static str,
    document: &'static str,
    variables: fn(&Fixture, usize) -> Value,
    allowed: [bool; 6],
}

const Y: bool = true;
const N: bool = false;

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "createClass",
            document: "mutation { createClass(input: { title: \"New\" }) { id } }",
            variables: |_, _| json!({}),
            allowed: [Y, Y, Y, Y, Y, N],
        },
        Case {
            name: "updateClass",
            document: "mutation($c: ID!) { updateClass(id: $c, input: { title: \"Renamed\" }) { id } }",
            variables: |f, _| json!({ "c": f.class_id.to_string() }),
            allowed: [Y, N, N, N, N, N],
        },
        Case {
            name: "deleteClass",
            document: "mutation($c: ID!) { deleteClass(id: $c) }",
            variables: |f, _| json!({ "c": f.class_id.to_string() }),
            allowed: [Y, N, N, N, N, N],
        },
        Case {
            name: "scheduleSession",
            document: "mutation($c: ID!) { scheduleSession(input: { classId: $c, start: \"2027-01-01T09:00:00Z\" }) { id } }",
            variables: |f, _| json!({ "c": f.class_id.to_string() }),
            allowed: [Y, N, N, N, N, N],
        },
        Case {
            name: "startSession",
            document: "mutation($s: ID!) { startSession(id: $s) { id } }",
            variables: |f, _| json!({ "s": f.session_id.to_string() }),
            allowed: [Y, N, N, N, N, N],
        },
        Case {
            name: "endSession",
            document: "mutation($s: ID!) { endSession(id: $s) { id } }",
            variables: |f, _| json!({ "s": f.session_id.to_string() }),
            allowed: [Y, N, N, N, N, N],
        },
        Case {
            name: "assignRole(CO_HOST)",
            document: "mutation($c: ID!, $u: ID!) { assignRole(classId: $c, userId: $u, role: CO_HOST) }",
            variables: |f, _| json!({ "c": f.class_id.to_string(), "u": f.ids["target"].to_string() }),
            allowed: [Y, N, N, N, N, N],
        },
        Case {
            name: "assignRole(SPEAKER)",
            document: "mutation($c: ID!, $u: ID!) { assignRole(classId: $c, userId: $u, role: SPEAKER) }",
            variables: |f, _| json!({ "c": f.class_id.to_string(), "u": f.ids["target"].to_string() }),
            allowed: [Y, Y, N, N, N, N],
        },
        Case {
            name: "assignRole(SPEAKER) to a co-host",
            document: "mutation($c: ID!, $u: ID!) { assignRole(classId: $c, userId: $u, role: SPEAKER) }",
            variables: |f, _| json!({ "c": f.class_id.to_string(), "u": f.ids["co-host"].to_string() }),
            allowed: [Y, N, N, N, N, N],
        },
        Case {
            name: "removeRole(speaker)",
            document: "mutation($c: ID!, $u: ID!) { removeRole(classId: $c, userId: $u) }",
            variables: |f, _| json!({ "c": f.class_id.to_string(), "u": f.ids["speaker"].to_string() }),
            allowed: [Y, Y, N, N, N, N],
        },
        Case {
            name: "removeRole(co-host)",
            document: "mutation($c: ID!, $u: ID!) { removeRole(classId: $c, userId: $u) }",
            variables: |f, _| json!({ "c": f.class_id.to_string(), "u": f.ids["co-host"].to_string() }),
            allowed: [Y, N, N, N, N, N],
        },
        Case {
            name: "createApiToken",
            document: "mutation { createApiToken(input: { name: \"x\", scopes: [READ] }) { secret } }",
            variables: |_, _| json!({}),
            allowed: [Y, Y, Y, Y, Y, N],
        },
        Case {
            name: "revokeApiToken(the host's)",
            document: "mutation($t: ID!) { revokeApiToken(id: $t) }",
            variables: |f, _| json!({ "t": f.host_token_id.to_string() }),
            allowed: [Y, N, N, N, N, N],
        },
        Case {
            name: "signOut",
            document: "mutation { signOut }",
            variables: |_, _| json!({}),
            allowed: [Y, Y, Y, Y, Y, N],
        },
        Case {
            name: "signOutEverywhere",
            document: "mutation { signOutEverywhere }",
            variables: |_, _| json!({}),
            allowed: [Y, Y, Y, Y, Y, N],
        },
        Case {
            name: "signUp",
            document: "mutation($e: String!) { signUp(input: { email: $e, password: \"long enough pw\", displayName: \"N\" }) { id } }",
            variables: |f, col| json!({ "e": format!("new-{col}-{}", f.target_email) }),
            allowed: [Y, Y, Y, Y, Y, Y],
        },
        Case {
            name: "signIn",
            document: "mutation($e: String!) { signIn(input: { email: $e, password: \"matrix password\" }) { id } }",
            variables: |f, _| json!({ "e": f.target_email }),
            allowed: [Y, Y, Y, Y, Y, Y],
        },
        Case {
            name: "class (query)",
            document: "query($c: ID!) { class(id: $c) { title } }",
            variables: |f, _| json!({ "c": f.class_id.to_string() }),
            allowed: [Y, Y, Y, Y, Y, N],
        },
        Case {
            name: "class.roles (query)",
            document: "query($c: ID!) { class(id: $c) { roles { role } } }",
            variables: |f, _| json!({ "c": f.class_id.to_string() }),
            allowed: [Y, Y, N, N, N, N],
        },
        Case {
            name: "sessionStateChanged (subscription)",
            document: "subscription($s: ID!) { sessionStateChanged(sessionId: $s) { state } }",
            variables: |f, _| json!({ "s": f.session_id.to_string() }),
            allowed: [Y, Y, Y, Y, Y, N],
        },
        Case {
            name: "updateClass(visibility)",
            document: "mutation($c: ID!) { updateClass(id: $c, input: { visibility: PUBLIC }) { id } }",
            variables: |f, _| json!({ "c": f.class_id.to_string() }),
            allowed: [Y, N, N, N, N, N],
        },
        Case {
            name: "inviteToClass",
            document: "mutation($c: ID!, $e: String!) { inviteToClass(classId: $c, email: $e) }",
            variables: |f, _| json!({ "c": f.class_id.to_string(), "e": f.target_email }),
            allowed: [Y, Y, N, N, N, N],
        },
        Case {
            name: "class.members (query)",
            document: "query($c: ID!) { class(id: $c) { members { id } } }",
            variables: |f, _| json!({ "c": f.class_id.to_string() }),
            allowed: [Y, Y, N, N, N, N],
        },
        // The live session: the stranger has not joined it.
        Case {
            name: "raiseHand",
            document: "mutation($s: ID!) { raiseHand(sessionId: $s) }",
            variables: |f, _| json!({ "s": f.live_session_id.to_string() }),
            allowed: [Y, Y, Y, Y, N, N],
        },
        Case {
            name: "lowerHand",
            document: "mutation($s: ID!) { lowerHand(sessionId: $s) }",
            variables: |f, _| json!({ "s": f.live_session_id.to_string() }),
            allowed: [Y, Y, Y, Y, N, N],
        },
        Case {
            name: "dismissHand(target)",
            document: "mutation($s: ID!, $p: ID!) { dismissHand(sessionId: $s, participantId: $p) }",
            variables: |f, _| json!({ "s": f.live_session_id.to_string(), "p": f.pids["target"].to_string() }),
            allowed: [Y, Y, N, N, N, N],
        },
        Case {
            name: "inviteToStage(target)",
            document: "mutation($s: ID!, $p: ID!) { inviteToStage(sessionId: $s, participantId: $p) }",
            variables: |f, _| json!({ "s": f.live_session_id.to_string(), "p": f.pids["target"].to_string() }),
            allowed: [Y, Y, N, N, N, N],
        },
        Case {
            name: "sendToAudience(speaker)",
            document: "mutation($s: ID!, $p: ID!) { sendToAudience(sessionId: $s, participantId: $p) }",
            variables: |f, _| json!({ "s": f.live_session_id.to_string(), "p": f.pids["speaker"].to_string() }),
            allowed: [Y, Y, N, N, N, N],
        },
        Case {
            name: "shareScreen",
            document: "mutation($s: ID!) { shareScreen(sessionId: $s, trackIds: [\"screen-video\"]) }",
            variables: |f, _| json!({ "s": f.live_session_id.to_string() }),
            allowed: [Y, Y, Y, N, N, N],
        },
        Case {
            name: "leaveStage",
            document: "mutation($s: ID!) { leaveStage(sessionId: $s) }",
            variables: |f, _| json!({ "s": f.live_session_id.to_string() }),
            allowed: [N, N, Y, N, N, N],
        },
        Case {
            name: "muteParticipant(target)",
            document: "mutation($s: ID!, $p: ID!) { muteParticipant(sessionId: $s, participantId: $p, kind: AUDIO) }",
            variables: |f, _| json!({ "s": f.live_session_id.to_string(), "p": f.pids["target"].to_string() }),
            allowed: [Y, Y, N, N, N, N],
        },
        Case {
            name: "muteParticipant(host)",
            document: "mutation($s: ID!, $p: ID!) { muteParticipant(sessionId: $s, participantId: $p, kind: VIDEO) }",
            variables: |f, _| json!({ "s": f.live_session_id.to_string(), "p": f.pids["host"].to_string() }),
            allowed: [N, N, N, N, N, N],
        },
        Case {
            name: "allowUnmute(target)",
            document: "mutation($s: ID!, $p: ID!) { allowUnmute(sessionId: $s, participantId: $p, kind: AUDIO) }",
            variables: |f, _| json!({ "s": f.live_session_id.to_string(), "p": f.pids["target"].to_string() }),
            allowed: [Y, Y, N, N, N, N],
        },
        Case {
            name: "removeParticipant(target)",
            document: "mutation($s: ID!, $p: ID!) { removeParticipant(sessionId: $s, participantId: $p) }",
            variables: |f, _| json!({ "s": f.live_session_id.to_string(), "p": f.pids["target"].to_string() }),
            allowed: [Y, Y, N, N, N, N],
        },
        Case {
            name: "removeParticipant(co-host)",
            document: "mutation($s: ID!, $p: ID!) { removeParticipant(sessionId: $s, participantId: $p) }",
            variables: |f, _| json!({ "s": f.live_session_id.to_string(), "p": f.pids["co-host"].to_string() }),
            allowed: [Y, N, N, N, N, N],
        },
        Case {
            name: "lockSession",
            document: "mutation($s: ID!) { lockSession(sessionId: $s, locked: true) }",
            variables: |f, _| json!({ "s": f.live_session_id.to_string() }),
            allowed: [Y, Y, N, N, N, N],
        },
        Case {
            name: "startRecording",
            document: "mutation($s: ID!) { startRecording(sessionId: $s) { id } }",
            variables: |f, _| json!({ "s": f.live_session_id.to_string() }),
            allowed: [Y, N, N, N, N, N],
        },
        Case {
            name: "classRecordings (query)",
            document: "query($c: ID!) { classRecordings(classId: $c) { id } }",
            variables: |f, _| json!({ "c": f.class_id.to_string() }),
            allowed: [Y, Y, Y, Y, Y, N],
        },
        Case {
            name: "attendance (query)",
            document: "query($s: ID!) { attendance(sessionId: $s) { people } }",
            variables: |f, _| json!({ "s": f.live_session_id.to_string() }),
            allowed: [Y, Y, N, N, N, N],
        },
    ]
}

/// Rows on a live session that the host, co-host, speaker and viewer have joined (the stranger
/// has not: FORBIDDEN, join first): chat, Q&A and polls.
fn live_cases() -> Vec<Case> {
    vec![
        Case {
            name: "sendChatMessage",
            document: "mutation($s: ID!) { sendChatMessage(sessionId: $s, body: \"hi\") { id } }",
            variables: |f, _| json!({ "s": f.live.session_id.to_string() }),
            allowed: [Y, Y, Y, Y, N, N],
        },
        Case {
            name: "chatMessages (query)",
            document: "query($s: ID!) { chatMessages(sessionId: $s) { messages { id } } }",
            variables: |f, _| json!({ "s": f.live.session_id.to_string() }),
            allowed: [Y, Y, Y, Y, N, N],
        },
        Case {
            name: "deleteChatMessage",
            document: "mutation($s: ID!, $m: ID!) { deleteChatMessage(sessionId: $s, messageId: $m) }",
            variables: |f, _| json!({ "s": f.live.session_id.to_string(), "m": f.live.message_id.to_string() }),
            allowed: [Y, Y, N, N, N, N],
        },
        Case {
            name: "askQuestion",
            document: "mutation($s: ID!) { askQuestion(sessionId: $s, body: \"how?\", anonymous: true) { id } }",
            variables: |f, _| json!({ "s": f.live.session_id.to_string() }),
            allowed: [Y, Y, Y, Y, N, N],
        },
        Case {
            name: "questions (query)",
            document: "query($s: ID!) { questions(sessionId: $s) { id votes } }",
            variables: |f, _| json!({ "s": f.live.session_id.to_string() }),
            allowed: [Y, Y, Y, Y, N, N],
        },
        Case {
            name: "upvoteQuestion",
            document: "mutation($s: ID!, $q: ID!) { upvoteQuestion(sessionId: $s, questionId: $q) { votes } }",
            variables: |f, _| json!({ "s": f.live.session_id.to_string(), "q": f.live.question_id.to_string() }),
            allowed: [Y, Y, Y, Y, N, N],
        },
        Case {
            name: "withdrawUpvote",
            document: "mutation($s: ID!, $q: ID!) { withdrawUpvote(sessionId: $s, questionId: $q) { votes } }",
            variables: |f, _| json!({ "s": f.live.session_id.to_string(), "q": f.live.question_id.to_string() }),
            allowed: [Y, Y, Y, Y, N, N],
        },
        Case {
            name: "answerQuestion",
            document: "mutation($s: ID!, $q: ID!) { answerQuestion(sessionId: $s, questionId: $q, answer: \"because\") { state } }",
            variables: |f, _| json!({ "s": f.live.session_id.to_string(), "q": f.live.question_id.to_string() }),
            allowed: [Y, Y, N, N, N, N],
        },
        Case {
            name: "answerQuestion (live)",
            document: "mutation($s: ID!, $q: ID!) { answerQuestion(sessionId: $s, questionId: $q) { answeredLive } }",
            variables: |f, _| json!({ "s": f.live.session_id.to_string(), "q": f.live.question_id.to_string() }),
            allowed: [Y, Y, N, N, N, N],
        },
        Case {
            name: "dismissQuestion",
            document: "mutation($s: ID!, $q: ID!) { dismissQuestion(sessionId: $s, questionId: $q) { state } }",
            variables: |f, _| json!({ "s": f.live.session_id.to_string(), "q": f.live.question_id.to_string() }),
            allowed: [Y, Y, N, N, N, N],
        },
        Case {
            name: "reopenQuestion",
            document: "mutation($s: ID!, $q: ID!) { reopenQuestion(sessionId: $s, questionId: $q) { state } }",
            variables: |f, _| json!({ "s": f.live.session_id.to_string(), "q": f.live.question_id.to_string() }),
            allowed: [Y, Y, N, N, N, N],
        },
        Case {
            name: "createPoll",
            document: "mutation($s: ID!) { createPoll(sessionId: $s, input: { question: \"q\", options: [\"x\", \"y\"] }) { id } }",
            variables: |f, _| json!({ "s": f.live.session_id.to_string() }),
            allowed: [Y, Y, N, N, N, N],
        },
        Case {
            name: "polls (query)",
            document: "query($s: ID!) { polls(sessionId: $s) { id } }",
            variables: |f, _| json!({ "s": f.live.session_id.to_string() }),
            allowed: [Y, Y, Y, Y, N, N],
        },
        Case {
            name: "votePoll",
            document: "mutation($s: ID!, $p: ID!) { votePoll(sessionId: $s, pollId: $p, options: [1]) { voted } }",
            variables: |f, _| json!({ "s": f.live.session_id.to_string(), "p": f.live.poll_id.to_string() }),
            allowed: [Y, Y, Y, Y, N, N],
        },
        Case {
            name: "closePoll",
            document: "mutation($s: ID!, $p: ID!) { closePoll(sessionId: $s, pollId: $p) { open } }",
            variables: |f, _| json!({ "s": f.live.session_id.to_string(), "p": f.live.poll_id.to_string() }),
            allowed: [Y, Y, N, N, N, N],
        },
        Case {
            name: "sharePollResults",
            document: "mutation($s: ID!, $p: ID!) { sharePollResults(sessionId: $s, pollId: $p) { resultsShared } }",
            variables: |f, _| json!({ "s": f.live.session_id.to_string(), "p": f.live.poll_id.to_string() }),
            allowed: [Y, Y, N, N, N, N],
        },
    ]
}

/// Rows on the invite-only class, where the viewer is invited and the stranger is not: the
/// stranger must get NOT_FOUND (never FORBIDDEN, which would tell the class exists).
fn invite_only_cases() -> Vec<Case> {
    vec![
        Case {
            name: "class (invite-only)",
            document: "query($c: ID!) { class(id: $c) { title } }",
            variables: |f, _| json!({ "c": f.private_class_id.to_string() }),
            allowed: [Y, Y, Y, Y, N, N],
        },
        Case {
            name: "session (invite-only)",
            document: "query($s: ID!) { session(id: $s) { state } }",
            variables: |f, _| json!({ "s": f.private_session_id.to_string() }),
            allowed: [Y, Y, Y, Y, N, N],
        },
        Case {
            name: "recordings (invite-only)",
            document: "query($s: ID!) { recordings(sessionId: $s) { id } }",
            variables: |f, _| json!({ "s": f.private_session_id.to_string() }),
            allowed: [Y, Y, Y, Y, N, N],
        },
        Case {
            name: "sessionStateChanged (invite-only)",
            document: "subscription($s: ID!) { sessionStateChanged(sessionId: $s) { state } }",
            variables: |f, _| json!({ "s": f.private_session_id.to_string() }),
            allowed: [Y, Y, Y, Y, N, N],
        },
        Case {
            name: "joinSession (invite-only)",
            document: "mutation($s: ID!) { joinSession(sessionId: $s) { role } }",
            variables: |f, _| json!({ "s": f.private_session_id.to_string() }),
            allowed: [Y, Y, Y, Y, N, N],
        },
        Case {
            name: "scheduleSession (invite-only)",
            document: "mutation($c: ID!) { scheduleSession(input: { classId: $c, start: \"2027-01-01T09:00:00Z\" }) { id } }",
            variables: |f, _| json!({ "c": f.private_class_id.to_string() }),
            allowed: [Y, N, N, N, N, N],
        },
        Case {
            name: "inviteToClass (invite-only)",
            document: "mutation($c: ID!, $e: String!) { inviteToClass(classId: $c, email: $e) }",
            variables: |f, _| json!({ "c": f.private_class_id.to_string(), "e": f.target_email }),
            allowed: [Y, Y, N, N, N, N],
        },
        Case {
            name: "removeFromClass (invite-only)",
            document: "mutation($c: ID!, $u: ID!) { removeFromClass(classId: $c, userId: $u) }",
            variables: |f, _| json!({ "c": f.private_class_id.to_string(), "u": f.ids["viewer"].to_string() }),
            allowed: [Y, Y, N, N, N, N],
        },
        Case {
            name: "classRecordings (invite-only)",
            document: "query($c: ID!) { classRecordings(classId: $c) { id } }",
            variables: |f, _| json!({ "c": f.private_class_id.to_string() }),
            allowed: [Y, Y, Y, Y, N, N],
        },
        Case {
            name: "attendance (invite-only)",
            document: "query($s: ID!) { attendance(sessionId: $s) { people } }",
            variables: |f, _| json!({ "s": f.private_session_id.to_string() }),
            allowed: [Y, Y, N, N, N, N],
        },
        Case {
            name: "class.members (invite-only)",
            document: "query($c: ID!) { class(id: $c) { members { id } } }",
            variables: |f, _| json!({ "c": f.private_class_id.to_string() }),
            allowed: [Y, Y, N, N, N, N],
        },
    ]
}

/// Runs the document as `caller`; returns the first answer (subscriptions: the first event).
async fn run(
    state: &AppState,
    caller: Caller,
    document: &str,
    variables: Value,
) -> async_graphql::Response {
    let request = Request::new(document)
        .variables(Variables::from_json(variables))
        .data(state.clone())
        .data(caller);
    if document.starts_with("subscription") {
        let mut stream = state.api.execute_stream(request);
        stream
            .next()
            .await
            .expect("a subscription answers at once: data or an error")
    } else {
        state.api.execute(request).await
    }
}

#[tokio::test]
async fn every_operation_against_every_caller() {
    let data = tempfile::tempdir().unwrap();
    let mut config = support::test_config(data.path(), data.path().join("static"));
    // The matrix signs in many times; the limits are tested elsewhere.
    config.auth.sign_in_per_account_per_minute = 1000;
    config.auth.sign_in_per_account_all_ips_per_minute = 1000;
    let state = gateway::build_state(config).await.unwrap();
    let hash = gateway::auth::password::hash("matrix password".into())
        .await
        .unwrap();

    let mut failures = Vec::new();
    let mut n = 0;
    let rows = cases()
        .into_iter()
        .map(|c| (c, false, false))
        .chain(invite_only_cases().into_iter().map(|c| (c, true, false)))
        .chain(live_cases().into_iter().map(|c| (c, false, true)));
    for (case, invite_only, live) in rows {
        for (col, kind) in CALLERS.iter().enumerate() {
            n += 1;
            let mut f = fixture(&state, n, &hash).await;
            if live {
                join_live(&state, &mut f).await;
            }
            let variables = (case.variables)(&f, col);
            let response = run(&state, f.callers[col].clone(), case.document, variables).await;
            let code = response
                .errors
                .first()
                .and_then(|e| e.extensions.as_ref())
                .and_then(|x| x.get("code"))
                .map(|c| c.to_string());
            let outcome_ok = match (case.allowed[col], code.as_deref()) {
                (true, None) => true,
                (false, Some("\"UNAUTHENTICATED\"")) => *kind == "anonymous",
                (false, Some("\"NOT_FOUND\"")) => *kind != "anonymous",
                (false, Some("\"FORBIDDEN\"")) => {
                    *kind != "anonymous" && !(invite_only && *kind == "stranger")
                }
                _ => false,
            };
            if !outcome_ok {
                failures.push(format!(
                    "{} as {kind}: expected {}, got {}",
                    case.name,
                    if case.allowed[col] { "allow" } else { "deny" },
                    code.unwrap_or_else(|| "success".into())
                ));
            }
        }
    }
    state.sfu.shutdown();
    assert!(
        failures.is_empty(),
        "role matrix mismatches:\n{}",
        failures.join("\n")
    );
}
