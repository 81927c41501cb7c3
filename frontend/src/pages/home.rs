//! `/`: what the product is.

use leptos::prelude::*;
use leptos_router::components::A;

#[component]
pub fn Home() -> impl IntoView {
    view! {
        <section class="hero">
            <h1>"Teach live. Keep every class."</h1>
            <p class="lead">
                "Classroom runs live classes in the browser: the host teaches on stage, co-hosts "
                "moderate, viewers watch, chat, ask questions and raise their hand. Every session "
                "is recorded to one video file to watch again later."
            </p>
            <p class="muted">
                "This server runs the whole product on one machine: the web app, the API and the "
                "media server. "
                <A href="/status">"See how it is doing."</A>
            </p>
        </section>
    }
}
