//! The Polls tab: hosts and co-hosts create a poll (single or multiple choice), watch the results
//! come in, close it and share the results; attendees vote once and see the results when shared.

use leptos::prelude::*;

use crate::pages::interaction::Poll;
use crate::pages::panel::PanelContext;

const CREATE: &str =
    "mutation($s: ID!, $i: CreatePollInput!) { createPoll(sessionId: $s, input: $i) { id } }";
const VOTE: &str = "mutation($s: ID!, $p: ID!, $o: [Int!]!) { votePoll(sessionId: $s, pollId: $p, options: $o) { id } }";
const CLOSE: &str = "mutation($s: ID!, $p: ID!) { closePoll(sessionId: $s, pollId: $p) { id } }";
const SHARE: &str = "mutation($s: ID!, $p: ID!, $v: Boolean) { sharePollResults(sessionId: $s, pollId: $p, shared: $v) { id } }";

#[component]
pub fn PollsTab(ctx: PanelContext) -> impl IntoView {
    let error = RwSignal::new(None::<String>);
    let creating = RwSignal::new(false);
    // Newest first.
    let polls = move || {
        let mut list = ctx.state.with(|s| s.polls.clone());
        list.reverse();
        list
    };
    view! {
        <div class="polls" data-testid="polls">
            <Show when=move || ctx.moderator()>
                <Show when=move || creating.get()
                    fallback=move || view! {
                        <button class="button" data-testid="new-poll" on:click=move |_| creating.set(true)>"New poll"</button>
                    }>
                    <NewPoll ctx=ctx error=error done=Callback::new(move |_| creating.set(false))/>
                </Show>
            </Show>
            <Show when=move || error.get().is_some()>
                <p class="panel-error" role="alert">{move || error.get().unwrap_or_default()}</p>
            </Show>
            <Show when=move || ctx.state.with(|s| s.polls.is_empty())>
                <p class="empty muted">{move || if ctx.moderator() {
                    "No polls yet. Ask the class something: results come in live."
                } else {
                    "No polls yet. When the host asks one, it shows here."
                }}</p>
            </Show>
            <For each=polls key=|p| format!("{p:?}") let:p>
                <PollCard ctx=ctx poll=p error=error/>
            </For>
        </div>
    }
}

#[component]
fn NewPoll(
    ctx: PanelContext,
    error: RwSignal<Option<String>>,
    done: Callback<()>,
) -> impl IntoView {
    let question = RwSignal::new(String::new());
    let options = RwSignal::new(vec![String::new(), String::new()]);
    let multiple = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let opts: Vec<String> = options
            .get_untracked()
            .into_iter()
            .filter(|o| !o.trim().is_empty())
            .collect();
        let input = serde_json::json!({
            "question": question.get_untracked(), "options": opts, "multipleChoice": multiple.get_untracked()
        });
        ctx.run(
            CREATE,
            serde_json::json!({ "i": input }),
            error,
            move |_| done.run(()),
        );
    };
    view! {
        <form class="new-poll card" data-testid="poll-form" on:submit=submit>
            <input placeholder="Question" aria-label="Poll question" data-testid="poll-question"
                prop:value=move || question.get() on:input=move |ev| question.set(event_target_value(&ev))/>
            {move || (0..options.with(Vec::len)).map(|i| view! {
                <input placeholder=format!("Option {}", i + 1) aria-label=format!("Option {}", i + 1) data-testid="poll-option"
                    prop:value=move || options.with(|o| o.get(i).cloned().unwrap_or_default())
                    on:input=move |ev| options.update(|o| if let Some(x) = o.get_mut(i) { *x = event_target_value(&ev) })/>
            }).collect_view()}
            <div class="composer-row">
                <button class="link" type="button" disabled=move || options.with(|o| o.len() >= 10)
                    on:click=move |_| options.update(|o| o.push(String::new()))>"+ Add option"</button>
                <label class="check">
                    <input type="checkbox" prop:checked=move || multiple.get()
                        on:change=move |ev| multiple.set(event_target_checked(&ev))/>
                    "Multiple choice"
                </label>
            </div>
            <div class="composer-row">
                <button class="button secondary" type="button" on:click=move |_| done.run(())>"Cancel"</button>
                <button class="button" type="submit" data-testid="create-poll">"Launch poll"</button>
            </div>
        </form>
    }
}

#[component]
fn PollCard(ctx: PanelContext, poll: Poll, error: RwSignal<Option<String>>) -> impl IntoView {
    let id = StoredValue::new(poll.id.clone());
    let chosen = RwSignal::new(Vec::<i64>::new());
    let multiple = poll.multiple_choice;
    // Hosts and co-hosts run the poll; the class votes.
    let can_vote = poll.open && !poll.voted && !ctx.moderator_untracked();
    let total: i64 = poll.results.as_ref().map(|r| r.iter().sum()).unwrap_or(0);
    let vote = move |_| {
        ctx.run(
            VOTE,
            serde_json::json!({ "p": id.get_value(), "o": chosen.get_untracked() }),
            error,
            |_| {},
        )
    };
    let state_text = match (poll.open, poll.results_shared) {
        (true, _) => "Open",
        (false, true) => "Closed · results shared",
        (false, false) => "Closed",
    };
    let options = poll.options.clone();
    let results = poll.results.clone();
    let mine = poll.my_choices.clone();
    view! {
        <article class="poll card" data-testid="poll" data-open=poll.open.to_string() data-voted=poll.voted.to_string()>
            <header>
                <h3>{poll.question.clone()}</h3>
                <span class="badge" class:good=poll.open>{state_text}</span>
            </header>
            <p class="muted small">{if multiple { "Choose one or more" } else { "Choose one" }}
                {poll.voters.map(|n| format!(" · {n} voted"))}</p>
            <ul class="options">
                {options.into_iter().enumerate().map(|(i, text)| {
                    let i64i = i as i64;
                    let count = results.as_ref().and_then(|r| r.get(i).copied());
                    let pct = count.map(|c| if total > 0 { c * 100 / total } else { 0 });
                    let picked = mine.contains(&i64i);
                    view! {
                        <li class="option" class:picked=picked>
                            {if can_vote {
                                view! {
                                    <label class="check">
                                        <input type=if multiple { "checkbox" } else { "radio" } name=format!("poll-{}", id.get_value())
                                            data-testid="poll-choice"
                                            on:change=move |ev| {
                                                let on = event_target_checked(&ev);
                                                chosen.update(|c| {
                                                    if !multiple { c.clear(); }
                                                    c.retain(|x| *x != i64i);
                                                    if on { c.push(i64i); }
                                                });
                                            }/>
                                        {text.clone()}
                                    </label>
                                }.into_any()
                            } else {
                                view! { <span>{text.clone()}{if picked { " ✓" } else { "" }}</span> }.into_any()
                            }}
                            {pct.map(|p| view! {
                                <div class="bar" title=format!("{} votes", count.unwrap_or(0))>
                                    <span style=format!("width: {p}%")></span>
                                </div>
                                <span class="pct" data-testid="poll-result">{format!("{p}% ({})", count.unwrap_or(0))}</span>
                            })}
                        </li>
                    }
                }).collect_view()}
            </ul>
            {if can_vote {
                view! { <button class="button" data-testid="vote" disabled=move || chosen.with(Vec::is_empty) on:click=vote>"Vote"</button> }.into_any()
            } else if poll.voted && poll.results.is_none() {
                view! { <p class="muted small">"Thanks, your vote is in. Results appear when the host shares them."</p> }.into_any()
            } else {
                ().into_any()
            }}
            <Show when=move || ctx.moderator()>
                <div class="mod-actions">
                    {poll.open.then(|| view! {
                        <button class="link" data-testid="close-poll"
                            on:click=move |_| ctx.run(CLOSE, serde_json::json!({ "p": id.get_value() }), error, |_| {})>"Close poll"</button>
                    })}
                    {
                        let shared = poll.results_shared;
                        view! {
                            <button class="link" data-testid="share-results"
                                on:click=move |_| ctx.run(SHARE, serde_json::json!({ "p": id.get_value(), "v": !shared }), error, |_| {})>
                                {if shared { "Hide results" } else { "Share results with everyone" }}
                            </button>
                        }
                    }
                </div>
            </Show>
        </article>
    }
}
