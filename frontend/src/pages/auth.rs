//! `/signin`: sign in or sign up with email and password, or with a configured identity provider.

use leptos::prelude::*;
use leptos_router::hooks::{use_navigate, use_query_map};

use crate::api;
use crate::app::Session;

#[component]
pub fn SignIn() -> impl IntoView {
    let session = expect_context::<Session>();
    let query = use_query_map();
    let next = move || {
        query
            .read()
            .get("next")
            .filter(|n| is_local_path(n))
            .unwrap_or_else(|| "/classes".to_owned())
    };
    // `?mode=signup` opens the form on "Create your account" (the classroom's sign-up link).
    let signing_up = RwSignal::new(query.read_untracked().get("mode").as_deref() == Some("signup"));
    let (email, name, password) = (
        RwSignal::new(String::new()),
        RwSignal::new(String::new()),
        RwSignal::new(String::new()),
    );
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let providers = LocalResource::new(|| async {
        api::graphql(
            "{ authProviders { name displayName startUrl } }",
            serde_json::json!({}),
        )
        .await
        .ok()
        .and_then(|d| d["authProviders"].as_array().cloned())
        .unwrap_or_default()
    });
    let navigate = use_navigate();
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        busy.set(true);
        error.set(None);
        let navigate = navigate.clone();
        let up = signing_up.get_untracked();
        let vars = if up {
            serde_json::json!({ "i": { "email": email.get_untracked(), "password": password.get_untracked(), "displayName": name.get_untracked() } })
        } else {
            serde_json::json!({ "i": { "email": email.get_untracked(), "password": password.get_untracked() } })
        };
        let query = if up {
            "mutation($i: SignUpInput!) { signUp(input: $i) { id displayName } }"
        } else {
            "mutation($i: SignInInput!) { signIn(input: $i) { id displayName } }"
        };
        let target = next();
        leptos::task::spawn_local(async move {
            match api::graphql(query, vars).await {
                Ok(data) => {
                    let user = if up { &data["signUp"] } else { &data["signIn"] };
                    session.user.set(Some((
                        user["id"].as_str().unwrap_or_default().to_owned(),
                        user["displayName"].as_str().unwrap_or_default().to_owned(),
                    )));
                    navigate(&target, Default::default());
                }
                Err(e) => error.set(Some(e.message)),
            }
            busy.set(false);
        });
    };
    view! {
        <section class="card narrow auth">
            <h1>{move || if signing_up.get() { "Create your account" } else { "Sign in" }}</h1>
            <form on:submit=submit class="form">
                <Show when=move || signing_up.get()>
                    <label>"Your name"
                        <input name="name" required autocomplete="name"
                            prop:value=move || name.get()
                            on:input=move |ev| name.set(event_target_value(&ev))/>
                    </label>
                </Show>
                <label>"Email"
                    <input name="email" type="email" required autocomplete="email"
                        prop:value=move || email.get()
                        on:input=move |ev| email.set(event_target_value(&ev))/>
                </label>
                <label>"Password"
                    <input name="password" type="password" required minlength="10"
                        autocomplete=move || if signing_up.get() { "new-password" } else { "current-password" }
                        prop:value=move || password.get()
                        on:input=move |ev| password.set(event_target_value(&ev))/>
                </label>
                <Show when=move || error.get().is_some()>
                    <p class="error" role="alert" data-testid="auth-error">{move || error.get().unwrap_or_default()}</p>
                </Show>
                <button class="button" type="submit" disabled=move || busy.get() data-testid="auth-submit">
                    {move || if signing_up.get() { "Create account" } else { "Sign in" }}
                </button>
            </form>
            <p class="muted switch">
                {move || if signing_up.get() { "Already have an account? " } else { "New here? " }}
                <button class="link" type="button" data-testid="auth-toggle"
                    on:click=move |_| signing_up.update(|s| *s = !*s)>
                    {move || if signing_up.get() { "Sign in" } else { "Create an account" }}
                </button>
            </p>
            <Suspense fallback=|| ()>
                {move || providers.get().map(|list| {
                    let list: Vec<serde_json::Value> = list.to_vec();
                    (!list.is_empty()).then(|| view! {
                        <div class="providers">
                            <p class="muted">"Or continue with"</p>
                            {list.into_iter().map(|p| {
                                // Back to where the visitor was going (a class link) after the provider.
                                let start = p["startUrl"].as_str().unwrap_or("#");
                                let url = format!("{start}{}return_to={}", if start.contains('?') { '&' } else { '?' },
                                    js_sys::encode_uri_component(&next()));
                                let label = p["displayName"].as_str().unwrap_or("provider").to_owned();
                                view! { <a class="button secondary" href=url rel="external">{label}</a> }
                            }).collect_view()}
                        </div>
                    })
                })}
            </Suspense>
        </section>
    }
}

/// Whether `next` is a path on this site (never another origin: `//host`, `/\\host`).
pub fn is_local_path(next: &str) -> bool {
    next.starts_with('/') && !next.starts_with("//") && !next.contains('\\')
}

#[cfg(test)]
mod tests {
    use super::is_local_path;

    #[test]
    fn only_paths_of_this_site_are_return_addresses() {
        assert!(is_local_path("/live/42"));
        assert!(is_local_path("/classes?x=1"));
        assert!(!is_local_path("//evil.example/live/42"));
        assert!(!is_local_path("/\\evil.example"));
        assert!(!is_local_path("https://evil.example/"));
        assert!(!is_local_path("live/42"));
    }
}
