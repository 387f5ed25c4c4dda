//! The pieces the pages are written with: HTML escaping, the page frame, device labels and
//! times.
//!
//! Hand-written: the pages are a handful of short, fixed layouts and the workspace has no
//! template engine; what a template engine would add for safety is escaping, done here in one
//! function that every interpolated value goes through ([`escape`]).

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

/// `text` safe to put in HTML element content and in double- or single-quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page: `title` (escaped here) and `body` (already HTML, every value in it escaped).
/// No inline script or style: the Content-Security-Policy forbids both.
pub fn page(title: &str, body: &str) -> String {
    let title = escape(title);
    let mut out = String::with_capacity(body.len() + 512);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<link rel=\"stylesheet\" href=\"/app.css\">\n</head>\n\
         <body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    );
    out
}

/// A short label for the device behind a `User-Agent`: browser and system, "Unknown device"
/// when neither is recognised.
///
/// Hand-written: a label needs a dozen patterns, not a user-agent database crate; the order of
/// the checks matters because browsers name their ancestors (Edge says Chrome and Safari,
/// Chrome says Safari).
pub fn device_label(user_agent: Option<&str>) -> String {
    let Some(agent) = user_agent.filter(|a| !a.trim().is_empty()) else {
        return "Unknown device".to_owned();
    };
    let browser = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("FxiOS/", "Firefox"),
        ("CriOS/", "Chrome"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
        ("reqwest", "a program"),
    ]
    .into_iter()
    .find_map(|(pattern, name)| agent.contains(pattern).then_some(name));
    let system = [
        ("iPhone", "iPhone"),
        ("iPad", "iPad"),
        ("Android", "Android"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("Macintosh", "macOS"),
        ("CrOS", "ChromeOS"),
        ("Linux", "Linux"),
    ]
    .into_iter()
    .find_map(|(pattern, name)| agent.contains(pattern).then_some(name));
    match (browser, system) {
        (Some(browser), Some(system)) => format!("{browser} on {system}"),
        (Some(browser), None) => browser.to_owned(),
        (None, Some(system)) => system.to_owned(),
        (None, None) => "Unknown device".to_owned(),
    }
}

/// Unix seconds as `2025-01-31 12:00 UTC`.
pub fn time(unix_seconds: i64) -> String {
    let Ok(seconds) = u64::try_from(unix_seconds) else {
        return "unknown".to_owned();
    };
    let Some(at) = UNIX_EPOCH.checked_add(Duration::from_secs(seconds)) else {
        return "unknown".to_owned();
    };
    let text = humantime::format_rfc3339_seconds(at).to_string();
    // 2025-01-31T12:00:00Z
    match (text.get(..10), text.get(11..16)) {
        (Some(date), Some(clock)) => format!("{date} {clock} UTC"),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#x27;y&#x27;"
        );
        assert_eq!(escape("plain text é"), "plain text é");
    }

    #[test]
    fn pages_escape_their_title_and_load_only_same_origin_css() {
        let html = page("<b>", "<p>ok</p>");
        assert!(html.contains("<title>&lt;b&gt;</title>"));
        assert!(html.contains(r#"href="/app.css""#));
        assert!(!html.contains("<script"));
        assert!(!html.contains("style="));
    }

    #[test]
    fn user_agents_become_device_labels() {
        let cases = [
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0",
                "Edge on Windows",
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
                "Firefox on Linux",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
                "Safari on iPhone",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
                "Chrome on Android",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
                "Safari on macOS",
            ),
            ("curl/8.4.0", "curl"),
            ("", "Unknown device"),
            ("something else", "Unknown device"),
        ];
        for (agent, label) in cases {
            assert_eq!(device_label(Some(agent)), label, "{agent}");
        }
        assert_eq!(device_label(None), "Unknown device");
    }

    #[test]
    fn times_are_minutes_in_utc() {
        assert_eq!(time(1_700_000_000), "2023-11-14 22:13 UTC");
        assert_eq!(time(-1), "unknown");
    }
}
