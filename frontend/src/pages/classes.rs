//! `/classes`: the classes list and creating one; `/classes/:id`: a class, its sessions,
//! scheduling and starting a session (host), the join link of a live one, and its recordings
//! (ready ones link to their replay; one being recorded or stored is asked about again until it
//! settles).

use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::{use_navigate, use_params_map};

use crate::api;
use crate::app::Session;
use crate::pages::recording::{POLL_MS, Recording, RecordingState, poll_while};

const CLASS_RECORDINGS: &str = "query($c: ID!) { classRecordings(classId: $c) { id state createdAt
  durationMs sizeBytes uploadedBytes uploadTotalBytes error } }";

/// Sends signed-out visitors to the sign-in page, back here afterwards.
pub fn require_sign_in(session: Session) {
    Effect::new(move |_| {
        if session.checked.get() && session.user.get().is_none() {
            let here = web_sys::window()
                .and_then(|w| w.location().pathname().ok())
                .unwrap_or_default();
            use_navigate()(&format!("/signin?next={here}"), Default::default());
        }
    });
}

#[component]
pub fn Classes() -> impl IntoView {
    let session = expect_context::<Session>();
    require_sign_in(session);
    let reload = RwSignal::new(0u32);
    let classes = LocalResource::new(move || {
        reload.get();
        async move {
            api::graphql(
                "{ classes(first: 50) { nodes { id title description myRole visibility owner { displayName } } } }",
                serde_json::json!({}),
            )
            .await
            .map(|d| d["classes"]["nodes"].as_array().cloned().unwrap_or_default())
        }
    });
    let title = RwSignal::new(String::new());
    let visibility = RwSignal::new("UNLISTED".to_owned());
    let error = RwSignal::new(None::<String>);
    let navigate = use_navigate();
    let create = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let navigate = navigate.clone();
        let t = title.get_untracked();
        let v = visibility.get_untracked();
        leptos::task::spawn_local(async move {
            match api::graphql(
                "mutation($i: CreateClassInput!) { createClass(input: $i) { id } }",
                serde_json::json!({ "i": { "title": t, "visibility": v } }),
            )
            .await
            {
                Ok(d) => {
                    let id = d["createClass"]["id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    navigate(&format!("/classes/{id}"), Default::default());
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    view! {
        <section class="stack">
            <div class="card">
                <h1>"Classes"</h1>
                <form class="inline-form" on:submit=create>
                    <input name="title" placeholder="A new class, e.g. Optics 101" required maxlength="200"
                        prop:value=move || title.get() on:input=move |ev| title.set(event_target_value(&ev))/>
                    <select name="visibility" aria-label="Who can find and join it" data-testid="visibility"
                        title=move || visibility_help(&visibility.get())
                        on:change=move |ev| visibility.set(event_target_value(&ev))>
                        <option value="UNLISTED" selected=true>"Anyone with the link"</option>
                        <option value="PUBLIC">"Public: listed for everyone"</option>
                        <option value="INVITE_ONLY">"Invited people only"</option>
                    </select>
                    <button class="button" type="submit" data-testid="create-class">"Create class"</button>
                </form>
                <Show when=move || error.get().is_some()>
                    <p class="error" role="alert">{move || error.get().unwrap_or_default()}</p>
                </Show>
            </div>
            <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || classes.get().map(|r| match r {
                    Ok(list) if list.is_empty() => view! { <p class="muted">"No classes yet. Create the first one."</p> }.into_any(),
                    Ok(list) => view! {
                        <ul class="class-list">
                            {list.into_iter().map(|c| {
                                let href = format!("/classes/{}", c["id"].as_str().unwrap_or_default());
                                let title = c["title"].as_str().unwrap_or_default().to_owned();
                                let by = format!("by {}", c["owner"]["displayName"].as_str().unwrap_or_default());
                                let role = role_label(c["myRole"].as_str().unwrap_or_default());
                                view! {
                                    <li class="card class-item">
                                        <A href=href>{title}</A>
                                        <span class="muted">{by}</span>
                                        <span class="visibility-badge">{visibility_label(c["visibility"].as_str().unwrap_or_default())}</span>
                                        <span class="role-badge">{role}</span>
                                    </li>
                                }
                            }).collect_view()}
                        </ul>
                    }.into_any(),
                    Err(e) => view! { <p class="error">{e.message}</p> }.into_any(),
                })}
            </Suspense>
        </section>
    }
}

/// An RFC 3339 time in the browser's time zone and locale.
pub fn local_time(iso: &str) -> String {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_str(iso));
    if date.get_time().is_nan() {
        return iso.to_owned();
    }
    let options = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&options, &"dateStyle".into(), &"medium".into());
    let _ = js_sys::Reflect::set(&options, &"timeStyle".into(), &"short".into());
    date.to_locale_string("default", &options).into()
}

pub fn role_label(role: &str) -> &'static str {
    match role {
        "HOST" => "Host",
        "CO_HOST" => "Co-host",
        "SPEAKER" => "Speaker",
        _ => "Viewer",
    }
}

#[component]
pub fn ClassPage() -> impl IntoView {
    let session = expect_context::<Session>();
    require_sign_in(session);
    let params = use_params_map();
    let id = move || params.read().get("id").unwrap_or_default();
    let reload = RwSignal::new(0u32);
    let class = LocalResource::new(move || {
        reload.get();
        let id = id();
        async move {
            api::graphql(
                "query($id: ID!) { class(id: $id) { id title description myRole visibility owner { displayName } sessions { id state scheduledStart } } }",
                serde_json::json!({ "id": id }),
            )
            .await
            .map(|d| d["class"].clone())
        }
    });
    let error = RwSignal::new(None::<String>);
    let run = move |query: &'static str, vars: serde_json::Value| {
        leptos::task::spawn_local(async move {
            match api::graphql(query, vars).await {
                Ok(_) => reload.update(|n| *n += 1),
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    // Where to go next (set from async work; navigation needs the router's context).
    let go_to = RwSignal::new(None::<String>);
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(path) = go_to.get() {
            navigate(&path, Default::default());
        }
    });
    // When to schedule, as the `datetime-local` input has it (local time; empty: now).
    let when = RwSignal::new(String::new());
    let schedule = move |_| {
        let local = when.get_untracked();
        let date = if local.is_empty() {
            js_sys::Date::new_0()
        } else {
            js_sys::Date::new(&wasm_bindgen::JsValue::from_str(&local))
        };
        if date.get_time().is_nan() {
            error.set(Some("Pick a valid date and time.".into()));
            return;
        }
        let start = date.to_iso_string().as_string().unwrap_or_default();
        run(
            "mutation($i: ScheduleSessionInput!) { scheduleSession(input: $i) { id } }",
            serde_json::json!({ "i": { "classId": id(), "start": start } }),
        );
    };
    view! {
        <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || class.get().map(|r| match r {
                Err(e) => view! { <p class="error">{e.message}</p> }.into_any(),
                Ok(c) => {
                    let is_host = c["myRole"] == "HOST";
                    let can_invite = is_host || c["myRole"] == "CO_HOST";
                    let current_visibility = c["visibility"].as_str().unwrap_or_default().to_owned();
                    let sessions = c["sessions"].as_array().cloned().unwrap_or_default();
                    view! {
                        <section class="stack">
                            <div class="card">
                                <div class="card-head">
                                    <h1>{c["title"].as_str().unwrap_or_default().to_owned()}</h1>
                                    <span class="role-badge">{role_label(c["myRole"].as_str().unwrap_or_default())}</span>
                                </div>
                                <p class="muted">
                                    {format!("Hosted by {} · ", c["owner"]["displayName"].as_str().unwrap_or_default())}
                                    <span data-testid="class-visibility">{visibility_label(c["visibility"].as_str().unwrap_or_default())}</span>
                                </p>
                                <Show when=move || is_host>
                                    <div class="inline-form">
                                        <label class="muted">"Who can find and join it"
                                            <select aria-label="Visibility" data-testid="change-visibility"
                                                on:change=move |ev| run(
                                                    "mutation($id: ID!, $i: UpdateClassInput!) { updateClass(id: $id, input: $i) { id } }",
                                                    serde_json::json!({ "id": id(), "i": { "visibility": event_target_value(&ev) } }),
                                                )>
                                                {["UNLISTED", "PUBLIC", "INVITE_ONLY"].into_iter().map(|v| view! {
                                                    <option value=v selected=current_visibility == v>{visibility_label(v)}</option>
                                                }).collect_view()}
                                            </select>
                                        </label>
                                    </div>
                                </Show>
                                <Show when=move || can_invite>
                                    <Invitations class_id=id()/>
                                </Show>
                                <Show when=move || is_host>
                                    <div class="inline-form">
                                        <label class="muted">"Starts"
                                            <input type="datetime-local" name="start" aria-label="Session start (leave empty for now)"
                                                prop:value=move || when.get()
                                                on:input=move |ev| when.set(event_target_value(&ev))/>
                                        </label>
                                        <button class="button" data-testid="schedule" on:click=schedule>
                                            {move || if when.get().is_empty() { "Schedule a session now" } else { "Schedule" }}
                                        </button>
                                    </div>
                                </Show>
                                <Show when=move || error.get().is_some()>
                                    <p class="error" role="alert">{move || error.get().unwrap_or_default()}</p>
                                </Show>
                            </div>
                            <div class="card">
                                <h2>"Sessions"</h2>
                                {if sessions.is_empty() {
                                    view! { <p class="muted">"No sessions yet."</p> }.into_any()
                                } else {
                                    view! {
                                        <ul class="sessions">
                                            {sessions.into_iter().map(|s| {
                                                let sid = s["id"].as_str().unwrap_or_default().to_owned();
                                                let state = s["state"].as_str().unwrap_or_default().to_owned();
                                                let (sid2, sid3) = (sid.clone(), sid.clone());
                                                // Going live takes the host into the room.
                                                let start = move |_| {
                                                    let sid = sid2.clone();
                                                    leptos::task::spawn_local(async move {
                                                        match api::graphql("mutation($id: ID!) { startSession(id: $id) { id } }", serde_json::json!({ "id": sid })).await {
                                                            Ok(_) => go_to.set(Some(format!("/live/{sid}"))),
                                                            Err(e) => error.set(Some(e.message)),
                                                        }
                                                    });
                                                };
                                                let end = move |_| run("mutation($id: ID!) { endSession(id: $id) { id } }", serde_json::json!({ "id": sid3 }));
                                                let live = state == "LIVE";
                                                let scheduled = state == "SCHEDULED";
                                                let join_href = format!("/live/{sid}");
                                                let share_path = join_href.clone();
                                                view! {
                                                    <li class="session-row" data-session=sid>
                                                        <span class=format!("state {}", state.to_lowercase())>{state.clone()}</span>
                                                        <span class="muted">{local_time(s["scheduledStart"].as_str().unwrap_or_default())}</span>
                                                        <Show when=move || is_host && scheduled>
                                                            <button class="button small" data-testid="start-session" on:click=start.clone()>"Go live"</button>
                                                        </Show>
                                                        <Show when=move || live>
                                                            <A href=join_href.clone() attr:class="button small" attr:data-testid="join-link"
                                                                on:click=|_| { if let Some(p) = web_sys::window().and_then(|w| w.performance()) { let _ = p.mark("classroom:join-click"); } }>"Join"</A>
                                                        </Show>
                                                        <Show when=move || live || scheduled>
                                                            <CopyLink path=share_path.clone()/>
                                                        </Show>
                                                        <Show when=move || is_host && live>
                                                            <button class="button secondary small" on:click=end.clone()>"End"</button>
                                                        </Show>
                                                    </li>
                                                }
                                            }).collect_view()}
                                        </ul>
                                    }.into_any()
                                }}
                            </div>
                            <Recordings class_id=id()/>
                        </section>
                    }.into_any()
                }
            })}
        </Suspense>
    }
}

/// A class's recordings, newest first, with date, duration, size and state: ready ones link to
/// their replay. While one is being recorded or stored, the list is asked for again every 3 s.
#[component]
fn Recordings(class_id: String) -> impl IntoView {
    let class_id = StoredValue::new(class_id);
    // `None` until the first answer.
    let list = RwSignal::new(None::<Result<Vec<Recording>, String>>);
    let load = move || {
        let c = class_id.get_value();
        leptos::task::spawn_local(async move {
            let answer = api::graphql(CLASS_RECORDINGS, serde_json::json!({ "c": c }))
                .await
                .map_err(|e| e.message)
                .and_then(|d| {
                    serde_json::from_value::<Vec<Recording>>(d["classRecordings"].clone())
                        .map_err(|e| format!("Unexpected answer: {e}"))
                });
            // A failed poll keeps the list shown; the next one tries again.
            if answer.is_ok() || !matches!(list.get_untracked(), Some(Ok(_))) {
                list.set(Some(answer));
            }
        });
    };
    load();
    let unsettled = Memo::new(move |_| {
        list.with(|l| matches!(l, Some(Ok(v)) if v.iter().any(|r| r.state.in_progress())))
    });
    poll_while(unsettled, POLL_MS, load);
    let rows = move || match list.get() {
        Some(Ok(v)) => v,
        _ => Vec::new(),
    };
    view! {
        <div class="card" data-testid="recordings">
            <h2>"Recordings"</h2>
            {move || match list.get() {
                None => Some(view! { <p class="muted">"Loading…"</p> }.into_any()),
                Some(Err(e)) => Some(view! { <p class="error">{e}</p> }.into_any()),
                Some(Ok(v)) if v.is_empty() => Some(view! {
                    <p class="muted">"No recordings yet. The host can record a live session from the classroom."</p>
                }.into_any()),
                Some(Ok(_)) => None,
            }}
            <ul class="sessions recordings">
                // A row is rebuilt only when it changes: a ready one stays put while others poll.
                <For each=rows key=|r| (r.id.clone(), r.state, r.uploaded_bytes, r.size_bytes, r.duration_ms) let:r>
                    <RecordingRow r=r/>
                </For>
            </ul>
        </div>
    }
}

#[component]
fn RecordingRow(r: Recording) -> impl IntoView {
    let detail = match r.state {
        RecordingState::Ready => view! {
            <A href=format!("/recordings/{}", r.id) attr:class="button small" attr:data-testid="recording-link">"Watch"</A>
        }
        .into_any(),
        RecordingState::Uploading => match r.upload_percent() {
            Some(p) => view! {
                <span class="upload-progress" data-testid="upload-progress">
                    <progress max="100" value=p aria-label="Upload progress"></progress>
                    <span>{format!("{p} %")}</span>
                </span>
            }
            .into_any(),
            None => view! { <span class="muted">"uploading…"</span> }.into_any(),
        },
        RecordingState::Recording => view! { <span class="rec-note">"recording…"</span> }.into_any(),
        RecordingState::Failed => view! {
            <span class="error" data-testid="recording-error">{r.error.clone().unwrap_or_else(|| "It could not be stored.".into())}</span>
        }
        .into_any(),
    };
    view! {
        <li class="session-row recording-row" data-testid="recording" data-id=r.id.clone() data-state=r.state.name()>
            <span class=format!("state {}", r.state.name().to_lowercase())>{r.state.name()}</span>
            <span class="muted">{local_time(&r.created_at)}</span>
            <span class="figure" title="Duration">{r.duration_label().unwrap_or_else(|| "–".into())}</span>
            <span class="figure" title="Size">{r.size_label().unwrap_or_else(|| "–".into())}</span>
            {detail}
        </li>
    }
}

/// A button that copies the full join link of `path` (shown instead when the clipboard is refused).
#[component]
fn CopyLink(path: String) -> impl IntoView {
    let state = RwSignal::new(None::<Result<(), String>>);
    let copy = move |_| {
        let Some(w) = web_sys::window() else { return };
        let link = format!("{}{}", w.location().origin().unwrap_or_default(), path);
        let promise = w.navigator().clipboard().write_text(&link);
        leptos::task::spawn_local(async move {
            let done = wasm_bindgen_futures::JsFuture::from(promise).await;
            state.set(Some(done.map(|_| ()).map_err(|_| link)));
        });
    };
    view! {
        <button class="button secondary small" data-testid="copy-join-link" on:click=copy>
            {move || match state.get() {
                Some(Ok(())) => "Link copied".to_owned(),
                _ => "Copy join link".to_owned(),
            }}
        </button>
        {move || match state.get() {
            Some(Err(link)) => Some(view! { <input class="share-link" readonly prop:value=link aria-label="Join link"/> }),
            _ => None,
        }}
    }
}

pub fn visibility_label(v: &str) -> &'static str {
    match v {
        "PUBLIC" => "Public",
        "INVITE_ONLY" => "Invited people only",
        _ => "Anyone with the link",
    }
}

fn visibility_help(v: &str) -> &'static str {
    match v {
        "PUBLIC" => "Listed on everyone's Classes page; anyone signed in can join.",
        "INVITE_ONLY" => "Only people you invite (and co-hosts and speakers) can see and join it.",
        _ => "Not listed; anyone signed in who has the link can join.",
    }
}

/// Invited people of a class (host and co-hosts): invite by email, take an invitation back.
#[component]
fn Invitations(class_id: String) -> impl IntoView {
    let reload = RwSignal::new(0u32);
    let class_id = StoredValue::new(class_id);
    let members = LocalResource::new(move || {
        reload.get();
        async move {
            api::graphql(
                "query($id: ID!) { class(id: $id) { members { id displayName email } } }",
                serde_json::json!({ "id": class_id.get_value() }),
            )
            .await
            .map(|d| {
                d["class"]["members"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .unwrap_or_default()
        }
    });
    let email = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let invite = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let e = email.get_untracked();
        leptos::task::spawn_local(async move {
            match api::graphql(
                "mutation($c: ID!, $e: String!) { inviteToClass(classId: $c, email: $e) }",
                serde_json::json!({ "c": class_id.get_value(), "e": e }),
            )
            .await
            {
                Ok(_) => {
                    error.set(None);
                    email.set(String::new());
                    reload.update(|n| *n += 1);
                }
                Err(e) if e.code == "NOT_FOUND" => error.set(Some(
                    "No account has this email yet: ask them to sign up first.".into(),
                )),
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    let remove = move |user: String| {
        leptos::task::spawn_local(async move {
            match api::graphql(
                "mutation($c: ID!, $u: ID!) { removeFromClass(classId: $c, userId: $u) }",
                serde_json::json!({ "c": class_id.get_value(), "u": user }),
            )
            .await
            {
                Ok(_) => reload.update(|n| *n += 1),
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    view! {
        <div class="invitations">
            <h2>"Invited people"</h2>
            <form class="inline-form" on:submit=invite>
                <input name="invite-email" type="email" required placeholder="student@example.org"
                    aria-label="Email of the person to invite"
                    prop:value=move || email.get() on:input=move |ev| email.set(event_target_value(&ev))/>
                <button class="button secondary" type="submit" data-testid="invite">"Invite"</button>
            </form>
            <Show when=move || error.get().is_some()>
                <p class="error" role="alert">{move || error.get().unwrap_or_default()}</p>
            </Show>
            <ul class="members" data-testid="members">
                {move || members.get().map(|list| list.iter().map(|m| {
                    let uid = m["id"].as_str().unwrap_or_default().to_owned();
                    let name = m["displayName"].as_str().unwrap_or_default().to_owned();
                    let mail = m["email"].as_str().unwrap_or_default().to_owned();
                    view! {
                        <li>
                            <span>{name}</span>" "<span class="muted">{mail}</span>
                            <button class="link" on:click=move |_| remove(uid.clone())>"Remove"</button>
                        </li>
                    }
                }).collect_view())}
            </ul>
        </div>
    }
}
