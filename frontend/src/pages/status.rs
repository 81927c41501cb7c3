//! `/status`: the server's health and readiness, refreshed every few seconds.

use std::time::Duration;

use leptos::prelude::*;

use crate::api::{self, ServerStatus};

/// How often the page asks the server again.
const REFRESH: Duration = Duration::from_secs(5);

#[component]
pub fn Status() -> impl IntoView {
    let (tick, set_tick) = signal(0u32);
    let status = LocalResource::new(move || {
        tick.track();
        api::server_status()
    });
    set_interval(move || set_tick.update(|t| *t = t.wrapping_add(1)), REFRESH);

    view! {
        <section class="card">
            <div class="card-head">
                <h1>"Server status"</h1>
                <button class="button secondary" on:click=move |_| set_tick.update(|t| *t = t.wrapping_add(1))>
                    "Refresh"
                </button>
            </div>
            {move || match status.get() {
                None => view! { <p class="muted" data-testid="status-loading">"Asking the server…"</p> }.into_any(),
                Some(Err(error)) => view! {
                    <p class="badge bad" data-testid="server-state" data-state="unreachable">"Unreachable"</p>
                    <p class="error">{error}</p>
                }.into_any(),
                Some(Ok(s)) => status_view(s).into_any(),
            }}
        </section>
    }
}

fn status_view(s: ServerStatus) -> impl IntoView {
    let ready = s.readiness.status == "ready";
    let (state, label, class) = if ready {
        ("healthy", "Healthy", "badge good")
    } else {
        ("degraded", "Degraded", "badge warn")
    };
    let shards_ok = s.readiness.sfu_shards_running == s.readiness.sfu_shards;
    view! {
        <p class=class data-testid="server-state" data-state=state>{label}</p>
        <dl class="facts">
            <dt>"Server"</dt>
            <dd>{format!("up {} · version {}", uptime(s.health.uptime_seconds), s.health.version)}</dd>
            <dt>"Database"</dt>
            <dd class:bad=s.readiness.database != "ok" data-testid="database">{s.readiness.database.clone()}</dd>
            <dt>"Media server"</dt>
            <dd class:bad=!shards_ok data-testid="sfu">
                {format!("{} of {} shards running", s.readiness.sfu_shards_running, s.readiness.sfu_shards)}
            </dd>
        </dl>
        <ul class="reasons">
            {s.readiness.reasons.into_iter().map(|r| view! { <li>{r}</li> }).collect_view()}
        </ul>
    }
}

/// `3 h 05 min`, `4 min 10 s`, `12 s`.
fn uptime(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, (seconds / 60) % 60, seconds % 60);
    if h > 0 {
        format!("{h} h {m:02} min")
    } else if m > 0 {
        format!("{m} min {s:02} s")
    } else {
        format!("{s} s")
    }
}
