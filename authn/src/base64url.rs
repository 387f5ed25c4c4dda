//! Base64url without padding (RFC 7515 §2), the encoding of every JWS segment and JWK member.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Decodes base64url without padding, strictly: padding, `+`, `/`, whitespace and non-zero
/// trailing bits are all refused (RFC 7515 §2), so one token has exactly one encoding.
pub fn decode(input: &str) -> Result<Vec<u8>, base64::DecodeError> {
    URL_SAFE_NO_PAD.decode(input)
}

/// Encodes base64url without padding.
pub fn encode(input: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(input)
}
