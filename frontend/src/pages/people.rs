//! The People panel of the classroom: who is here (with role badges), the queue of raised hands
//! with its count, moderation actions for hosts and co-hosts, the raise-hand button, the
//! invitation to stage with accept / decline, and "muted by the host".
//!
//! [`Moderation`] is what the room's events say about hands, mutes by the host, the lock, an
//! invitation and the recording in progress, kept by a pure reducer ([`Moderation::apply`])
//! tested without a browser. The panel only shows what the caller's role may do; the server
//! checks every action again.

use leptos::prelude::*;

use crate::api;
use crate::pages::classes::role_label;

/// Someone in the room, as the panel shows them.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub role: String,
}

/// Hands, mutes by the host, the lock, a pending invitation and the recording in progress, from
/// the room's events.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Moderation {
    /// Raised hands (participant, raised at), oldest first.
    pub hands: Vec<(String, String)>,
    /// Kinds muted by a host or co-host: (participant, video).
    pub host_mutes: Vec<(String, bool)>,
    /// No one new may join.
    pub locked: bool,
    /// This page's participant was invited to stage and has not answered yet.
    pub invited: bool,
    /// This page's participant was allowed to unmute (a note shown until they do).
    pub allowed_to_unmute: bool,
    /// The id of the recording of the session in progress (state `RECORDING`), if one is.
    pub recording: Option<String>,
}

fn text(v: &serde_json::Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

impl Moderation {
    /// Applies one `sessionEvents` item (others are ignored). `me` is this page's participant.
    pub fn apply(&mut self, me: &str, e: &serde_json::Value) {
        match e["__typename"].as_str().unwrap_or_default() {
            "SessionSnapshot" => {
                self.hands = e["hands"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|h| (text(&h["participantId"]), text(&h["raisedAt"])))
                            .collect()
                    })
                    .unwrap_or_default();
                self.host_mutes = e["hostMutes"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|m| (text(&m["participantId"]), m["kind"] == "VIDEO"))
                            .collect()
                    })
                    .unwrap_or_default();
                self.locked = e["locked"].as_bool().unwrap_or(false);
                self.recording = None;
                self.recording_changed(&e["recording"]);
            }
            "HandRaised" => {
                let id = text(&e["hand"]["participantId"]);
                if !self.hands.iter().any(|(p, _)| *p == id) {
                    self.hands.push((id, text(&e["hand"]["raisedAt"])));
                }
            }
            "HandLowered" => {
                let id = text(&e["participantId"]);
                self.hands.retain(|(p, _)| *p != id);
            }
            "ParticipantLeft" => {
                let id = text(&e["participantId"]);
                self.hands.retain(|(p, _)| *p != id);
                self.host_mutes.retain(|(p, _)| *p != id);
            }
            "HostMuteChanged" => {
                let id = text(&e["participantId"]);
                let video = e["kind"] == "VIDEO";
                self.host_mutes.retain(|m| *m != (id.clone(), video));
                if e["locked"].as_bool().unwrap_or(false) {
                    self.host_mutes.push((id.clone(), video));
                    if id == me {
                        self.allowed_to_unmute = false;
                    }
                } else if id == me {
                    self.allowed_to_unmute = true;
                }
            }
            "SessionLockChanged" => self.locked = e["locked"].as_bool().unwrap_or(false),
            "RecordingChanged" => self.recording_changed(&e["recording"]),
            "StageInvitation" => self.invited = true,
            // Sent back (or declined): no invitation stands.
            "ParticipantRoleChanged"
                if text(&e["participantId"]) == me && e["role"] != "SPEAKER" =>
            {
                self.invited = false;
            }
            _ => {}
        }
    }

    /// Takes a `Recording { id state }` (an event's, or a record mutation's answer): recording
    /// while its state is `RECORDING`, not once that one leaves it. `null` changes nothing.
    pub fn recording_changed(&mut self, r: &serde_json::Value) {
        let id = text(&r["id"]);
        if id.is_empty() {
            return;
        }
        if r["state"] == "RECORDING" {
            self.recording = Some(id);
        } else if self.recording.as_deref() == Some(id.as_str()) {
            self.recording = None;
        }
    }

    /// Whether a kind of someone's tracks is muted by a host or co-host.
    pub fn host_muted(&self, participant: &str, video: bool) -> bool {
        self.host_mutes
            .iter()
            .any(|(p, v)| p == participant && *v == video)
    }

    pub fn hand_raised(&self, participant: &str) -> bool {
        self.hands.iter().any(|(p, _)| p == participant)
    }
}

/// What a host or co-host may do to someone of `target` role (as the server decides).
pub fn may_moderate(my_role: &str, target_role: &str) -> bool {
    fn rank(r: &str) -> u8 {
        match r {
            "HOST" => 3,
            "CO_HOST" => 2,
            "SPEAKER" => 1,
            _ => 0,
        }
    }
    matches!(my_role, "HOST" | "CO_HOST") && rank(my_role) > rank(target_role)
}

/// Runs a moderation mutation on `participant`; a refusal shows in `notice`.
fn act(
    doc: &'static str,
    session: String,
    participant: String,
    extra: Option<(&'static str, serde_json::Value)>,
    notice: RwSignal<Option<String>>,
) {
    leptos::task::spawn_local(async move {
        let mut vars = serde_json::json!({ "s": session, "p": participant });
        if let Some((k, v)) = extra {
            vars[k] = v;
        }
        if let Err(e) = api::graphql(doc, vars).await {
            notice.set(Some(e.message));
        }
    });
}

/// The panel. `me` is (participant id, role); `on_accept_stage` turns on camera and microphone
/// after an invitation is accepted.
#[component]
pub fn PeoplePanel(
    session_id: String,
    me: RwSignal<Option<(String, String)>>,
    members: Signal<Vec<Member>>,
    moderation: RwSignal<Moderation>,
    class_id: RwSignal<Option<String>>,
    notice: RwSignal<Option<String>>,
    on_accept_stage: Callback<()>,
) -> impl IntoView {
    let sid = StoredValue::new(session_id);
    let my_id = move || me.get().map(|m| m.0).unwrap_or_default();
    let my_role = move || me.get().map(|m| m.1).unwrap_or_default();
    let moderator = move || matches!(my_role().as_str(), "HOST" | "CO_HOST");
    let name_of = move |id: &str| {
        members
            .get()
            .into_iter()
            .find(|m| m.id == id)
            .map(|m| m.name)
            .unwrap_or_else(|| "Someone".into())
    };
    let hand_count = move || moderation.with(|m| m.hands.len());
    let my_hand = move || moderation.with(|m| m.hand_raised(&my_id()));
    let toggle_hand = move |_| {
        let raised = my_hand();
        leptos::task::spawn_local(async move {
            let doc = if raised {
                "mutation($s: ID!) { lowerHand(sessionId: $s) }"
            } else {
                "mutation($s: ID!) { raiseHand(sessionId: $s) }"
            };
            if let Err(e) = api::graphql(doc, serde_json::json!({ "s": sid.get_value() })).await {
                notice.set(Some(e.message));
            }
        });
    };
    let accept = move |_| {
        moderation.update(|m| m.invited = false);
        on_accept_stage.run(());
    };
    let decline = move |_| {
        moderation.update(|m| m.invited = false);
        leptos::task::spawn_local(async move {
            if let Err(e) = api::graphql(
                "mutation($s: ID!) { leaveStage(sessionId: $s) }",
                serde_json::json!({ "s": sid.get_value() }),
            )
            .await
            {
                notice.set(Some(e.message));
            }
        });
    };
    let leave_stage = move |_| {
        leptos::task::spawn_local(async move {
            if let Err(e) = api::graphql(
                "mutation($s: ID!) { leaveStage(sessionId: $s) }",
                serde_json::json!({ "s": sid.get_value() }),
            )
            .await
            {
                notice.set(Some(e.message));
            }
        });
    };
    let toggle_lock = move |_| {
        let locked = !moderation.with_untracked(|m| m.locked);
        leptos::task::spawn_local(async move {
            if let Err(e) = api::graphql(
                "mutation($s: ID!, $l: Boolean!) { lockSession(sessionId: $s, locked: $l) }",
                serde_json::json!({ "s": sid.get_value(), "l": locked }),
            )
            .await
            {
                notice.set(Some(e.message));
            }
        });
    };
    let sorted = move || {
        let mut list = members.get();
        let rank = |r: &str| match r {
            "HOST" => 0,
            "CO_HOST" => 1,
            "SPEAKER" => 2,
            _ => 3,
        };
        list.sort_by(|a, b| (rank(&a.role), &a.name).cmp(&(rank(&b.role), &b.name)));
        list
    };
    let confirm_remove = RwSignal::new(None::<String>);

    view! {
        <aside class="people-panel card" data-testid="people-panel" aria-label="People">
            <Show when=move || moderation.with(|m| m.invited)>
                <div class="invitation" role="alertdialog" data-testid="stage-invitation">
                    <strong>"You are invited on stage"</strong>
                    <p class="muted">"The host would like you to speak. Turn on your camera and microphone to join the stage."</p>
                    <div class="actions">
                        <button class="button" data-testid="accept-stage" on:click=accept>"Join the stage"</button>
                        <button class="button secondary" data-testid="decline-stage" on:click=decline>"Not now"</button>
                    </div>
                </div>
            </Show>
            <Show when=move || !my_id().is_empty() && moderation.with(|m| m.host_muted(&my_id(), false) || m.host_muted(&my_id(), true))>
                <p class="host-muted-note" data-testid="muted-by-host" role="status">
                    {move || {
                        let (mic, cam) = moderation.with(|m| (m.host_muted(&my_id(), false), m.host_muted(&my_id(), true)));
                        let what = match (mic, cam) {
                            (true, true) => "microphone and camera",
                            (true, false) => "microphone",
                            _ => "camera",
                        };
                        format!("Your {what} was muted by the host. You can turn it back on when the host allows it.")
                    }}
                </p>
            </Show>
            <Show when=move || moderation.with(|m| m.allowed_to_unmute) && !moderation.with(|m| m.host_muted(&my_id(), false))>
                <p class="allowed-note" data-testid="allowed-to-unmute" role="status">"The host allows you to unmute again."</p>
            </Show>
            <div class="panel-head">
                <h2>"People " <span class="count" data-testid="people-count">{move || members.get().len()}</span></h2>
                <Show when=moderator>
                    <button class="button secondary small" data-testid="lock-session" on:click=toggle_lock
                        aria-pressed=move || moderation.with(|m| m.locked).to_string()>
                        {move || if moderation.with(|m| m.locked) { "Unlock session" } else { "Lock session" }}
                    </button>
                </Show>
            </div>
            <Show when=move || moderation.with(|m| m.locked)>
                <p class="muted small" data-testid="locked-note">"Locked: nobody new can join."</p>
            </Show>
            <Show when=move || my_role() == "VIEWER" || my_role() == "SPEAKER">
                <div class="own-actions">
                    <Show when=move || my_role() == "VIEWER">
                        <button class="button" class:secondary=my_hand data-testid="raise-hand" on:click=toggle_hand
                            aria-pressed=move || my_hand().to_string()>
                            {move || if my_hand() { "Lower my hand" } else { "Raise hand" }}
                        </button>
                    </Show>
                    <Show when=move || my_role() == "SPEAKER" && !moderation.with(|m| m.invited)>
                        <button class="button secondary" data-testid="leave-stage" on:click=leave_stage>"Leave the stage"</button>
                    </Show>
                </div>
            </Show>
            <Show when=moderator>
                <section class="hands" data-testid="hand-queue">
                    <h3>"Raised hands " <span class="badge-count" data-testid="hand-count"
                        class:zero=move || hand_count() == 0>{hand_count}</span></h3>
                    <Show when=move || hand_count() == 0>
                        <p class="muted small">"No hands raised."</p>
                    </Show>
                    <ol>
                        <For each=move || moderation.with(|m| m.hands.clone()) key=|h| h.0.clone() let:hand>
                            {
                                let pid = hand.0.clone();
                                let (p1, p2, p3) = (pid.clone(), pid.clone(), pid.clone());
                                view! {
                                    <li data-testid="hand" data-participant=pid.clone()>
                                        <span class="name">{move || name_of(&p3)}</span>
                                        <button class="button small" data-testid="invite-to-stage"
                                            on:click=move |_| act("mutation($s: ID!, $p: ID!) { inviteToStage(sessionId: $s, participantId: $p) }", sid.get_value(), p1.clone(), None, notice)>
                                            "Invite to stage"</button>
                                        <button class="button secondary small" data-testid="dismiss-hand"
                                            on:click=move |_| act("mutation($s: ID!, $p: ID!) { dismissHand(sessionId: $s, participantId: $p) }", sid.get_value(), p2.clone(), None, notice)>
                                            "Dismiss"</button>
                                    </li>
                                }
                            }
                        </For>
                    </ol>
                </section>
            </Show>
            <ul class="people" data-testid="people">
                <For each=sorted key=|m| (m.id.clone(), m.role.clone()) let:member>
                    {
                        let pid = StoredValue::new(member.id.clone());
                        let role = member.role.clone();
                        let role_s = StoredValue::new(role.clone());
                        let can_act = move || may_moderate(&my_role(), &role_s.get_value());
                        let mic_locked = move || moderation.with(|m| m.host_muted(&pid.get_value(), false));
                        let cam_locked = move || moderation.with(|m| m.host_muted(&pid.get_value(), true));
                        let mute = move |video: bool, locked: bool| {
                            let doc = if locked {
                                "mutation($s: ID!, $p: ID!, $k: TrackKind!) { muteParticipant(sessionId: $s, participantId: $p, kind: $k) }"
                            } else {
                                "mutation($s: ID!, $p: ID!, $k: TrackKind!) { allowUnmute(sessionId: $s, participantId: $p, kind: $k) }"
                            };
                            let kind = if video { "VIDEO" } else { "AUDIO" };
                            act(doc, sid.get_value(), pid.get_value(), Some(("k", serde_json::json!(kind))), notice);
                        };
                        let is_me = move || pid.with_value(|p| *p == my_id());
                        let is_co_host = role == "CO_HOST";
                        let show_cohost_toggle = move || my_role() == "HOST" && matches!(role_s.get_value().as_str(), "CO_HOST" | "SPEAKER" | "VIEWER");
                        view! {
                            <li data-testid="person" data-participant=pid.get_value() data-role=role.clone()>
                                <div class="who">
                                    <span class="name">{member.name.clone()}{move || if is_me() { " (you)" } else { "" }}</span>
                                    <span class="role-badge" data-role=role.clone()>{role_label(&role)}</span>
                                    <Show when=move || moderation.with(|m| m.hand_raised(&pid.get_value()))>
                                        <span class="hand-flag" data-testid="hand-flag">"hand raised"</span>
                                    </Show>
                                    <Show when=mic_locked>
                                        <span class="host-muted-flag" data-testid="host-muted-mic">"mic muted by host"</span>
                                    </Show>
                                </div>
                                <Show when=can_act>
                                    <div class="person-actions">
                                        <Show when=move || role_s.get_value() == "VIEWER">
                                            <button class="link-button" data-testid="invite"
                                                on:click=move |_| act("mutation($s: ID!, $p: ID!) { inviteToStage(sessionId: $s, participantId: $p) }", sid.get_value(), pid.get_value(), None, notice)>
                                                "Invite to stage"</button>
                                        </Show>
                                        <Show when=move || role_s.get_value() == "SPEAKER">
                                            <button class="link-button" data-testid="send-to-audience"
                                                on:click=move |_| act("mutation($s: ID!, $p: ID!) { sendToAudience(sessionId: $s, participantId: $p) }", sid.get_value(), pid.get_value(), None, notice)>
                                                "Move to audience"</button>
                                        </Show>
                                        <button class="link-button" data-testid="mute-mic"
                                            on:click=move |_| mute(false, !mic_locked())>
                                            {move || if mic_locked() { "Allow unmute" } else { "Mute mic" }}</button>
                                        <button class="link-button" data-testid="mute-camera"
                                            on:click=move |_| mute(true, !cam_locked())>
                                            {move || if cam_locked() { "Allow camera" } else { "Stop camera" }}</button>
                                        <Show when=show_cohost_toggle>
                                            <button class="link-button" data-testid="toggle-co-host"
                                                on:click=move |_| {
                                                    let Some(class) = class_id.get_untracked() else { return };
                                                    let Some(user) = members.get_untracked().into_iter().find(|m| m.id == pid.get_value()).map(|m| m.user_id) else { return };
                                                    leptos::task::spawn_local(async move {
                                                        let (doc, vars) = if is_co_host {
                                                            ("mutation($c: ID!, $u: ID!) { removeRole(classId: $c, userId: $u) }",
                                                             serde_json::json!({ "c": class, "u": user }))
                                                        } else {
                                                            ("mutation($c: ID!, $u: ID!) { assignRole(classId: $c, userId: $u, role: CO_HOST) }",
                                                             serde_json::json!({ "c": class, "u": user }))
                                                        };
                                                        if let Err(e) = api::graphql(doc, vars).await {
                                                            notice.set(Some(e.message));
                                                        }
                                                    });
                                                }>
                                                {if is_co_host { "Revoke co-host" } else { "Make co-host" }}</button>
                                        </Show>
                                        <Show when=move || confirm_remove.get() == Some(pid.get_value())
                                            fallback=move || view! {
                                                <button class="link-button danger" data-testid="remove"
                                                    on:click=move |_| confirm_remove.set(Some(pid.get_value()))>"Remove"</button>
                                            }>
                                            <span class="confirm">"Remove for this session?"
                                                <button class="link-button danger" data-testid="confirm-remove"
                                                    on:click=move |_| {
                                                        confirm_remove.set(None);
                                                        act("mutation($s: ID!, $p: ID!) { removeParticipant(sessionId: $s, participantId: $p) }", sid.get_value(), pid.get_value(), None, notice);
                                                    }>"Remove"</button>
                                                <button class="link-button" on:click=move |_| confirm_remove.set(None)>"Cancel"</button>
                                            </span>
                                        </Show>
                                    </div>
                                </Show>
                            </li>
                        }
                    }
                </For>
            </ul>
            <Show when=move || my_role() == "HOST" || my_role() == "CO_HOST">
                <a class="button secondary small" data-testid="attendance-csv" download=""
                    href=move || format!("/sessions/{}/attendance.csv", sid.get_value())>"Download attendance (CSV)"</a>
            </Show>
        </aside>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hands_queue_in_order_and_go_with_their_owner() {
        let mut m = Moderation::default();
        m.apply("1", &json!({ "__typename": "SessionSnapshot", "hands": [{ "participantId": "5", "raisedAt": "a" }], "hostMutes": [], "locked": true }));
        assert!(m.locked);
        m.apply("1", &json!({ "__typename": "HandRaised", "hand": { "participantId": "6", "raisedAt": "b" } }));
        m.apply("1", &json!({ "__typename": "HandRaised", "hand": { "participantId": "6", "raisedAt": "c" } }));
        assert_eq!(
            m.hands,
            vec![("5".into(), "a".into()), ("6".into(), "b".into())]
        );
        m.apply(
            "1",
            &json!({ "__typename": "HandLowered", "participantId": "5", "reason": "INVITED" }),
        );
        m.apply(
            "1",
            &json!({ "__typename": "ParticipantLeft", "participantId": "6" }),
        );
        assert!(m.hands.is_empty());
    }

    #[test]
    fn a_mute_by_the_host_locks_until_allowed_and_an_invitation_waits_for_an_answer() {
        let mut m = Moderation::default();
        let mute = |locked: bool| json!({ "__typename": "HostMuteChanged", "participantId": "1", "kind": "AUDIO", "locked": locked });
        m.apply("1", &mute(true));
        assert!(m.host_muted("1", false) && !m.host_muted("1", true));
        m.apply("1", &mute(false));
        assert!(!m.host_muted("1", false) && m.allowed_to_unmute);
        m.apply(
            "1",
            &json!({ "__typename": "StageInvitation", "invited": true }),
        );
        assert!(m.invited);
        m.apply("1", &json!({ "__typename": "ParticipantRoleChanged", "participantId": "1", "role": "VIEWER" }));
        assert!(!m.invited);
    }

    #[test]
    fn the_recording_shows_from_the_snapshot_until_it_stops() {
        let mut m = Moderation::default();
        let snapshot = |recording: serde_json::Value| json!({ "__typename": "SessionSnapshot", "hands": [], "hostMutes": [], "locked": false, "recording": recording });
        m.apply("1", &snapshot(json!({ "id": "4", "state": "RECORDING" })));
        assert_eq!(m.recording.as_deref(), Some("4"));
        // Another recording's end says nothing of this one.
        m.apply("1", &json!({ "__typename": "RecordingChanged", "seq": 3, "recording": { "id": "3", "state": "READY" } }));
        assert_eq!(m.recording.as_deref(), Some("4"));
        m.apply("1", &json!({ "__typename": "RecordingChanged", "seq": 4, "recording": { "id": "4", "state": "UPLOADING" } }));
        assert_eq!(m.recording, None);
        m.apply("1", &json!({ "__typename": "RecordingChanged", "seq": 5, "recording": { "id": "5", "state": "RECORDING" } }));
        assert_eq!(m.recording.as_deref(), Some("5"));
        m.apply("1", &snapshot(serde_json::Value::Null));
        assert_eq!(m.recording, None);
    }

    #[test]
    fn moderators_act_only_on_lower_roles() {
        assert!(may_moderate("HOST", "CO_HOST") && may_moderate("CO_HOST", "SPEAKER"));
        assert!(!may_moderate("CO_HOST", "CO_HOST") && !may_moderate("HOST", "HOST"));
        assert!(!may_moderate("SPEAKER", "VIEWER") && !may_moderate("VIEWER", "VIEWER"));
    }
}
