//! A real headless browser for the dashboard tests: Debian's chromium driven through
//! chromedriver (WebDriver) with fantoccini, with axe-core (the accessibility checker injected
//! into each page), screenshots and the browser's console log. Installed by
//! scripts/ci-setup-chromium.sh. Shared by the server's dashboard suites (through `browser`) and
//! the controller's clusters-and-jobs suite (included by path): it needs only skycat-server's
//! public types, no test harness of either crate.

#![allow(dead_code)]

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use skycat_server::{Auth, Principal, Role, TokenVerifier};

/// The API token the tests sign in with, and its holder.
pub const TOKEN: &str = "skycat_test_token_0123456789abcdef";
pub const USER: &str = "alice";

/// A token checker over a fixed list: the dashboard sees it exactly as the state DB's.
pub struct FixedTokens(pub Vec<(String, Principal)>);

#[async_trait::async_trait]
impl TokenVerifier for FixedTokens {
    async fn verify(&self, token: &str) -> Result<Option<Principal>, String> {
        Ok(self.0.iter().find(|(t, _)| t == token).map(|(_, p)| p.clone()))
    }
}

pub fn auth() -> Auth {
    Auth {
        verifier: Arc::new(FixedTokens(vec![(TOKEN.into(), Principal { name: USER.into(), role: Role::User })])),
    }
}

/// Where screenshots go: `$CARGO_TARGET_DIR/dashboard-screenshots/` (the target dir found from
/// this test binary's own build when the variable is unset).
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).parent().expect("target dir").to_path_buf());
    let dir = target.join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).expect("create the screenshot dir");
    dir
}

/// axe-core as scripts/ci-setup-chromium.sh installs it.
pub fn axe_source() -> String {
    let dir = std::env::var("SKYCAT_AXE_DIR").unwrap_or_else(|_| "/var/cache/skycat-ci/axe-core".into());
    let path = PathBuf::from(dir).join("node_modules/axe-core/axe.min.js");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/ci-setup-chromium.sh (as root) to install axe-core", path.display()))
}

/// chromedriver's log of the browser console (`POST /session/{id}/se/log`), which W3C WebDriver
/// has no command for.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(&self, base_url: &url::Url, session_id: Option<&str>) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!("session/{}/se/log", session_id.unwrap_or("")))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.to_owned()))
    }
}

/// A chromedriver process and a browser session on it; both end on drop / [`Browser::close`].
pub struct Browser {
    pub client: Client,
    driver: Child,
    pub base: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

impl Browser {
    pub async fn start(base: &str) -> Browser {
        let driver_bin = which("chromedriver");
        let chromium = which("chromium");
        let port = free_port();
        // Its own process group, so that the browsers it starts end with it even when a test
        // panics before closing its session (see `Drop`).
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", driver_bin.display()));
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen on port {port} within 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let caps = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                // --no-sandbox: CI runs as root, where chromium's sandbox refuses to start.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,800", "--no-first-run", "--disable-extensions"],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        });
        let caps: serde_json::Map<String, serde_json::Value> = caps.as_object().expect("object").clone();
        // rustls is linked with two crypto providers (ring here, aws-lc-rs by the AWS SDK): name one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = ClientBuilder::rustls()
            .expect("rustls connector")
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await;
        let mut driver = driver;
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                kill_group(&mut driver);
                panic!("open a chromium session through chromedriver: {e}");
            }
        };
        Browser { client, driver, base: base.to_owned() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn goto(&self, path: &str) {
        self.client.goto(&self.url(path)).await.unwrap_or_else(|e| panic!("goto {path}: {e}"));
    }

    /// The path and query the browser is on.
    pub async fn here(&self) -> String {
        let u = self.client.current_url().await.expect("current url");
        match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_owned(),
        }
    }

    /// The text of the first element matching `css`. A page that follows a job live swaps its
    /// parts every 2 s, so an element found a moment ago may be replaced before it is read: the
    /// element is then found again (a few times), never read stale.
    pub async fn text(&self, css: &str) -> String {
        for _ in 0..20 {
            let element = self
                .client
                .find(Locator::Css(css))
                .await
                .unwrap_or_else(|e| panic!("no element `{css}` on {}: {e}", self.url("")));
            match element.text().await {
                Ok(text) => return text,
                Err(e) if e.is_stale_element_reference() => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => panic!("text of `{css}`: {e}"),
            }
        }
        panic!("`{css}` was replaced 20 times in a row while being read")
    }

    pub async fn count(&self, css: &str) -> usize {
        self.client.find_all(Locator::Css(css)).await.expect("find_all").len()
    }

    /// Signs in through the login page with [`TOKEN`] (the browser starts without a cookie).
    pub async fn login(&self) {
        self.login_with(TOKEN).await
    }

    /// Signs in through the login page with `token`.
    pub async fn login_with(&self, token: &str) {
        self.goto("/ui/login").await;
        let field = self.client.find(Locator::Id("token")).await.expect("token field");
        field.send_keys(token).await.expect("type the token");
        self.client.find(Locator::Css("form.login button")).await.expect("button").click().await.expect("submit");
        self.wait_for("#main h1").await;
        assert!(!self.here().await.starts_with("/ui/login"), "still on the login page after signing in");
    }

    /// Waits (up to 10 s) for an element to exist.
    pub async fn wait_for(&self, css: &str) {
        self.wait_for_within(css, Duration::from_secs(10)).await
    }

    /// Waits up to `timeout` for an element to exist.
    pub async fn wait_for_within(&self, css: &str, timeout: Duration) {
        if self
            .client
            .wait()
            .at_most(timeout)
            .for_element(Locator::Css(css))
            .await
            .is_err()
        {
            let text = self.text("body").await;
            panic!("`{css}` did not appear on {}: the page says:\n{text}", self.here().await);
        }
    }

    /// Console errors since the last call (chromedriver drains its log on each read):
    /// `console.error`, uncaught exceptions, failed loads, CSP refusals.
    pub async fn console_errors(&self) -> Vec<String> {
        let entries = self.client.issue_cmd(BrowserLog).await.expect("read the browser log");
        entries
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|e| e["level"].as_str() == Some("SEVERE"))
                    .map(|e| e["message"].as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// axe-core's violations of impact `critical` on the current page (all are printed).
    pub async fn critical_a11y_violations(&self) -> Vec<String> {
        self.client.execute(&axe_source(), vec![]).await.expect("inject axe-core");
        let script = r#"
            const done = arguments[arguments.length - 1];
            axe.run(document, {resultTypes: ['violations']})
              .then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                    nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))))
              .catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]));
        "#;
        let v = self.client.execute_async(script, vec![]).await.expect("run axe-core");
        let mut critical = Vec::new();
        for item in v.as_array().cloned().unwrap_or_default() {
            let line = format!("{} ({}): {} at {}", item["id"], item["impact"], item["help"], item["nodes"]);
            eprintln!("axe: {line}");
            if item["impact"].as_str() == Some("critical") {
                critical.push(line);
            }
        }
        critical
    }

    /// Saves a screenshot as `<dir>/<name>.png`.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let path = screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// The checks every page gets: no console errors, no critical accessibility violation, no
    /// horizontal overflow of the page at desktop (1280×800) and phone (390×844) width, and a
    /// screenshot at each.
    pub async fn check_page(&self, name: &str) {
        let errors = self.console_errors().await;
        assert!(errors.is_empty(), "{name}: console errors: {errors:#?}");
        let critical = self.critical_a11y_violations().await;
        assert!(critical.is_empty(), "{name}: critical accessibility violations: {critical:#?}");
        for (w, h, suffix) in [(1280u32, 800u32, "desktop"), (390, 844, "phone")] {
            self.client.set_window_size(w, h).await.expect("resize");
            let overflow = self
                .client
                .execute("return document.documentElement.scrollWidth - document.documentElement.clientWidth;", vec![])
                .await
                .expect("measure");
            self.screenshot(&format!("{name}-{suffix}")).await;
            assert!(
                overflow.as_i64().unwrap_or(0) <= 1,
                "{name}: the page is {overflow} px wider than a {w} px window (tables must scroll in their own box)"
            );
        }
        self.client.set_window_size(1280, 800).await.expect("resize");
        let errors = self.console_errors().await;
        assert!(errors.is_empty(), "{name}: console errors: {errors:#?}");
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        kill_group(&mut self.driver);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_group(&mut self.driver);
    }
}

/// Ends chromedriver and everything in its process group (the chromium it started).
fn kill_group(driver: &mut Child) {
    let _ = Command::new("kill").arg("-KILL").arg("--").arg(format!("-{}", driver.id())).status();
    let _ = driver.kill();
    let _ = driver.wait();
}

fn which(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{name}` is not on PATH: run scripts/ci-setup-chromium.sh (as root) to install chromium and chromium-driver"))
}
