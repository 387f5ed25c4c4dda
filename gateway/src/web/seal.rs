//! Sealed cookie values and CSRF tokens, with keys derived from the gateway's client secret.
//!
//! Written on aws-lc-rs (the platform's one crypto provider, already a dependency) rather than
//! the `cookie` crate's `private` jar: that would bring a second AEAD implementation and a
//! cookie jar type the gateway has no other use for, for what is one AES-256-GCM call.
//!
//! Both keys come from `GATEWAY_CLIENT_SECRET` through HKDF-SHA256 with distinct labels, so
//! every replica configured with the same client accepts what another sealed or signed, a
//! restart does not break a sign-in in progress, and rotating the client secret invalidates
//! both at once.

use authn::base64url;
use aws_lc_rs::{aead, hkdf, hmac, rand};

/// Fresh random bytes, base64url encoded: state, nonce, PKCE verifier, CSRF cookie.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf).expect("BUG: the system random generator failed");
    base64url::encode(&buf)
}

/// The keys of the browser sign-in.
pub struct Keys {
    seal: aead::LessSafeKey,
    csrf: hmac::Key,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(<redacted>)")
    }
}

const SALT: &[u8] = b"gateway browser sign-in";
const SEAL_LABEL: &[u8] = b"sealed cookie v1";
const CSRF_LABEL: &[u8] = b"csrf token v1";
const NONCE_LEN: usize = aead::NONCE_LEN;

impl Keys {
    /// Derives both keys from the client secret.
    pub fn derive(secret: &[u8]) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(secret);
        let expand = |label: &[u8]| {
            let mut key = [0u8; 32];
            let labels = [label];
            prk.expand(&labels, hkdf::HKDF_SHA256)
                .and_then(|okm| okm.fill(&mut key))
                .expect("BUG: HKDF-SHA256 can expand 32 bytes");
            key
        };
        let seal = aead::UnboundKey::new(&aead::AES_256_GCM, &expand(SEAL_LABEL))
            .expect("BUG: 32 bytes is an AES-256 key");
        Self {
            seal: aead::LessSafeKey::new(seal),
            csrf: hmac::Key::new(hmac::HMAC_SHA256, &expand(CSRF_LABEL)),
        }
    }

    /// Encrypts and authenticates `plaintext` for the cookie `name` (bound as associated data,
    /// so a value sealed for one cookie never opens as another): base64url of a random 96-bit
    /// nonce followed by the ciphertext and tag.
    pub fn seal(&self, name: &str, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce).expect("BUG: the system random generator failed");
        let mut sealed = plaintext.to_vec();
        self.seal
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(name.as_bytes()),
                &mut sealed,
            )
            .expect("BUG: AES-GCM seals any cookie-sized input");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        base64url::encode(&out)
    }

    /// The plaintext of a value [`Keys::seal`] made for `name`; `None` for anything else
    /// (tampered, truncated, sealed for another cookie or with another key).
    pub fn open(&self, name: &str, sealed: &str) -> Option<Vec<u8>> {
        let bytes = base64url::decode(sealed).ok()?;
        if bytes.len() < NONCE_LEN + aead::AES_256_GCM.tag_len() {
            return None;
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut in_out = ciphertext.to_vec();
        let plaintext = self
            .seal
            .open_in_place(nonce, aead::Aad::from(name.as_bytes()), &mut in_out)
            .ok()?;
        Some(plaintext.to_vec())
    }

    /// The CSRF token of the forms of a browser holding the CSRF cookie `cookie`: an HMAC of
    /// it, so the token can be checked without server-side state and cannot be made without
    /// the key.
    pub fn csrf_token(&self, cookie: &str) -> String {
        base64url::encode(hmac::sign(&self.csrf, cookie.as_bytes()).as_ref())
    }

    /// Whether `token` is the CSRF token of `cookie` (constant time).
    pub fn check_csrf(&self, cookie: &str, token: &str) -> bool {
        base64url::decode(token)
            .is_ok_and(|tag| hmac::verify(&self.csrf, cookie.as_bytes(), &tag).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_as_sealed() {
        let keys = Keys::derive(b"client secret");
        let sealed = keys.seal("__Host-login", b"state and verifier");
        assert!(!sealed.contains("state"), "the value is encrypted");
        assert_eq!(
            keys.open("__Host-login", &sealed).as_deref(),
            Some(&b"state and verifier"[..])
        );
        // Another replica with the same secret opens it.
        let replica = Keys::derive(b"client secret");
        assert!(replica.open("__Host-login", &sealed).is_some());
        // Another cookie name, another key, a flipped bit, a truncation: nothing.
        assert!(keys.open("__Host-other", &sealed).is_none());
        assert!(
            Keys::derive(b"other secret")
                .open("__Host-login", &sealed)
                .is_none()
        );
        let mut bytes = base64url::decode(&sealed).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(
            keys.open("__Host-login", &base64url::encode(&bytes))
                .is_none()
        );
        assert!(keys.open("__Host-login", &sealed[..20]).is_none());
        assert!(keys.open("__Host-login", "not base64!").is_none());
    }

    #[test]
    fn each_seal_uses_a_fresh_nonce() {
        let keys = Keys::derive(b"s");
        assert_ne!(keys.seal("c", b"same"), keys.seal("c", b"same"));
    }

    #[test]
    fn csrf_tokens_are_bound_to_the_cookie_and_the_key() {
        let keys = Keys::derive(b"s");
        let token = keys.csrf_token("cookie-a");
        assert!(keys.check_csrf("cookie-a", &token));
        assert!(!keys.check_csrf("cookie-b", &token));
        assert!(!Keys::derive(b"t").check_csrf("cookie-a", &token));
        assert!(!keys.check_csrf("cookie-a", ""));
        assert!(!keys.check_csrf("cookie-a", "cookie-a"));
    }

    #[test]
    fn random_tokens_differ() {
        let a = random_token(32);
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token(32));
    }
}
