//! The classroom's side panel in real Chromium: a chat message goes from one student's browser to
//! the host's and the other student's; a question upvoted by two students rises to the top of the
//! host's Q&A list; a poll the host launches shows as unread for a student, who votes, and the
//! host sees the result live. Everything is awaited with a deadline, never a fixed sleep.
//! Screenshots of each tab are kept.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::TestServer;
use support::browser::{Browser, sign_up, until};

const SCENARIO: &str = "panel";
const WAIT: Duration = Duration::from_secs(30);

/// The texts of the chat messages on the page.
async fn chat_bodies(b: &Browser) -> Vec<String> {
    strings(
        b.eval(
            "return [...document.querySelectorAll('[data-testid=chat-message] .body')].map(e => e.textContent);",
        )
        .await,
    )
}

/// The Q&A list as shown: (body, votes) in order.
async fn questions(b: &Browser) -> Vec<(String, String)> {
    let v = b
        .eval(
            "return [...document.querySelectorAll('[data-testid=question]')]
               .map(q => [q.querySelector('[data-testid=question-body]').textContent, q.dataset.votes]);",
        )
        .await;
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    (
                        p[0].as_str().unwrap_or_default().to_owned(),
                        p[1].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn strings(v: Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Clicks the upvote button of the question whose text is `body`; true when it was there.
async fn upvote(b: &Browser, body: &str) -> bool {
    b.eval(&format!(
        "const q = [...document.querySelectorAll('[data-testid=question]')]
            .find(q => q.querySelector('[data-testid=question-body]').textContent === {body:?});
         if (!q) return false; q.querySelector('[data-testid=upvote]').click(); return true;"
    ))
    .await
    .as_bool()
    .unwrap_or(false)
}

async fn ask(b: &Browser, text: &str) {
    b.click("[data-testid=tab-qa]").await;
    b.fill("[data-testid=question-input]", text).await;
    b.click("[data-testid=ask]").await;
    until(WAIT, "the question listed for its asker", || async {
        questions(b)
            .await
            .iter()
            .any(|(q, _)| q == text)
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_questions_and_polls_between_browsers() {
    let server = TestServer::with_built_frontend().await;
    let url = server.url.clone();
    let host = Browser::launch("host").await;
    sign_up(&host, &url, "Hannah Host", "host@example.org").await;
    host.goto(&format!("{url}/classes")).await;
    host.fill("input[name=title]", "Optics 101").await;
    host.click("[data-testid=create-class]").await;
    host.click("[data-testid=schedule]").await;
    host.click("[data-testid=start-session]").await;
    host.wait_for("[data-testid=room-state][data-phase=live]")
        .await;
    let live_url = format!("{url}{}", host.path().await);
    host.wait_for("[data-testid=side-panel]").await;

    let ann = Browser::launch("ann").await;
    sign_up(&ann, &url, "Ann Student", "ann@example.org").await;
    ann.goto(&live_url).await;
    ann.wait_for("[data-testid=side-panel]").await;
    let bo = Browser::launch("bo").await;
    sign_up(&bo, &url, "Bo Student", "bo@example.org").await;
    bo.goto(&live_url).await;
    bo.wait_for("[data-testid=side-panel]").await;
    // Attendees get no moderation controls.
    assert!(
        ann.eval("return document.querySelectorAll('[data-testid=delete-message]').length;")
            .await
            == 0
    );

    // Chat: from Ann's browser to the host's and Bo's.
    ann.fill("[data-testid=chat-input]", "Hello from Ann!")
        .await;
    ann.click("[data-testid=chat-send]").await;
    for b in [&host, &bo] {
        until(WAIT, &format!("{}: Ann's message", b.name), || async {
            chat_bodies(b)
                .await
                .contains(&"Hello from Ann!".to_owned())
                .then_some(())
        })
        .await;
    }
    bo.fill("[data-testid=chat-input]", "Hi Ann").await;
    bo.click("[data-testid=chat-send]").await;
    until(WAIT, "the host: Bo's message", || async {
        (chat_bodies(&host).await.len() == 2).then_some(())
    })
    .await;
    host.screenshot(SCENARIO, "chat").await;

    // Q&A: Bo asks first, Ann second; both upvote Ann's question, which rises to the top of the
    // host's list.
    host.click("[data-testid=tab-qa]").await;
    ask(&bo, "What is a photon?").await;
    ask(&ann, "Why is the sky blue?").await;
    until(
        WAIT,
        "the host: two questions, oldest first on a tie",
        || async {
            let q = questions(&host).await;
            (q.len() == 2 && q[0].0 == "What is a photon?").then_some(())
        },
    )
    .await;
    for b in [&ann, &bo] {
        until(WAIT, &format!("{}: upvote", b.name), || async {
            upvote(b, "Why is the sky blue?").await.then_some(())
        })
        .await;
    }
    let top = until(WAIT, "the host: the upvoted question on top", || async {
        let q = questions(&host).await;
        (q.first().map(|(_, v)| v.as_str()) == Some("2")).then_some(q)
    })
    .await;
    assert_eq!(
        top,
        vec![
            ("Why is the sky blue?".to_owned(), "2".to_owned()),
            ("What is a photon?".to_owned(), "0".to_owned())
        ]
    );
    host.screenshot(SCENARIO, "questions").await;
    ann.screenshot(SCENARIO, "questions").await;

    // Polls: launched by the host, unread on Ann's Chat tab, voted, results live for the host.
    ann.click("[data-testid=tab-chat]").await;
    host.click("[data-testid=tab-polls]").await;
    host.click("[data-testid=new-poll]").await;
    host.fill("[data-testid=poll-question]", "Did that make sense?")
        .await;
    host.eval(
        "const o = document.querySelectorAll('[data-testid=poll-option]');
         const set = (el, v) => { el.value = v; el.dispatchEvent(new Event('input', { bubbles: true })); };
         set(o[0], 'Yes'); set(o[1], 'Not yet'); return true;",
    )
    .await;
    host.click("[data-testid=create-poll]").await;
    ann.wait_for("[data-testid=tab-polls] [data-testid=unread]")
        .await;
    ann.screenshot(SCENARIO, "poll-unread").await;
    ann.click("[data-testid=tab-polls]").await;
    ann.click("[data-testid=poll-choice]").await;
    ann.click("[data-testid=vote]").await;
    ann.wait_for("[data-testid=poll][data-voted=true]").await;
    until(WAIT, "the host: the vote counted", || async {
        let shown = strings(
            host.eval(
                "return [...document.querySelectorAll('[data-testid=poll-result]')].map(e => e.textContent);",
            )
            .await,
        );
        (shown == ["100% (1)", "0% (0)"]).then_some(())
    })
    .await;
    host.screenshot(SCENARIO, "polls").await;
    ann.screenshot(SCENARIO, "polls").await;

    for b in [host, ann, bo] {
        b.close().await;
    }
    server.stop().await;
}
