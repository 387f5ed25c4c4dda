//! Strict parsing of token requests: the `application/x-www-form-urlencoded` body and the
//! client credentials (RFC 6749 §2.3.1: HTTP Basic or `client_id`/`client_secret` in the body).

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use percent_encoding::percent_decode;

use crate::passwords::SecretString;

/// The parameters of a form body. Each name appears at most once (RFC 6749 §3.2); a parameter
/// with an empty value counts as omitted (RFC 6749 §3.1).
#[derive(Default)]
pub struct Form(HashMap<String, String>);

impl std::fmt::Debug for Form {
    /// Names only: values include passwords and tokens.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("the request body is not valid UTF-8")]
    InvalidUtf8,
    #[error("a parameter is not valid percent-encoded UTF-8")]
    InvalidEncoding,
    #[error("a parameter is repeated")]
    Duplicate,
}

impl Form {
    pub fn parse(body: &[u8]) -> Result<Self, FormError> {
        let body = std::str::from_utf8(body).map_err(|_| FormError::InvalidUtf8)?;
        let mut params = HashMap::new();
        for pair in body.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = form_decode(name).ok_or(FormError::InvalidEncoding)?;
            let value = form_decode(value).ok_or(FormError::InvalidEncoding)?;
            if params.contains_key(&name) {
                return Err(FormError::Duplicate);
            }
            params.insert(name, value);
        }
        params.retain(|_, value: &mut String| !value.is_empty());
        Ok(Self(params))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// Decodes one `application/x-www-form-urlencoded` component: `+` is a space, `%XX` a byte, and
/// the bytes must be UTF-8 (no replacement characters: a malformed value is refused).
pub fn form_decode(component: &str) -> Option<String> {
    let plus_as_space = component.replace('+', " ");
    percent_decode(plus_as_space.as_bytes())
        .decode_utf8()
        .ok()
        .map(|decoded| decoded.into_owned())
}

/// Whether the request says its body is a form (`application/x-www-form-urlencoded`, any
/// parameters such as `charset` allowed, case-insensitive).
pub fn is_form_content_type(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| {
            essence
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// How (and whether) the client authenticated. Not comparable: it may hold a secret.
#[derive(Debug, Clone)]
pub enum ClientCredentials {
    None,
    /// `Authorization: Basic` (`client_secret_basic`).
    Basic {
        id: String,
        secret: SecretString,
    },
    /// `client_id` and `client_secret` in the body (`client_secret_post`).
    Post {
        id: String,
        secret: SecretString,
    },
    /// A `client_id` without a secret: a public client identifying itself.
    IdOnly(String),
}

impl ClientCredentials {
    pub fn used_basic(&self) -> bool {
        matches!(self, Self::Basic { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// The `Authorization` header is not a well-formed `Basic` credential.
    #[error("malformed Basic credentials")]
    MalformedBasic,
    /// The `Authorization` header uses another scheme.
    #[error("unsupported authorization scheme")]
    UnsupportedScheme,
    /// Both Basic and body credentials, a body `client_id` differing from the Basic one, or a
    /// `client_secret` without a `client_id`.
    #[error("{0}")]
    Conflict(&'static str),
}

/// Reads the client credentials of a token request. Using two methods at once is refused
/// (RFC 6749 §2.3: "MUST NOT use more than one authentication method in each request").
pub fn client_credentials(
    headers: &HeaderMap,
    form: &Form,
) -> Result<ClientCredentials, CredentialsError> {
    let basic = match headers.get(AUTHORIZATION) {
        None => None,
        Some(value) => Some(parse_basic(value.as_bytes())?),
    };
    let body_id = form.get("client_id");
    let body_secret = form.get("client_secret");
    match (basic, body_id, body_secret) {
        (Some(_), _, Some(_)) => Err(CredentialsError::Conflict(
            "use either HTTP Basic or client_secret in the body, not both",
        )),
        (Some((id, _)), Some(body_id), None) if id != body_id => Err(CredentialsError::Conflict(
            "client_id differs from the HTTP Basic client id",
        )),
        (Some((id, secret)), _, None) => Ok(ClientCredentials::Basic { id, secret }),
        (None, Some(id), Some(secret)) => Ok(ClientCredentials::Post {
            id: id.to_owned(),
            secret: SecretString::from(secret),
        }),
        (None, None, Some(_)) => Err(CredentialsError::Conflict(
            "client_secret requires client_id",
        )),
        (None, Some(id), None) => Ok(ClientCredentials::IdOnly(id.to_owned())),
        (None, None, None) => Ok(ClientCredentials::None),
    }
}

/// Parses `Basic base64(urlencode(id) ":" urlencode(secret))` (RFC 7617 with the RFC 6749
/// §2.3.1 form-encoding of both parts).
pub fn parse_basic(value: &[u8]) -> Result<(String, SecretString), CredentialsError> {
    let value = std::str::from_utf8(value).map_err(|_| CredentialsError::MalformedBasic)?;
    let (scheme, encoded) = value
        .trim()
        .split_once(' ')
        .ok_or(CredentialsError::UnsupportedScheme)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(CredentialsError::UnsupportedScheme);
    }
    let decoded = STANDARD
        .decode(encoded.trim())
        .map_err(|_| CredentialsError::MalformedBasic)?;
    let decoded = String::from_utf8(decoded).map_err(|_| CredentialsError::MalformedBasic)?;
    let (id, secret) = decoded
        .split_once(':')
        .ok_or(CredentialsError::MalformedBasic)?;
    let id = form_decode(id).ok_or(CredentialsError::MalformedBasic)?;
    let secret = form_decode(secret).ok_or(CredentialsError::MalformedBasic)?;
    if id.is_empty() {
        return Err(CredentialsError::MalformedBasic);
    }
    Ok((id, SecretString::from(secret)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passwords::ExposeSecret as _;
    use http::HeaderValue;

    fn basic(user_pass: &str) -> String {
        format!("Basic {}", STANDARD.encode(user_pass))
    }

    #[test]
    fn form_decodes_plus_and_percent() {
        let form =
            Form::parse(b"grant_type=password&username=a%40b.c&password=p+w%2Bx%26y%3D").unwrap();
        assert_eq!(form.get("grant_type"), Some("password"));
        assert_eq!(form.get("username"), Some("a@b.c"));
        assert_eq!(form.get("password"), Some("p w+x&y="));
    }

    #[test]
    fn form_refuses_duplicates_and_bad_encoding() {
        assert_eq!(
            Form::parse(b"scope=a&scope=b").unwrap_err(),
            FormError::Duplicate
        );
        assert_eq!(
            Form::parse(b"a=%FF").unwrap_err(),
            FormError::InvalidEncoding
        );
        assert_eq!(
            Form::parse(b"a=\xff\xfe").unwrap_err(),
            FormError::InvalidUtf8
        );
        assert_eq!(Form::parse(b"a=%").unwrap().get("a"), Some("%"));
    }

    #[test]
    fn empty_values_count_as_omitted() {
        let form = Form::parse(b"scope=&&grant_type=x&flag").unwrap();
        assert_eq!(form.get("scope"), None);
        assert_eq!(form.get("flag"), None);
        assert_eq!(form.get("grant_type"), Some("x"));
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let (id, secret) = parse_basic(basic("my%20client:s%3Ac+r%25t").as_bytes()).unwrap();
        assert_eq!(id, "my client");
        assert_eq!(secret.expose_secret(), "s:c r%t");
        // The first colon separates; later ones belong to the secret.
        let (id, secret) = parse_basic(basic("svc:a:b").as_bytes()).unwrap();
        assert_eq!((id.as_str(), secret.expose_secret()), ("svc", "a:b"));
        // Scheme is case-insensitive.
        let lower = basic("svc:x").replacen("Basic", "bAsIc", 1);
        assert!(parse_basic(lower.as_bytes()).is_ok());
    }

    #[test]
    fn malformed_basic_credentials() {
        for bad in [
            "Basic !!!notbase64",
            &basic("no-colon"),
            &basic(":secret-without-id"),
            &basic("id:%FF"),
            "Basic",
        ] {
            assert!(parse_basic(bad.as_bytes()).is_err(), "{bad}");
        }
        assert_eq!(
            parse_basic(b"Bearer abc").unwrap_err(),
            CredentialsError::UnsupportedScheme
        );
    }

    #[test]
    fn one_authentication_method_per_request() {
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&basic("svc:secret")).unwrap(),
        );
        let both = Form::parse(b"client_id=svc&client_secret=secret").unwrap();
        assert!(matches!(
            client_credentials(&headers, &both),
            Err(CredentialsError::Conflict(_))
        ));
        let other_id = Form::parse(b"client_id=other").unwrap();
        assert!(client_credentials(&headers, &other_id).is_err());
        let same_id = Form::parse(b"client_id=svc").unwrap();
        assert!(client_credentials(&headers, &same_id).unwrap().used_basic());

        let none = HeaderMap::new();
        let post = Form::parse(b"client_id=svc&client_secret=s").unwrap();
        assert!(matches!(
            client_credentials(&none, &post).unwrap(),
            ClientCredentials::Post { .. }
        ));
        let secret_only = Form::parse(b"client_secret=s").unwrap();
        assert!(client_credentials(&none, &secret_only).is_err());
        assert!(matches!(
            client_credentials(&none, &Form::default()).unwrap(),
            ClientCredentials::None
        ));
    }

    #[test]
    fn content_type_essence() {
        let mut headers = HeaderMap::new();
        assert!(!is_form_content_type(&headers));
        for ok in [
            "application/x-www-form-urlencoded",
            "Application/X-WWW-Form-Urlencoded; charset=UTF-8",
        ] {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(ok));
            assert!(is_form_content_type(&headers), "{ok}");
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert!(!is_form_content_type(&headers));
    }
}
