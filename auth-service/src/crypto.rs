//! Random identifiers and secrets, and the hash under which refresh tokens are stored.

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// `bytes` bytes from the operating system's CSPRNG, base64url without padding.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buf).expect("BUG: the system random number generator failed");
    URL_SAFE_NO_PAD.encode(buf)
}

/// 256 random bits: refresh tokens and client secrets.
pub fn random_secret() -> String {
    random_token(32)
}

/// 128 random bits: session ids.
pub fn random_id() -> String {
    random_token(16)
}

/// SHA-256 of `token`, base64url without padding: how refresh tokens are stored and looked up.
/// A fast hash is right here (unlike passwords): the input has 256 bits of entropy.
pub fn token_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_hash_is_sha256_base64url() {
        // SHA-256("abc") from FIPS 180-2, base64url without padding.
        assert_eq!(
            token_hash("abc"),
            "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
        );
        assert_eq!(token_hash("abc").len(), 43);
    }

    #[test]
    fn random_tokens_are_long_and_distinct() {
        let a = random_secret();
        let b = random_secret();
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_eq!(random_id().len(), 22);
    }
}
