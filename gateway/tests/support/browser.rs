//! Real headless Chromium, driven over WebDriver (Debian's `chromium` + `chromium-driver`).
//!
//! Every [`Browser`] has its own chromedriver process (on a port it picks itself and announces) and
//! its own fresh profile directory, so a scenario can open several browsers side by side (a host and
//! two viewers). The flags are the ones known to work here (see shared/E2E.md): fake camera and
//! microphone, no sandbox (root), loopback-only networking. Chromium keeps its normal autoplay
//! policy: a page opened from a link may not start sound without a click, as for real users.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The real Chromium binary (`/usr/bin/chromium` is a wrapper script that adds flags of its own).
const CHROMIUM: &str = "/usr/lib/chromium/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Longest a scenario waits for something to appear on a page.
pub const WAIT: Duration = Duration::from_secs(20);

/// One browser with its own driver process and profile.
pub struct Browser {
    /// Name used for artifacts (`host`, `viewer-1`).
    pub name: String,
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile.
    pub async fn launch(name: &str) -> Browser {
        for binary in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(binary).exists(),
                "{binary} is missing: run `just setup` (installs Debian's chromium and chromium-driver)"
            );
        }
        let (driver, port) = start_driver().await;

        let profile = tempfile::tempdir().expect("profile dir");
        let args = vec![
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--use-fake-device-for-media-stream".to_owned(),
            "--use-fake-ui-for-media-stream".to_owned(),
            "--allow-loopback-in-peer-connection".to_owned(),
            "--disable-features=WebRtcHideLocalIpsWithMdns".to_owned(),
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1".to_owned(),
            "--window-size=1280,800".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_owned(),
            serde_json::json!({ "binary": CHROMIUM, "args": args }),
        );
        let client = ClientBuilder::native()
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("WebDriver session with Chromium");
        Browser {
            name: name.to_owned(),
            client,
            driver,
            _profile: profile,
        }
    }

    /// Opens `url` and waits until the document has loaded.
    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("{}: cannot open {url}: {e}", self.name));
    }

    /// Reloads the page, as the browser's reload button does, and waits until it has loaded.
    pub async fn reload(&self) {
        self.client
            .refresh()
            .await
            .unwrap_or_else(|e| panic!("{}: cannot reload: {e}", self.name));
    }

    /// Waits (up to [`WAIT`]) for an element matching `css`.
    pub async fn wait_for(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{}: no element `{css}` within {WAIT:?}: {e}", self.name))
    }

    /// Text of the first element matching `css`, once it exists. An element the page replaced
    /// between finding it and reading it (a re-render) is looked up again, within [`WAIT`].
    pub async fn text_of(&self, css: &str) -> String {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            match self.wait_for(css).await.text().await {
                Ok(text) => return text,
                Err(e)
                    if std::time::Instant::now() < deadline && e.to_string().contains("stale") => {}
                Err(e) => panic!("{}: text of `{css}`: {e}", self.name),
            }
        }
    }

    /// Clicks the first element matching `css`, once it exists.
    pub async fn click(&self, css: &str) {
        self.wait_for(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("{}: click `{css}`: {e}", self.name));
    }

    /// Types `text` into the first element matching `css`, once it exists.
    pub async fn fill(&self, css: &str, text: &str) {
        self.wait_for(css)
            .await
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("{}: type into `{css}`: {e}", self.name));
    }

    /// The page's current path (`/status`).
    pub async fn path(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("current url")
            .path()
            .to_owned()
    }

    /// Runs JavaScript in the page and returns its result.
    pub async fn eval(&self, script: &str) -> serde_json::Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("{}: script failed: {e}", self.name))
    }

    /// Saves a PNG of the page as `<artifacts>/<scenario>/<browser>-<label>.png` and returns its path.
    pub async fn screenshot(&self, scenario: &str, label: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = super::artifacts_dir().join(scenario);
        std::fs::create_dir_all(&dir).expect("artifacts dir");
        let path = dir.join(format!("{}-{label}.png", self.name));
        std::fs::write(&path, png).expect("write screenshot");
        eprintln!("screenshot: {}", path.display());
        path
    }

    /// Ends the WebDriver session (closing Chromium) and stops the driver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill().await;
    }
}

/// Starts chromedriver on a port it picks itself. A driver that exits before announcing its port
/// (seen once on a fresh CI machine, with no message kept) is started again, up to three times; what
/// it printed and how it exited are reported, on the retry and in the final failure.
async fn start_driver() -> (Child, u16) {
    let mut failures = Vec::new();
    for _ in 0..3 {
        // Its own process group, with the Chromium it starts: a test that fails (and drops the
        // browser without closing it) still takes every process with it.
        let mut driver = Command::new(CHROMEDRIVER)
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        match announced_port(&mut driver).await {
            Ok(port) => return (driver, port),
            Err(output) => {
                let status = driver.wait().await.map(|s| s.to_string());
                let mut stderr = String::new();
                if let Some(mut pipe) = driver.stderr.take() {
                    let _ = tokio::io::AsyncReadExt::read_to_string(&mut pipe, &mut stderr).await;
                }
                let failure = format!(
                    "chromedriver exited ({status:?}) without announcing its port; \
                     stdout: {output:?}; stderr: {stderr:?}"
                );
                eprintln!("{failure}; starting it again");
                failures.push(failure);
            }
        }
    }
    panic!("chromedriver never started: {failures:#?}");
}

/// Reads chromedriver's stdout until it says which port it listens on; what it printed otherwise.
async fn announced_port(driver: &mut Child) -> Result<u16, String> {
    let stdout = driver.stdout.take().expect("piped stdout");
    let stderr = driver.stderr.take().expect("piped stderr");
    let mut lines = BufReader::new(stdout).lines();
    let read = async {
        let mut printed = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                return Ok(rest
                    .trim_end_matches('.')
                    .trim()
                    .parse::<u16>()
                    .expect("port number"));
            }
            printed.push_str(&line);
            printed.push('\n');
        }
        Err(printed)
    };
    let port = tokio::time::timeout(WAIT, read)
        .await
        .expect("chromedriver announces its port");
    match port {
        Ok(port) => {
            // Keep draining its output so the driver never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            let mut errors = BufReader::new(stderr).lines();
            tokio::spawn(async move { while let Ok(Some(_)) = errors.next_line().await {} });
            Ok(port)
        }
        Err(printed) => {
            driver.stderr = Some(stderr);
            Err(printed)
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(pid) = self
            .driver
            .id()
            .and_then(|id| rustix::process::Pid::from_raw(id as i32))
        {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

/// Creates an account in the app on `b` (the sign-in page, switched to sign-up) and waits until
/// it is signed in.
pub async fn sign_up(b: &Browser, url: &str, name: &str, email: &str) {
    b.goto(&format!("{url}/signin")).await;
    b.click("[data-testid=auth-toggle]").await;
    fill_sign_up(b, name, email).await;
}

/// Fills the sign-up form already shown on `b` and submits it; waits until signed in.
pub async fn fill_sign_up(b: &Browser, name: &str, email: &str) {
    b.fill("input[name=name]", name).await;
    b.fill("input[name=email]", email).await;
    b.fill("input[name=password]", "correct horse battery")
        .await;
    b.click("[data-testid=auth-submit]").await;
    b.wait_for("[data-testid=signed-in-as]").await;
}

/// Polls `check` every 250 ms until it gives a value, for at most `wait` (then panics naming
/// `what`): a wait on a condition, never a fixed sleep.
pub async fn until<T, F, Fut>(wait: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + wait;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
