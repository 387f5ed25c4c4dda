//! A person in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`)
//! against the real auth-service, orders-service and gateway, in each verifier mode.
//!
//! The gateway is reached through a [`TcpProxy`] on `localhost`, so that its public URL (the
//! redirect URI registered at the issuer, and where the issuer's sign-in page is served) is known
//! before it starts, and the browser treats the origin as secure (`__Host-` cookies).
//!
//! Each scenario signs in on the issuer's page, places and cancels an order, signs in on a
//! second device (another browser, another profile), and logs out the other devices from the
//! first: the second device's next page is the sign-in page, at once in `stateful`, within the
//! push in `hybrid`, and once its access token expires in `stateless`. Screenshots of each page
//! land in `target/screenshots/`.

use std::time::{Duration, Instant};

use authn::config::AuthMode;
use fantoccini::{Client, Locator};
use testkit::browser::{Chromium, screenshot};
use testkit::stack::{Options, PASSWORD, Stack};
use testkit::{PATIENCE, TcpProxy};

struct Web {
    _stack: Stack,
    _front: TcpProxy,
    public_url: String,
}

impl Web {
    async fn start(mode: AuthMode, access_token_ttl: Option<Duration>) -> Web {
        let front = TcpProxy::start(Vec::new()).await;
        let public_url = format!("http://localhost:{}", front.addr().port());
        let stack = Stack::start(Options {
            mode,
            web: true,
            web_public_url: Some(public_url.clone()),
            access_token_ttl,
            ..Options::default()
        })
        .await;
        let gateway = stack
            .gateway
            .trim_start_matches("http://")
            .parse()
            .expect("gateway address");
        front.set_upstreams(vec![gateway]);
        stack
            .add_user("alice", "user", "orders:read orders:write")
            .await;
        Web {
            _stack: stack,
            _front: front,
            public_url,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.public_url)
    }
}

/// The page's visible text; empty while a navigation replaces the page under the query.
async fn text(browser: &Client) -> String {
    match browser.find(Locator::Css("body")).await {
        Ok(body) => body.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Whether the browser shows the issuer's sign-in form.
async fn on_sign_in_page(browser: &Client) -> bool {
    browser
        .find(Locator::Css("form input[name=password]"))
        .await
        .is_ok()
}

/// From the web app's signed-out page: "Sign in", then the issuer's form.
async fn sign_in(web: &Web, browser: &Client, shots: &str) {
    browser.goto(&web.url("/")).await.expect("home page");
    screenshot(browser, &format!("{shots}-1-signed-out")).await;
    browser
        .find(Locator::LinkText("Sign in"))
        .await
        .expect("a Sign in link")
        .click()
        .await
        .expect("Sign in clicked");
    assert!(
        on_sign_in_page(browser).await,
        "the issuer's sign-in page: {}",
        text(browser).await
    );
    let page = browser.current_url().await.expect("url");
    assert!(
        page.as_str().starts_with(&web.url("/oauth/authorize")),
        "the sign-in page is served through the gateway's origin: {page}"
    );
    screenshot(browser, &format!("{shots}-2-sign-in")).await;
    fill(browser, "username", "alice").await;
    fill(browser, "password", PASSWORD).await;
    submit(browser, "form button[type=submit]").await;
    wait_for_text(browser, "Your orders").await;
    assert_eq!(
        browser.current_url().await.expect("url").as_str(),
        web.url("/"),
        "back on the web app, at its root"
    );
}

async fn fill(browser: &Client, name: &str, value: &str) {
    let field = browser
        .find(Locator::Css(&format!("input[name={name}]")))
        .await
        .unwrap_or_else(|_| panic!("an input named {name}"));
    field.clear().await.expect("cleared");
    field.send_keys(value).await.expect("typed");
}

async fn submit(browser: &Client, css: &str) {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|_| panic!("a button {css}"))
        .click()
        .await
        .expect("clicked");
}

async fn wait_for_text(browser: &Client, wanted: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let shown = text(browser).await;
        if shown.contains(wanted) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "waited for {wanted:?}; the page shows: {shown}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The whole scenario in `mode`; `shots` prefixes the screenshots' names. Returns when, after
/// "Log out other devices", the second device first showed the sign-in page.
async fn scenario(mode: AuthMode, access_token_ttl: Option<Duration>, shots: &str) -> Duration {
    let web = Web::start(mode, access_token_ttl).await;
    let chromium = Chromium::start().await;
    let laptop = chromium.device().await;
    sign_in(&web, &laptop, &format!("{shots}-laptop")).await;

    // An order placed, then cancelled.
    fill(&laptop, "item", "coffee beans").await;
    fill(&laptop, "quantity", "2").await;
    submit(&laptop, "form.create button[type=submit]").await;
    wait_for_text(&laptop, "coffee beans").await;
    screenshot(&laptop, &format!("{shots}-laptop-3-ordered")).await;
    submit(
        &laptop,
        "button[aria-label='Cancel the order of coffee beans']",
    )
    .await;
    wait_for_text(&laptop, "cancelled").await;

    // A second device of the same person.
    let phone = chromium.device().await;
    phone
        .set_window_size(390, 844)
        .await
        .expect("phone-sized window");
    sign_in(&web, &phone, &format!("{shots}-phone")).await;
    screenshot(&phone, &format!("{shots}-phone-3-signed-in")).await;

    // The laptop sees both sessions, and logs the other device out.
    laptop.goto(&web.url("/")).await.expect("home page");
    wait_for_text(&laptop, "This device").await;
    let sessions = laptop
        .find_all(Locator::Css("ul.sessions li"))
        .await
        .expect("the sessions");
    assert_eq!(sessions.len(), 2, "{}", text(&laptop).await);
    screenshot(&laptop, &format!("{shots}-laptop-4-sessions")).await;
    submit(&laptop, "form[action='/sessions/end-others'] button").await;
    let ended = Instant::now();
    wait_for_text(&laptop, "Your sessions").await;
    assert_eq!(
        laptop
            .find_all(Locator::Css("ul.sessions li"))
            .await
            .expect("the sessions")
            .len(),
        1,
        "only this device is left: {}",
        text(&laptop).await
    );

    // The phone's next page: the sign-in page, once its mode lets the logout through.
    let bound = access_token_ttl.unwrap_or(Duration::ZERO) + Duration::from_secs(10);
    let signed_in_for = loop {
        phone.goto(&web.url("/")).await.expect("home page");
        if on_sign_in_page(&phone).await {
            break ended.elapsed();
        }
        assert!(
            ended.elapsed() < bound,
            "the phone is still signed in {:?} after the logout: {}",
            ended.elapsed(),
            text(&phone).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    screenshot(&phone, &format!("{shots}-phone-4-signed-out")).await;

    // The laptop stays signed in and keeps working.
    laptop.goto(&web.url("/")).await.expect("home page");
    wait_for_text(&laptop, "Your orders").await;
    laptop.close().await.expect("laptop closed");
    phone.close().await.expect("phone closed");
    signed_in_for
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromium-driver (apt-get install chromium chromium-driver): run with -- --include-ignored"]
async fn stateful_logs_the_other_device_out_at_its_next_page() {
    let stayed = scenario(AuthMode::Stateful, None, "stateful").await;
    assert!(
        stayed < Duration::from_secs(2),
        "refused at its first page after the logout, not {stayed:?} later"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromium-driver (apt-get install chromium chromium-driver): run with -- --include-ignored"]
async fn hybrid_logs_the_other_device_out_within_the_push() {
    scenario(AuthMode::Hybrid, None, "hybrid").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromium-driver (apt-get install chromium chromium-driver): run with -- --include-ignored"]
async fn stateless_logs_the_other_device_out_when_its_access_token_expires() {
    let ttl = Duration::from_secs(6);
    let stayed = scenario(AuthMode::Stateless, Some(ttl), "stateless").await;
    assert!(
        stayed >= Duration::from_secs(1),
        "in stateless mode the other device keeps its access token until it expires ({ttl:?}), \
         not only {stayed:?}"
    );
}
