//! The Chat tab: the session's messages, newest at the bottom, a box to write (Enter sends,
//! Shift+Enter breaks the line), and for hosts and co-hosts a delete button on each message.

use leptos::html;
use leptos::prelude::*;

use crate::api;
use crate::pages::interaction::{MAX_CHAT, clock};
use crate::pages::panel::PanelContext;

const SEND: &str =
    "mutation($s: ID!, $b: String!) { sendChatMessage(sessionId: $s, body: $b) { id } }";
const DELETE: &str =
    "mutation($s: ID!, $m: ID!) { deleteChatMessage(sessionId: $s, messageId: $m) }";

/// `hh:mm` of a message in the browser's own time zone (the server's UTC if it cannot say).
fn local_clock(iso: &str) -> String {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_str(iso));
    if date.get_time().is_nan() {
        return clock(iso);
    }
    let options = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&options, &"hour".into(), &"2-digit".into());
    let _ = js_sys::Reflect::set(&options, &"minute".into(), &"2-digit".into());
    date.to_locale_time_string_with_options("default", &options)
        .into()
}

#[component]
pub fn ChatTab(ctx: PanelContext) -> impl IntoView {
    let draft = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let list_ref = NodeRef::<html::Ol>::new();
    let messages = move || ctx.state.with(|s| s.chat.clone());
    // Keep the newest message in view.
    Effect::new(move |_| {
        let n = ctx.state.with(|s| s.chat.len());
        if let Some(el) = list_ref.get() {
            let _ = n;
            el.set_scroll_top(el.scroll_height());
        }
    });
    let send = move || {
        let body = draft.get_untracked();
        if body.trim().is_empty() {
            return;
        }
        // Cleared at once (typing on is not blocked); put back if the server refuses it.
        draft.set(String::new());
        let variables = serde_json::json!({ "s": ctx.session_id.get_value(), "b": body.clone() });
        leptos::task::spawn_local(async move {
            match api::graphql(SEND, variables).await {
                Ok(_) => error.set(None),
                Err(e) => {
                    error.set(Some(e.message));
                    if draft.get_untracked().is_empty() {
                        draft.set(body);
                    }
                }
            }
        });
    };
    let left = move || MAX_CHAT as i64 - draft.with(|d| d.chars().count()) as i64;
    view! {
        <div class="chat" data-testid="chat">
            <ol class="messages" node_ref=list_ref data-testid="chat-messages">
                <Show when=move || ctx.state.with(|s| s.chat.is_empty())>
                    <li class="empty muted">"No messages yet. Say hello to the class!"</li>
                </Show>
                <For each=messages key=|m| m.id.clone() let:m>
                    {
                        let mine = m.author_id == ctx.user_id.get_untracked();
                        let id = m.id.clone();
                        view! {
                            <li class="message" class:mine=mine data-testid="chat-message" data-id=m.id.clone()>
                                <div class="meta">
                                    <span class="author">{if mine { "You".to_owned() } else { m.author_name.clone() }}</span>
                                    <time>{local_clock(&m.sent_at)}</time>
                                    <Show when=move || ctx.moderator()>
                                        {
                                            let id = id.clone();
                                            view! {
                                                <button class="link delete" title="Delete for everyone" data-testid="delete-message"
                                                    on:click=move |_| ctx.run(DELETE, serde_json::json!({ "m": id.clone() }), error, |_| {})>
                                                    "Delete"
                                                </button>
                                            }
                                        }
                                    </Show>
                                </div>
                                <p class="body">{m.body.clone()}</p>
                            </li>
                        }
                    }
                </For>
            </ol>
            <Show when=move || error.get().is_some()>
                <p class="panel-error" role="alert" data-testid="chat-error">{move || error.get().unwrap_or_default()}</p>
            </Show>
            <form class="composer" on:submit=move |ev| { ev.prevent_default(); send(); }>
                <textarea rows="2" placeholder="Message everyone…" aria-label="Chat message" data-testid="chat-input"
                    prop:value=move || draft.get()
                    on:input=move |ev| draft.set(event_target_value(&ev))
                    on:keydown=move |ev| {
                        if ev.key() == "Enter" && !ev.shift_key() {
                            ev.prevent_default();
                            send();
                        }
                    }></textarea>
                <div class="composer-row">
                    <span class="muted count" class:over=move || left() < 0>
                        {move || if left() < 200 { format!("{} left", left()) } else { String::new() }}
                    </span>
                    <button class="button" type="submit" data-testid="chat-send"
                        disabled=move || draft.with(|d| d.trim().is_empty()) || left() < 0>"Send"</button>
                </div>
            </form>
        </div>
    }
}
