//! The Q&A tab, as webinar products do it: attendees ask (optionally anonymously: hidden from
//! other attendees, not from hosts and co-hosts, and the form says so), upvote and take back;
//! the list sorts by votes or time. Hosts and co-hosts answer in writing or mark a question
//! answered live, dismiss and reopen.

use leptos::prelude::*;

use crate::pages::interaction::{Question, QuestionOrder};
use crate::pages::panel::PanelContext;

const ASK: &str = "mutation($s: ID!, $b: String!, $a: Boolean) { askQuestion(sessionId: $s, body: $b, anonymous: $a) { id } }";
const UPVOTE: &str =
    "mutation($s: ID!, $q: ID!) { upvoteQuestion(sessionId: $s, questionId: $q) { id } }";
const WITHDRAW: &str =
    "mutation($s: ID!, $q: ID!) { withdrawUpvote(sessionId: $s, questionId: $q) { id } }";
const ANSWER: &str = "mutation($s: ID!, $q: ID!, $a: String) { answerQuestion(sessionId: $s, questionId: $q, answer: $a) { id } }";
const DISMISS: &str =
    "mutation($s: ID!, $q: ID!) { dismissQuestion(sessionId: $s, questionId: $q) { id } }";
const REOPEN: &str =
    "mutation($s: ID!, $q: ID!) { reopenQuestion(sessionId: $s, questionId: $q) { id } }";

#[component]
pub fn QuestionsTab(ctx: PanelContext) -> impl IntoView {
    let draft = RwSignal::new(String::new());
    let anonymous = RwSignal::new(false);
    let order = RwSignal::new(QuestionOrder::Top);
    let error = RwSignal::new(None::<String>);
    let ask = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let body = draft.get_untracked();
        if body.trim().is_empty() {
            return;
        }
        ctx.run(
            ASK,
            serde_json::json!({ "b": body, "a": anonymous.get_untracked() }),
            error,
            move |_| draft.set(String::new()),
        );
    };
    let list = move || {
        ctx.state
            .with(|s| s.questions_in(order.get(), ctx.moderator()))
    };
    view! {
        <div class="qa" data-testid="qa">
            <form class="ask" on:submit=ask>
                <textarea rows="2" placeholder=move || if ctx.moderator() { "Add a question to the list…" } else { "Ask the host a question…" } aria-label="Your question" data-testid="question-input"
                    prop:value=move || draft.get() on:input=move |ev| draft.set(event_target_value(&ev))></textarea>
                <div class="composer-row">
                    <label class="check" title="Hosts and co-hosts still see who asked">
                        <input type="checkbox" data-testid="ask-anonymously"
                            prop:checked=move || anonymous.get()
                            on:change=move |ev| anonymous.set(event_target_checked(&ev))/>
                        "Ask anonymously"
                    </label>
                    <button class="button" type="submit" data-testid="ask"
                        disabled=move || draft.with(|d| d.trim().is_empty())>"Ask"</button>
                </div>
                <Show when=move || anonymous.get()>
                    <p class="hint muted">"Other attendees won't see your name. The host and co-hosts still can."</p>
                </Show>
            </form>
            <Show when=move || error.get().is_some()>
                <p class="panel-error" role="alert">{move || error.get().unwrap_or_default()}</p>
            </Show>
            <div class="sort" role="group" aria-label="Sort questions">
                <button class="chip" aria-pressed=move || (order.get() == QuestionOrder::Top).to_string()
                    data-testid="sort-top" on:click=move |_| order.set(QuestionOrder::Top)>"Top"</button>
                <button class="chip" aria-pressed=move || (order.get() == QuestionOrder::Newest).to_string()
                    data-testid="sort-newest" on:click=move |_| order.set(QuestionOrder::Newest)>"Newest"</button>
            </div>
            <ol class="questions" data-testid="questions">
                <Show when=move || list().is_empty()>
                    <li class="empty muted">"No questions yet."</li>
                </Show>
                <For each=list key=|q| (q.id.clone(), q.votes, q.state.clone(), q.upvoted_by_me, q.answer.clone()) let:q>
                    <QuestionItem ctx=ctx q=q error=error/>
                </For>
            </ol>
        </div>
    }
}

#[component]
fn QuestionItem(ctx: PanelContext, q: Question, error: RwSignal<Option<String>>) -> impl IntoView {
    let id = StoredValue::new(q.id.clone());
    let answering = RwSignal::new(false);
    let answer = RwSignal::new(String::new());
    let act = move |query: &'static str| {
        ctx.run(
            query,
            serde_json::json!({ "q": id.get_value() }),
            error,
            |_| {},
        )
    };
    let voted = q.upvoted_by_me;
    let open = q.state == "OPEN";
    let asker = match (&q.asker_name, q.anonymous, q.mine) {
        (_, _, true) if q.anonymous => "You (anonymous to attendees)".to_owned(),
        (_, _, true) => "You".to_owned(),
        (Some(name), true, _) => format!("{name} · anonymous to attendees"),
        (Some(name), false, _) => name.clone(),
        (None, _, _) => "Anonymous".to_owned(),
    };
    let status = match (q.state.as_str(), q.answered_live) {
        ("ANSWERED", true) => Some(("Answered live", "good")),
        ("ANSWERED", false) => Some(("Answered", "good")),
        ("DISMISSED", _) => Some(("Dismissed", "")),
        _ => None,
    };
    let send_answer = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let text = answer.get_untracked();
        ctx.run(
            ANSWER,
            serde_json::json!({ "q": id.get_value(), "a": text }),
            error,
            move |_| answering.set(false),
        );
    };
    view! {
        <li class="question" class:dismissed=q.state == "DISMISSED" data-testid="question"
            data-id=q.id.clone() data-votes=q.votes.to_string() data-state=q.state.clone()>
            <button class="vote" class:voted=voted disabled=!open
                aria-pressed=voted.to_string() data-testid="upvote"
                title=if voted { "Take back your upvote" } else { "Upvote" }
                on:click=move |_| act(if voted { WITHDRAW } else { UPVOTE })>
                <span aria-hidden="true">"▲"</span>
                <span class="votes" data-testid="votes">{q.votes}</span>
            </button>
            <div class="question-main">
                <p class="body" data-testid="question-body">{q.body.clone()}</p>
                <p class="meta muted">
                    <span>{asker}</span>
                    {status.map(|(text, class)| view! { <span class=format!("badge {class}")>{text}</span> })}
                </p>
                {q.answer.clone().map(|a| view! { <p class="answer"><strong>"Answer: "</strong>{a}</p> })}
                <Show when=move || ctx.moderator()>
                    <div class="mod-actions">
                        {if open {
                            view! {
                                <button class="link" data-testid="answer" on:click=move |_| answering.update(|a| *a = !*a)>"Answer"</button>
                                <button class="link" data-testid="answered-live" on:click=move |_| act(ANSWER)>"Answered live"</button>
                                <button class="link" data-testid="dismiss" on:click=move |_| act(DISMISS)>"Dismiss"</button>
                            }.into_any()
                        } else {
                            view! { <button class="link" data-testid="reopen" on:click=move |_| act(REOPEN)>"Reopen"</button> }.into_any()
                        }}
                    </div>
                    <Show when=move || answering.get()>
                        <form class="answer-form" on:submit=send_answer>
                            <input placeholder="Write an answer…" aria-label="Answer"
                                prop:value=move || answer.get() on:input=move |ev| answer.set(event_target_value(&ev))/>
                            <button class="button" type="submit">"Post"</button>
                        </form>
                    </Show>
                </Show>
            </div>
        </li>
    }
}
