//! The classroom app: a Leptos client-side-rendered single-page app compiled to WebAssembly.
//!
//! Talks to the gateway over HTTP (GraphQL) and a websocket (GraphQL subscriptions), and to the
//! media server over WebRTC. It never
//! decides what a user may do: the server enforces every permission and the app only hides what the
//! server would refuse.

mod api;
mod app;
mod call;
mod pages;
mod ws;

fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(app::App);
}
