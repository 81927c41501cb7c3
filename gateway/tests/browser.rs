//! The app in real headless Chromium, served by a real gateway.

mod support;

use support::TestServer;
use support::browser::Browser;

/// The shell renders, navigation works (client-side and deep links), and the status page shows
/// the server as healthy with its database and shards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_shell_renders_and_shows_the_server_healthy() {
    let server = TestServer::with_built_frontend().await;
    let browser = Browser::launch("visitor").await;

    // A deep link to a client-side route is served index.html and routed by the app.
    browser.goto(&format!("{}/status", server.url)).await;
    let state = browser
        .wait_for("[data-testid=server-state][data-state=healthy]")
        .await;
    assert_eq!(state.text().await.unwrap(), "Healthy");
    assert_eq!(browser.text_of("[data-testid=database]").await, "ok");
    assert_eq!(
        browser.text_of("[data-testid=sfu]").await,
        "2 of 2 shards running"
    );
    assert_eq!(browser.text_of(".nav a[aria-current=page]").await, "Status");
    browser.screenshot("app_shell", "status").await;

    // The site's icon is served (browsers ask for /favicon.ico on every page), and the page's
    // own icon link resolves.
    let icons = browser
        .eval(
            "return (async () => {
                const ico = await fetch('/favicon.ico');
                const link = document.querySelector('link[rel=icon]');
                const svg = await fetch(link.href);
                return [ico.status, ico.headers.get('content-type'), svg.status];
            })()",
        )
        .await;
    assert_eq!(icons[0], 200, "GET /favicon.ico: {icons}");
    assert!(
        icons[1].as_str().is_some_and(|t| t.starts_with("image/")),
        "{icons}"
    );
    assert_eq!(icons[2], 200, "the icon link: {icons}");

    // Navigation inside the app.
    browser.click(".nav a[href='/']").await;
    let heading = browser.text_of(".hero h1").await;
    assert_eq!(heading, "Teach live. Keep every class.");
    assert_eq!(browser.path().await, "/");
    browser.screenshot("app_shell", "home").await;

    // Unknown routes get the app's own not-found page.
    browser.goto(&format!("{}/no/such/page", server.url)).await;
    assert_eq!(browser.text_of(".card h1").await, "Page not found");

    // When the media plane stops, the page reports the server as degraded and says why.
    let sfu = server.state().sfu.clone();
    tokio::task::spawn_blocking(move || sfu.shutdown())
        .await
        .unwrap();
    browser.goto(&format!("{}/status", server.url)).await;
    browser
        .wait_for("[data-testid=server-state][data-state=degraded]")
        .await;
    assert_eq!(
        browser.text_of("[data-testid=sfu]").await,
        "0 of 2 shards running"
    );
    assert!(
        browser.text_of(".reasons").await.contains("shard 0"),
        "reasons list the stopped shard"
    );
    browser.screenshot("app_shell", "status-degraded").await;

    browser.close().await;
    server.stop().await;
}
