//! The shell: router, header with navigation and the signed-in user, page outlet, footer.

use leptos::prelude::*;
use leptos_router::components::{A, Route, Router, Routes};
use leptos_router::path;

use crate::api;
use crate::pages::{
    auth::SignIn, classes::ClassPage, classes::Classes, classroom::Classroom, home::Home,
    not_found::NotFound, status::Status, vod::Vod,
};

/// Who is signed in (id, display name), shared by every page.
#[derive(Clone, Copy)]
pub struct Session {
    pub user: RwSignal<Option<(String, String)>>,
    /// The first check of the session cookie has answered.
    pub checked: RwSignal<bool>,
}

#[component]
pub fn App() -> impl IntoView {
    let session = Session {
        user: RwSignal::new(None),
        checked: RwSignal::new(false),
    };
    provide_context(session);
    leptos::task::spawn_local(async move {
        session.user.set(api::me().await);
        session.checked.set(true);
    });
    let sign_out = move |_| {
        leptos::task::spawn_local(async move {
            let _ = api::graphql("mutation { signOut }", serde_json::json!({})).await;
            session.user.set(None);
            if let Some(w) = web_sys::window() {
                let _ = w.location().set_href("/");
            }
        });
    };
    view! {
        <Router>
            <div class="shell">
                <header class="topbar">
                    <A href="/" attr:class="brand">
                        <span class="brand-mark" aria-hidden="true">"◐"</span>
                        "Classroom"
                    </A>
                    <nav class="nav" aria-label="Main">
                        <A href="/" exact=true>"Home"</A>
                        <A href="/classes">"Classes"</A>
                        <A href="/status">"Status"</A>
                    </nav>
                    <div class="account">
                        {move || match session.user.get() {
                            Some((_, name)) => view! {
                                <span class="who" data-testid="signed-in-as">{name}</span>
                                <button class="button secondary small" on:click=sign_out>"Sign out"</button>
                            }.into_any(),
                            None => view! {
                                <A href="/signin" attr:class="button small">"Sign in"</A>
                            }.into_any(),
                        }}
                    </div>
                </header>
                <main class="content">
                    <Routes fallback=|| view! { <NotFound/> }>
                        <Route path=path!("/") view=Home/>
                        <Route path=path!("/status") view=Status/>
                        <Route path=path!("/signin") view=SignIn/>
                        <Route path=path!("/classes") view=Classes/>
                        <Route path=path!("/classes/:id") view=ClassPage/>
                        <Route path=path!("/live/:id") view=Classroom/>
                        <Route path=path!("/recordings/:id") view=Vod/>
                    </Routes>
                </main>
                <footer class="footer">
                    "Classroom · live classes in the browser"
                </footer>
            </div>
        </Router>
    }
}
