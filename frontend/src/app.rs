//! The shell: router, header with navigation, page outlet, footer.

use leptos::prelude::*;
use leptos_router::components::{A, Route, Router, Routes};
use leptos_router::path;

use crate::pages::{home::Home, not_found::NotFound, status::Status};

#[component]
pub fn App() -> impl IntoView {
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
                        <A href="/status">"Status"</A>
                    </nav>
                </header>
                <main class="content">
                    <Routes fallback=|| view! { <NotFound/> }>
                        <Route path=path!("/") view=Home/>
                        <Route path=path!("/status") view=Status/>
                    </Routes>
                </main>
                <footer class="footer">
                    "Classroom · live classes in the browser"
                </footer>
            </div>
        </Router>
    }
}
