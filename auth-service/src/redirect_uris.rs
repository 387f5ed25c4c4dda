//! The redirect URIs of OAuth clients: which ones may be registered, and how a presented one is
//! matched against them.
//!
//! A registered URI is absolute, `https` (or `http` to the loopback host, for a native or
//! development client: RFC 8252 §7.3, OAuth 2.0 Security BCP §4.1.1), carries no fragment
//! (RFC 6749 §3.1.2) and no userinfo, and is printable ASCII without whitespace, so the stored
//! string is exactly what the operator typed and what a client must send back. A presented URI
//! is compared with the registered ones by exact string equality (Security BCP §4.1.3): no
//! normalisation, no prefix, no case folding, no port wildcard.

/// Longest redirect URI accepted at registration.
pub const MAX_REDIRECT_URI: usize = 2048;

/// Why a redirect URI cannot be registered (the CLI prints it next to the URI).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectUriError {
    #[error("is not an absolute URI ({0})")]
    NotAbsolute(String),
    #[error("must be printable ASCII without spaces (percent-encode anything else)")]
    NotPrintableAscii,
    #[error("is longer than {MAX_REDIRECT_URI} characters")]
    TooLong,
    #[error(
        "must use https (plain http is allowed only for http://localhost and http://127.0.0.1)"
    )]
    InsecureScheme,
    #[error("must not carry a fragment (#...)")]
    Fragment,
    #[error("must not carry a user name or password before the host")]
    Userinfo,
}

/// Checks that `uri` may be registered as a redirect URI (or post-logout redirect URI).
pub fn validate(uri: &str) -> Result<(), RedirectUriError> {
    if uri.len() > MAX_REDIRECT_URI {
        return Err(RedirectUriError::TooLong);
    }
    if uri.is_empty() || !uri.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(RedirectUriError::NotPrintableAscii);
    }
    // Checked on the raw string too: the parser would accept an empty fragment (`...#`).
    if uri.contains('#') {
        return Err(RedirectUriError::Fragment);
    }
    let parsed = url::Url::parse(uri).map_err(|e| RedirectUriError::NotAbsolute(e.to_string()))?;
    if parsed.cannot_be_a_base() || parsed.host().is_none() {
        return Err(RedirectUriError::NotAbsolute("no host".into()));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(RedirectUriError::Userinfo);
    }
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if is_loopback_host(&parsed) => Ok(()),
        _ => Err(RedirectUriError::InsecureScheme),
    }
}

fn is_loopback_host(url: &url::Url) -> bool {
    matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"))
}

/// Whether `presented` is one of `registered`, compared as strings, byte for byte.
pub fn is_registered(registered: &[String], presented: &str) -> bool {
    registered.iter().any(|uri| uri == presented)
}

/// A list of URIs as stored: separated by single spaces (a valid URI contains none).
pub fn join(uris: &[String]) -> String {
    uris.join(" ")
}

/// The stored list back.
pub fn split(stored: &str) -> Vec<String> {
    stored.split_whitespace().map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_and_loopback_http_are_accepted() {
        for uri in [
            "https://app.example.com/callback",
            "https://app.example.com:8443/cb?tenant=a",
            "http://localhost:8080/callback",
            "http://127.0.0.1/callback",
            "http://[::1]:9000/cb",
        ] {
            assert_eq!(validate(uri), Ok(()), "{uri}");
        }
    }

    #[test]
    fn everything_else_is_refused_with_its_reason() {
        let cases = [
            ("/callback", "absolute"),
            ("app.example.com/callback", "absolute"),
            ("http://app.example.com/callback", "https"),
            ("http://localhost.evil.com/cb", "https"),
            ("javascript:alert(1)", "absolute"),
            ("ftp://app.example.com/cb", "https"),
            ("https://app.example.com/cb#frag", "fragment"),
            ("https://app.example.com/cb#", "fragment"),
            ("https://user:pw@app.example.com/cb", "user name"),
            ("https://user@app.example.com/cb", "user name"),
            ("https://app.example.com/a b", "ASCII"),
            ("https://app.example.com/é", "ASCII"),
            ("", "ASCII"),
        ];
        for (uri, reason) in cases {
            let error = validate(uri).expect_err(uri).to_string();
            assert!(error.contains(reason), "{uri}: {error}");
        }
        let long = format!("https://app.example.com/{}", "a".repeat(MAX_REDIRECT_URI));
        assert_eq!(validate(&long), Err(RedirectUriError::TooLong));
    }

    #[test]
    fn only_the_exact_string_matches() {
        let registered = vec!["https://app.example.com/callback".to_owned()];
        assert!(is_registered(
            &registered,
            "https://app.example.com/callback"
        ));
        for variant in [
            "https://app.example.com/callback/",
            "https://app.example.com/callbackx",
            "https://app.example.com/call",
            "https://APP.example.com/callback",
            "https://app.example.com/Callback",
            "https://app.example.com/callback/../x",
            "https://app.example.com/callback?x=1",
            "https://app.example.com/callback#x",
            "https://evil@app.example.com/callback",
            "https://app.example.com:443/callback",
            "https://app.example.com:8443/callback",
            "http://app.example.com/callback",
            "https://app.example.com.evil.com/callback",
            "",
        ] {
            assert!(!is_registered(&registered, variant), "{variant}");
        }
    }

    #[test]
    fn lists_round_trip_through_storage() {
        let uris = vec![
            "https://a.example.com/cb".to_owned(),
            "http://localhost:3000/cb?x=1".to_owned(),
        ];
        assert_eq!(split(&join(&uris)), uris);
        assert!(split("").is_empty());
    }
}
