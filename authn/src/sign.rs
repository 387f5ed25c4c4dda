//! RS256 signing (feature `sign`): only the issuer holds private keys, so only it enables this.

use std::fmt;

use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, KeyPair as _, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

use crate::base64url;
use crate::jwk::{ALGORITHM, Jwk, KeyError, VerifyingKey};
use crate::jws::ACCESS_TOKEN_TYPE;

/// Why a token could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("claims could not be serialized: {0}")]
    Claims(#[from] serde_json::Error),
    #[error("the signing operation failed")]
    Crypto,
}

/// An RS256 signing key, parsed once and kept in memory, with its precomputed JOSE header.
pub struct Signer {
    key_pair: RsaKeyPair,
    kid: String,
    public_jwk: Jwk,
    /// `BASE64URL({"alg":"RS256","typ":"at+jwt","kid":...})`, the same for every token.
    header_b64: String,
    rng: aws_lc_rs::rand::SystemRandom,
}

impl Signer {
    /// Generates a new RSA-2048 key.
    pub fn generate() -> Result<Self, KeyError> {
        let key_pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| KeyError::Generate)?;
        Self::from_key_pair(key_pair)
    }

    /// Loads a PKCS#8 private key from its DER encoding.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let key_pair =
            RsaKeyPair::from_pkcs8(der).map_err(|e| KeyError::Rejected(e.to_string()))?;
        Self::from_key_pair(key_pair)
    }

    /// Loads a PKCS#8 private key from PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pkcs8_pem(pem_text: &str) -> Result<Self, KeyError> {
        let pem = pem::parse(pem_text).map_err(|_| KeyError::Pem)?;
        if pem.tag() != "PRIVATE KEY" {
            return Err(KeyError::Pem);
        }
        Self::from_pkcs8_der(pem.contents())
    }

    fn from_key_pair(key_pair: RsaKeyPair) -> Result<Self, KeyError> {
        let public = key_pair.public_key();
        let jwk = Jwk::rsa_public(
            public.modulus().big_endian_without_leading_zero(),
            public.exponent().big_endian_without_leading_zero(),
        );
        // Our own keys obey the policy we apply to everyone else's.
        VerifyingKey::from_rsa_jwk_parts(&jwk)?;
        let kid = jwk.thumbprint()?;
        let public_jwk = Jwk {
            kid: Some(kid.clone()),
            use_: Some("sig".to_owned()),
            alg: Some(ALGORITHM.to_owned()),
            ..jwk
        };
        let header = serde_json::json!({ "alg": ALGORITHM, "typ": ACCESS_TOKEN_TYPE, "kid": kid });
        Ok(Self {
            key_pair,
            header_b64: base64url::encode(header.to_string()),
            kid,
            public_jwk,
            rng: aws_lc_rs::rand::SystemRandom::new(),
        })
    }

    /// The key id: the RFC 7638 thumbprint of the public key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as published in the JWKS (`kty`, `n`, `e`, `kid`, `use: sig`, `alg: RS256`).
    pub fn public_jwk(&self) -> &Jwk {
        &self.public_jwk
    }

    /// The private key as PKCS#8 PEM, for storage at rest. Never log it.
    pub fn to_pkcs8_pem(&self) -> Result<String, KeyError> {
        use aws_lc_rs::encoding::AsDer as _;
        let der = self.key_pair.as_der().map_err(|_| KeyError::Generate)?;
        Ok(pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_ref())))
    }

    /// Signs `claims` into a compact JWS with the header `{"alg":"RS256","typ":"at+jwt","kid":..}`.
    pub fn sign<C: Serialize>(&self, claims: &C) -> Result<String, SignError> {
        let payload = serde_json::to_vec(claims)?;
        let mut token =
            String::with_capacity(self.header_b64.len() + payload.len() * 4 / 3 + 350 + 2);
        token.push_str(&self.header_b64);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut token);
        let signature = self.sign_bytes(token.as_bytes())?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        Ok(token)
    }

    /// RSASSA-PKCS1-v1_5 with SHA-256 over `message`.
    pub fn sign_bytes(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let mut signature = vec![0; self.key_pair.public_modulus_len()];
        self.key_pair
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &self.rng,
                message,
                &mut signature,
            )
            .map_err(|_| SignError::Crypto)?;
        Ok(signature)
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jws::UnverifiedJws;

    #[test]
    fn signer_round_trips_through_pem_and_keeps_its_kid() {
        let signer = Signer::generate().unwrap();
        let pem = signer.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let again = Signer::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(signer.kid(), again.kid());
        assert_eq!(signer.kid().len(), 43);
        assert!(!format!("{signer:?}").contains("PRIVATE"));
    }

    #[test]
    fn signed_tokens_carry_the_access_token_header() {
        let signer = Signer::generate().unwrap();
        let token = signer.sign(&serde_json::json!({"sub": "x"})).unwrap();
        let jws = UnverifiedJws::parse(&token).unwrap();
        assert_eq!(jws.header.alg, "RS256");
        assert_eq!(jws.header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(jws.header.kid.as_deref(), Some(signer.kid()));
        assert_eq!(jws.signature.len(), 256);
    }
}
