//! OpenID Connect sign-in against a real provider: panva's `oidc-provider` (npm), run with node on
//! loopback by `tests/oidc/provider.mjs`, whose login and consent complete without a form.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use support::Api;

/// One provider process with one account.
struct Provider {
    child: Child,
    issuer: String,
}

impl Provider {
    fn start(gateway_port: u16, name: &str, sub: &str, email: &str, verified: bool) -> Provider {
        let dir = support::workspace_root().join("gateway/tests/oidc");
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "the test OIDC provider is not installed: run `just setup` (npm ci in gateway/tests/oidc)"
        );
        let mut child = Command::new("node")
            .arg("provider.mjs")
            .current_dir(&dir)
            .env("PORT", "0")
            .env("CLIENT_ID", format!("classroom-{name}"))
            .env("CLIENT_SECRET", format!("secret-{name}"))
            .env(
                "REDIRECT_URI",
                format!("http://127.0.0.1:{gateway_port}/auth/oidc/{name}/callback"),
            )
            .env("ACCOUNT_SUB", sub)
            .env("ACCOUNT_EMAIL", email)
            .env(
                "ACCOUNT_EMAIL_VERIFIED",
                if verified { "true" } else { "false" },
            )
            .env("ACCOUNT_NAME", format!("{name} via OIDC"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node runs the provider");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the provider starts within 20 s");
        let issuer = line
            .trim()
            .strip_prefix("listening ")
            .expect("`listening <issuer>`")
            .to_owned();
        Provider { child, issuer }
    }

    fn config(&self, name: &str) -> gateway::config::OidcProviderConfig {
        gateway::config::OidcProviderConfig {
            issuer: self.issuer.clone(),
            client_id: format!("classroom-{name}"),
            client_secret: format!("secret-{name}"),
            display_name: Some(format!("{name} SSO")),
        }
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser-like client: keeps cookies, follows redirects.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap()
}

/// Runs the whole sign-in with `provider` on `client`; returns the final response status.
async fn sign_in_with(client: &reqwest::Client, base: &str, provider: &str) -> reqwest::StatusCode {
    let response = client
        .get(format!(
            "{base}/auth/oidc/{provider}/start?return_to=/status"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.url().path(),
        "/status",
        "ends where it was asked to return"
    );
    response.status()
}

#[tokio::test]
async fn oidc_sign_in_creates_links_and_refuses_replays() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let alice = Provider::start(port, "alice", "alice-sub", "alice@example.test", true);
    let bob = Provider::start(port, "bob", "bob-sub", "bob@example.test", true);
    let carol = Provider::start(port, "carol", "carol-sub", "carol@example.test", false);

    let data = tempfile::tempdir().unwrap();
    let mut config = support::test_config(data.path(), data.path().join("static"));
    for (name, p) in [("alice", &alice), ("bob", &bob), ("carol", &carol)] {
        config.auth.oidc.insert(name.into(), p.config(name));
    }
    let running = gateway::start_on(listener, config).await.unwrap();
    let base = format!("http://{}", running.local_addr);

    let providers = Api::new(&base)
        .ok("{ authProviders { name displayName startUrl } }", json!({}))
        .await;
    assert_eq!(
        providers["authProviders"][0],
        json!({ "name": "alice", "displayName": "alice SSO", "startUrl": "/auth/oidc/alice/start" })
    );

    // A new person: an account is created from the verified claims.
    let c = browser();
    sign_in_with(&c, &base, "alice").await;
    let me = Api::with_client(c, &base)
        .ok("{ me { id email displayName } }", json!({}))
        .await["me"]
        .clone();
    assert_eq!(me["email"], "alice@example.test");
    assert_eq!(me["displayName"], "alice via OIDC");
    // Again, from another browser: the same account (linked by provider and subject).
    let c = browser();
    sign_in_with(&c, &base, "alice").await;
    assert_eq!(
        Api::with_client(c, &base)
            .ok("{ me { id } }", json!({}))
            .await["me"]["id"],
        me["id"]
    );

    // Someone with a password account signs in through a provider that verified the same email:
    // the accounts are linked.
    let bob_password = Api::new(&base);
    let bob_id = bob_password.sign_up("bob@example.test", "Bob").await;
    let c = browser();
    sign_in_with(&c, &base, "bob").await;
    assert_eq!(
        Api::with_client(c, &base)
            .ok("{ me { id } }", json!({}))
            .await["me"]["id"],
        bob_id.as_str()
    );

    // An unverified email never takes over an existing account.
    let carol_id = Api::new(&base).sign_up("carol@example.test", "Carol").await;
    let c = browser();
    sign_in_with(&c, &base, "carol").await;
    let other = Api::with_client(c, &base)
        .ok("{ me { id email } }", json!({}))
        .await["me"]
        .clone();
    assert_ne!(other["id"], carol_id.as_str());
    assert_eq!(other["email"], serde_json::Value::Null);

    // A callback works once: replaying it (same code and state) is refused.
    let stop_at_callback = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            if attempt.url().path().ends_with("/callback") {
                attempt.stop()
            } else {
                attempt.follow()
            }
        }))
        .build()
        .unwrap();
    let to_callback = stop_at_callback
        .get(format!("{base}/auth/oidc/alice/start"))
        .send()
        .await
        .unwrap();
    let callback = to_callback.headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(callback.contains("state="), "{callback}");
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let first = no_redirects.get(&callback).send().await.unwrap();
    assert_eq!(first.status(), 303);
    assert!(
        first.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("classroom_session=")
    );
    let replay = no_redirects.get(&callback).send().await.unwrap();
    assert_eq!(replay.status(), 400);
    assert!(replay.headers().get("set-cookie").is_none());

    // A state the gateway never issued is refused.
    let forged = no_redirects
        .get(format!(
            "{base}/auth/oidc/alice/callback?code=x&state=forged"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 400);

    running.stop(Duration::from_secs(5)).await;
}
