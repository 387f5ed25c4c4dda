//! JWS compact serialization (RFC 7515 §7.1): strict parsing for verifiers. Signing is in
//! [`crate::sign`] (feature `sign`).
//!
//! Written on top of aws-lc-rs rather than through the `jsonwebtoken` crate, for three reasons:
//! that crate neither checks `typ` nor refuses `crit` nor detects duplicate JSON members (all
//! required by RFC 8725 and RFC 9068), and it re-parses the RSA key on every signature and
//! verification, which costs a measurable share of the hardware's RSA rate. What is left to
//! write by hand is the compact format itself: three base64url segments joined by dots.

use std::fmt;

use serde::de::{self, DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

pub use crate::base64url::{decode as b64_decode, encode as b64_encode};
use crate::error::RejectReason;
pub use crate::jwk::{ALGORITHM, MAX_KID_LEN};

/// The `typ` header of access tokens (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";
/// The longest compact token accepted, checked before any decoding. The issuer's tokens are
/// about 900 bytes; 8 KiB leaves room for many scopes and roles while bounding the work an
/// attacker can cause.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The JOSE header members a verifier looks at. Everything else is ignored, in particular the
/// key-carrying members `jwk`, `jku`, `x5u` and `x5c`: keys come only from the configured JWKS.
#[derive(Debug, Deserialize)]
pub struct Header {
    pub alg: String,
    #[serde(default)]
    pub typ: Option<String>,
    #[serde(default)]
    pub kid: Option<String>,
    /// Whether the header has a `crit` member (with any value, `null` included). Any `crit` is
    /// refused: this implementation understands no extension (RFC 7515 §4.1.11).
    #[serde(skip)]
    pub crit: bool,
}

impl Header {
    /// Parses a JOSE header: a JSON object without duplicate members.
    pub fn from_json(json: &[u8]) -> Result<Self, serde_json::Error> {
        let MemberNames { has_crit } = serde_json::from_slice(json)?;
        let mut header: Header = serde_json::from_slice(json)?;
        header.crit = has_crit;
        Ok(header)
    }
}

/// A compact JWS split into its three segments, nothing decoded yet: what [`UnverifiedJws`]
/// decodes, and what a verifier that has seen a header segment before reads without decoding
/// that header again (see `Verifier`).
#[derive(Debug, Clone, Copy)]
pub struct CompactJws<'a> {
    pub header_b64: &'a str,
    /// `BASE64URL(header) || '.' || BASE64URL(payload)`: what the signature covers.
    pub signing_input: &'a str,
    payload_b64: &'a str,
    signature_b64: &'a str,
}

impl<'a> CompactJws<'a> {
    /// Refuses, before anything is decoded: tokens over [`MAX_TOKEN_LEN`], and anything but
    /// exactly three non-empty segments (so JWEs with five, and unsecured JWTs with an empty
    /// signature).
    pub fn split(token: &'a str) -> Result<Self, RejectReason> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(RejectReason::TooLarge);
        }
        let mut segments = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(RejectReason::Malformed);
        };
        if header_b64.is_empty() || payload_b64.is_empty() || signature_b64.is_empty() {
            return Err(RejectReason::Malformed);
        }
        Ok(Self {
            header_b64,
            signing_input: &token[..header_b64.len() + 1 + payload_b64.len()],
            payload_b64,
            signature_b64,
        })
    }

    /// Decodes and parses the header (strict base64url, no duplicate members).
    pub fn header(&self) -> Result<Header, RejectReason> {
        let json = b64_decode(self.header_b64).map_err(|_| RejectReason::Malformed)?;
        Header::from_json(&json).map_err(|_| RejectReason::Malformed)
    }

    /// Decodes the signature (strict base64url).
    pub fn signature(&self) -> Result<Vec<u8>, RejectReason> {
        b64_decode(self.signature_b64).map_err(|_| RejectReason::Malformed)
    }

    /// Decodes the payload into `T`. Call only after the signature has been verified.
    pub fn payload<T: DeserializeOwned>(&self) -> Result<T, RejectReason> {
        let json = b64_decode(self.payload_b64).map_err(|_| RejectReason::Malformed)?;
        from_json_object(&json).map_err(|_| RejectReason::InvalidClaims)
    }
}

/// A compact JWS split and decoded, its signature not yet checked.
#[derive(Debug)]
pub struct UnverifiedJws<'a> {
    pub header: Header,
    /// `BASE64URL(header) || '.' || BASE64URL(payload)`: what the signature covers.
    pub signing_input: &'a str,
    compact: CompactJws<'a>,
    pub signature: Vec<u8>,
}

impl<'a> UnverifiedJws<'a> {
    /// Splits and decodes `token`. Refuses, before any JSON is parsed: tokens over
    /// [`MAX_TOKEN_LEN`], anything but exactly three segments (so JWEs with five, and
    /// unsecured JWTs with an empty signature), and non-canonical base64url.
    pub fn parse(token: &'a str) -> Result<Self, RejectReason> {
        let compact = CompactJws::split(token)?;
        let header = compact.header()?;
        let signature = compact.signature()?;
        Ok(Self {
            header,
            signing_input: compact.signing_input,
            compact,
            signature,
        })
    }

    /// Decodes the payload into `T`. Call only after the signature has been verified.
    pub fn payload<T: DeserializeOwned>(&self) -> Result<T, RejectReason> {
        self.compact.payload()
    }
}

/// Parses a JSON object into `T`, refusing duplicate member names at the top level.
///
/// RFC 7515 §5.2 lets a parser either refuse duplicates or take the last one; taking the last
/// lets two components that parse differently disagree on what a token says, so we refuse.
/// serde_json has no option for this, hence a first pass that only reads the member names
/// (borrowed, values skipped, nothing allocated for a token's dozen members).
pub fn from_json_object<T: DeserializeOwned>(json: &[u8]) -> Result<T, serde_json::Error> {
    let _: MemberNames = serde_json::from_slice(json)?;
    serde_json::from_slice(json)
}

/// The outcome of the duplicate check: whether a `crit` member was present.
struct MemberNames {
    has_crit: bool,
}

impl<'de> Deserialize<'de> for MemberNames {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NamesVisitor;

        impl<'de> Visitor<'de> for NamesVisitor {
            type Value = MemberNames;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut names: Vec<std::borrow::Cow<'de, str>> = Vec::with_capacity(16);
                while let Some(name) = access.next_key::<std::borrow::Cow<'de, str>>()? {
                    if names.contains(&name) {
                        return Err(de::Error::custom("duplicate member"));
                    }
                    access.next_value::<de::IgnoredAny>()?;
                    names.push(name);
                }
                Ok(MemberNames {
                    has_crit: names.iter().any(|n| n == "crit"),
                })
            }
        }

        deserializer.deserialize_map(NamesVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_splits_three_segments() {
        let jws = UnverifiedJws::parse("eyJhbGciOiJSUzI1NiJ9.e30.AAAA").unwrap();
        assert_eq!(jws.header.alg, "RS256");
        assert_eq!(jws.signing_input, "eyJhbGciOiJSUzI1NiJ9.e30");
        assert_eq!(jws.signature, [0, 0, 0]);
    }

    #[test]
    fn parse_refuses_wrong_segment_counts() {
        for token in [
            "",
            ".",
            "..",
            "eyJhbGciOiJSUzI1NiJ9.e30",
            "eyJhbGciOiJSUzI1NiJ9.e30.",
            "eyJhbGciOiJSUzI1NiJ9.e30.AAAA.AAAA",
            "eyJhbGciOiJSUzI1NiJ9.e30.AAAA.AAAA.AAAA",
            ".e30.AAAA",
            "eyJhbGciOiJSUzI1NiJ9..AAAA",
        ] {
            assert_eq!(
                UnverifiedJws::parse(token).unwrap_err(),
                RejectReason::Malformed,
                "{token:?}"
            );
        }
    }

    #[test]
    fn parse_refuses_non_canonical_base64url() {
        let good = "eyJhbGciOiJSUzI1NiJ9";
        for header in [
            format!("{good}="),             // padding
            format!("{good}==",),           // padding
            format!(" {good}"),             // whitespace
            format!("{good}\n"),            // whitespace
            "eyJhbGciOiJSUzI1NiJ9+".into(), // standard alphabet
            "eyJhbGciOiJSUzI1NiJ9/".into(),
            "eyJhbGciOiJSUzI1NiJ8".into(), // non-zero trailing bits ("}" with a stray bit)
        ] {
            assert!(
                UnverifiedJws::parse(&format!("{header}.e30.AAAA")).is_err(),
                "{header:?}"
            );
        }
        assert!(UnverifiedJws::parse(&format!("{good}.e30.AAAA=")).is_err());
    }

    #[test]
    fn parse_refuses_huge_tokens_before_decoding() {
        let token = ".".repeat(100_000);
        assert_eq!(
            UnverifiedJws::parse(&token).unwrap_err(),
            RejectReason::TooLarge
        );
    }

    #[test]
    fn duplicate_members_are_refused() {
        #[derive(Debug, Deserialize)]
        struct Any {}
        assert!(from_json_object::<Any>(br#"{"a":1,"b":2}"#).is_ok());
        assert!(from_json_object::<Any>(br#"{"a":1,"a":2}"#).is_err());
        assert!(Header::from_json(br#"{"alg":"RS256","alg":"none"}"#).is_err());
        assert!(Header::from_json(br#"{"alg":"RS256","x":1,"x":2}"#).is_err());
    }

    #[test]
    fn non_objects_are_refused() {
        for json in [&b"[]"[..], b"1", b"\"x\"", b"null", b"{", b"{}x"] {
            assert!(from_json_object::<serde_json::Value>(json).is_err());
        }
    }

    #[test]
    fn header_kid_must_be_a_string() {
        assert!(Header::from_json(br#"{"alg":"RS256","kid":1}"#).is_err());
        assert!(Header::from_json(br#"{"alg":"RS256","kid":{}}"#).is_err());
    }

    #[test]
    fn header_records_any_crit() {
        for crit in ["null", "[]", r#"["exp"]"#, "1"] {
            let json = format!(r#"{{"alg":"RS256","crit":{crit}}}"#);
            assert!(Header::from_json(json.as_bytes()).unwrap().crit, "{crit}");
        }
        assert!(!Header::from_json(br#"{"alg":"RS256"}"#).unwrap().crit);
    }
}
