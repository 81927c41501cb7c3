//! The classroom's side panel: tabs for Chat, Q&A and Polls with unread badges. Each tab is its
//! own component (`chat.rs`, `qa.rs`, `polls.rs`); a People tab can sit beside them in its own.
//!
//! The panel loads the history when the page has joined (and again when the classroom says its
//! subscription started over from a snapshot), and reads everything else from the shared
//! [`Interaction`] state the classroom's event handler feeds.

use leptos::prelude::*;

use crate::api;
use crate::pages::chat::ChatTab;
use crate::pages::interaction::{HISTORY, Interaction, Tab};
use crate::pages::polls::PollsTab;
use crate::pages::qa::QuestionsTab;

/// What the tabs share: the session, who is looking, the state, and a way to call the API that
/// shows its refusal in the tab.
#[derive(Clone, Copy)]
pub struct PanelContext {
    pub session_id: StoredValue<String>,
    /// The viewer's user id (their own messages and questions).
    pub user_id: RwSignal<String>,
    /// The viewer's role in the session (`HOST`, `CO_HOST`, `SPEAKER`, `VIEWER`).
    pub role: Signal<String>,
    pub state: RwSignal<Interaction>,
}

impl PanelContext {
    /// Hosts and co-hosts moderate chat and Q&A and run polls.
    pub fn moderator(&self) -> bool {
        matches!(self.role.get().as_str(), "HOST" | "CO_HOST")
    }

    /// [`PanelContext::moderator`], read once (outside reactive code).
    pub fn moderator_untracked(&self) -> bool {
        matches!(self.role.get_untracked().as_str(), "HOST" | "CO_HOST")
    }

    /// Runs a mutation with the session id as `$s`; its error goes to `error`.
    pub fn run(
        &self,
        query: &'static str,
        mut variables: serde_json::Value,
        error: RwSignal<Option<String>>,
        done: impl FnOnce(serde_json::Value) + 'static,
    ) {
        variables["s"] = serde_json::json!(self.session_id.get_value());
        leptos::task::spawn_local(async move {
            match api::graphql(query, variables).await {
                Ok(data) => {
                    error.set(None);
                    done(data);
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    }
}

/// Loads chat history, questions and polls into `state`.
pub fn load_history(session_id: String, state: RwSignal<Interaction>) {
    leptos::task::spawn_local(async move {
        if let Ok(data) = api::graphql(HISTORY, serde_json::json!({ "s": session_id })).await {
            state.update(|s| s.load_history(&data));
        }
    });
}

#[component]
pub fn SidePanel(
    session_id: String,
    /// The viewer's role, kept current by the classroom.
    role: Signal<String>,
    state: RwSignal<Interaction>,
) -> impl IntoView {
    let user_id = RwSignal::new(String::new());
    leptos::task::spawn_local(async move {
        if let Some((id, _)) = api::me().await {
            state.update(|s| s.my_user_id = id.clone());
            user_id.set(id);
        }
    });
    let ctx = PanelContext {
        session_id: StoredValue::new(session_id.clone()),
        user_id,
        role,
        state,
    };
    load_history(session_id, state);
    state.update(|s| s.open(Some(Tab::Chat)));
    let tab = move || state.with(|s| s.open_tab);
    let badge = move |t: Tab| {
        move || {
            let n = state.with(|s| match t {
                Tab::Chat => s.unread_chat,
                Tab::Questions => s.unread_questions,
                Tab::Polls => s.unread_polls,
            });
            (n > 0).then(|| view! { <span class="unread" data-testid="unread">{n.min(99)}</span> })
        }
    };
    let tab_button = move |t: Tab, label: &'static str, testid: &'static str| {
        view! {
            <button role="tab" class="panel-tab" data-testid=testid
                aria-selected=move || (tab() == Some(t)).to_string()
                on:click=move |_| state.update(|s| s.open(Some(t)))>
                {label}{badge(t)}
            </button>
        }
    };
    view! {
        <aside class="side-panel" data-testid="side-panel">
            <div class="panel-tabs" role="tablist">
                {tab_button(Tab::Chat, "Chat", "tab-chat")}
                {tab_button(Tab::Questions, "Q&A", "tab-qa")}
                {tab_button(Tab::Polls, "Polls", "tab-polls")}
            </div>
            <div class="panel-body">
                {move || match tab() {
                    Some(Tab::Chat) | None => view! { <ChatTab ctx=ctx/> }.into_any(),
                    Some(Tab::Questions) => view! { <QuestionsTab ctx=ctx/> }.into_any(),
                    Some(Tab::Polls) => view! { <PollsTab ctx=ctx/> }.into_any(),
                }}
            </div>
        </aside>
    }
}
