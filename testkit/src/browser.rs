//! A real headless Chromium for the browser suites: Debian's `chromium` and `chromium-driver`,
//! driven over WebDriver with `fantoccini`.
//!
//! [`Chromium::start`] runs one `chromedriver` on a loopback port; each [`Chromium::device`] is
//! a WebDriver session, which chromedriver backs with a browser of its own and a fresh profile:
//! its own cookies, as a second phone or laptop would have. Screenshots go under
//! `target/screenshots/` ([`screenshot`]).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use serde_json::json;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// The browser's window: wide enough for the tables, the size most screenshots are read at.
pub const WINDOW: (u32, u32) = (1100, 900);

/// A running chromedriver; killed when dropped.
pub struct Chromium {
    driver: Child,
    url: String,
}

impl Chromium {
    /// Starts chromedriver (`CHROMEDRIVER`, default `chromedriver` on the `PATH`) on a free
    /// loopback port. Panics, naming the packages to install, when it is missing.
    pub async fn start() -> Chromium {
        let program = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let mut driver = Command::new(&program)
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot run {program} ({error}): install Debian's chromium and \
                     chromium-driver (apt-get install chromium chromium-driver)"
                )
            });
        // "ChromeDriver was started successfully on port 41235."
        let stdout = driver.stdout.take().expect("chromedriver stdout");
        let mut lines = BufReader::new(stdout).lines();
        let port = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await.expect("chromedriver output") {
                // (The first line, "Starting ChromeDriver ... on port 0", names the port asked.)
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    return rest.trim_end_matches('.').trim().parse::<u16>().ok();
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .expect("chromedriver says which port it listens on");
        // Keep draining its output, so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Chromium {
            driver,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// A new device: a headless browser with an empty profile. `CHROMIUM` names the browser
    /// binary (default: chromedriver's own choice, `/usr/bin/chromium` on Debian).
    pub async fn device(&self) -> Client {
        let mut options = json!({
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                format!("--window-size={},{}", WINDOW.0, WINDOW.1),
            ],
        });
        if let Ok(binary) = std::env::var("CHROMIUM") {
            options["binary"] = json!(binary);
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert("goog:chromeOptions".into(), options);
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("chromedriver opens a browser")
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.driver.start_kill();
    }
}

/// Saves what `browser` shows as `target/screenshots/{name}.png`; returns the path.
pub async fn screenshot(browser: &Client, name: &str) -> PathBuf {
    let png = browser.screenshot().await.expect("screenshot taken");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, png).expect("screenshot written");
    path
}
