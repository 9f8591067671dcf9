//! Headless Chromium driven over WebDriver (`chromedriver`), for the dashboard tests.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A chromedriver process (in its own process group, with the Chromium it starts) and a
/// WebDriver session on it. Dropping it kills the group, so a failing test leaves no
/// browser behind.
pub struct Browser {
    pub client: Client,
    driver: Child,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a headless Chromium window of
    /// `width` × `height` that keeps its console log. Fails (never skips) when Chromium or
    /// chromedriver is missing, saying how to install them.
    pub async fn start(width: u32, height: u32) -> Browser {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                std::path::Path::new(path).exists(),
                "{path} is missing: the dashboard tests drive Debian's headless Chromium. \
                 Install it with `apt-get install -y chromium chromium-driver` \
                 (.ci/run does this when it is absent); package {package}"
            );
        }
        let port = free_port();
        let mut command = Command::new(CHROMEDRIVER);
        command
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let driver = command.spawn().expect("starting chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-extensions", "--hide-scrollbars",
                    "--force-color-profile=srgb", "--lang=en-US",
                    format!("--window-size={width},{height}"),
                ],
            }),
        );
        capabilities.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut browser = Browser {
            client: loop {
                match ClientBuilder::new(connector.clone())
                    .capabilities(capabilities.clone())
                    .connect(&url)
                    .await
                {
                    Ok(client) => break client,
                    Err(e) => {
                        assert!(
                            Instant::now() < deadline,
                            "chromedriver did not open a session: {e}"
                        );
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            },
            driver,
        };
        browser.resize(width, height).await;
        browser
    }

    pub async fn resize(&mut self, width: u32, height: u32) {
        self.client
            .set_window_size(width, height)
            .await
            .expect("resizing the window");
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigating");
    }

    /// The first element matching `css`, waiting up to 15 s for it.
    pub async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(15))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css} within 15 s: {e}"))
    }

    pub async fn all(&self, css: &str) -> Vec<fantoccini::elements::Element> {
        self.client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("finding {css}: {e}"))
    }

    /// The element's rendered text, read in one script: a live view may redraw the
    /// element between a find and a separate read (a stale element reference).
    pub async fn text(&self, css: &str) -> String {
        let selector = serde_json::to_string(css).expect("a selector is a string");
        let script = format!(
            "const e = document.querySelector({selector}); return e ? e.innerText.trim() : null"
        );
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Value::String(text) = self.eval(&script).await {
                return text;
            }
            assert!(Instant::now() < deadline, "no element {css} within 15 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the dashboard has drawn the view of the current location (it marks
    /// `<main>` busy while loading, then names the route it drew).
    pub async fn wait_view(&self) {
        self.wait_until(
            Duration::from_secs(15),
            "the dashboard draws the current view",
            "const m = document.getElementById('main'); return !m.hasAttribute('aria-busy') && m.dataset.route === location.hash",
        )
        .await;
    }

    /// Clicks the element `css` (waiting for it).
    pub async fn click(&self, css: &str) {
        self.wait_for(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
    }

    /// Clicks `css`, which changes the view, and waits until the new one is drawn.
    pub async fn click_to_view(&self, css: &str) {
        self.click(css).await;
        self.wait_view().await;
    }

    /// Chooses `value` in the `<select>` `css` and waits for the view it leads to.
    pub async fn select_to_view(&self, css: &str, value: &str) {
        self.wait_for(css)
            .await
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("choosing {value} in {css}: {e}"));
        self.wait_view().await;
    }

    /// Waits (up to 15 s) until `script` returns `true`; `what` names the expectation.
    pub async fn expect(&self, what: &str, script: &str) {
        self.wait_until(Duration::from_secs(15), what, script).await;
    }

    /// Runs `script` in the page (its `return` value as JSON).
    pub async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("running {script:?}: {e}"))
    }

    /// Polls `script` until it returns `true`, failing with `what` after `limit`.
    pub async fn wait_until(&self, limit: Duration, what: &str, script: &str) {
        let deadline = Instant::now() + limit;
        loop {
            if self.eval(script).await == Value::Bool(true) {
                return;
            }
            assert!(Instant::now() < deadline, "{what} (within {limit:?})");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The browser console entries (messages, exceptions, failed loads) since the last call.
    pub async fn console(&self) -> Vec<Value> {
        let log = self
            .client
            .issue_cmd(BrowserLog)
            .await
            .expect("reading the browser log");
        log.as_array().cloned().unwrap_or_default()
    }

    /// A PNG of the viewport, written to `dir/name`.
    pub async fn screenshot(&self, dir: &std::path::Path, name: &str) {
        let png = self.client.screenshot().await.expect("taking a screenshot");
        std::fs::create_dir_all(dir).expect("creating the screenshot folder");
        std::fs::write(dir.join(name), png).expect("writing the screenshot");
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        self.kill();
    }

    fn kill(&mut self) {
        if let Ok(pid) = i32::try_from(self.driver.id()) {
            // SAFETY: kill(2) on the process group this test created for chromedriver.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.kill();
    }
}

/// chromedriver's `POST /session/{id}/se/log` for the `browser` log.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}
