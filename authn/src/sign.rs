//! Signing (feature `sign`): RS256, ES256 and EdDSA keys. Only the issuer holds private keys,
//! so only it enables this.

use std::fmt;

use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

use crate::base64url;
use crate::jwk::{Algorithm, Jwk, KeyError, VerifyingKey};
use crate::jws::ACCESS_TOKEN_TYPE;

/// Why a token could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("claims could not be serialized: {0}")]
    Claims(#[from] serde_json::Error),
    #[error("the signing operation failed")]
    Crypto,
}

/// The private key of a [`Signer`], one variant per algorithm.
enum KeyPair {
    Rsa(RsaKeyPair),
    EcP256(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A signing key (RS256, ES256 or EdDSA), parsed once and kept in memory, with its
/// precomputed JOSE header.
pub struct Signer {
    key_pair: KeyPair,
    alg: Algorithm,
    kid: String,
    public_jwk: Jwk,
    /// `BASE64URL({"alg":..,"typ":"at+jwt","kid":...})`, the same for every token.
    header_b64: String,
    rng: aws_lc_rs::rand::SystemRandom,
}

impl Signer {
    /// Generates a new RSA-2048 key (RS256, the default algorithm).
    pub fn generate() -> Result<Self, KeyError> {
        Self::generate_for(Algorithm::Rs256)
    }

    /// Generates a new key for `alg`: RSA-2048, EC P-256 or Ed25519.
    pub fn generate_for(alg: Algorithm) -> Result<Self, KeyError> {
        let key_pair = match alg {
            Algorithm::Rs256 => KeyPair::Rsa(
                RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| KeyError::Generate)?,
            ),
            Algorithm::Es256 => KeyPair::EcP256(
                EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
                    .map_err(|_| KeyError::Generate)?,
            ),
            Algorithm::EdDsa => {
                KeyPair::Ed25519(Ed25519KeyPair::generate().map_err(|_| KeyError::Generate)?)
            }
        };
        Self::from_key_pair(key_pair)
    }

    /// Loads a PKCS#8 private key from its DER encoding. The algorithm is the key's: PKCS#8
    /// names it (rsaEncryption, id-ecPublicKey with prime256v1, id-Ed25519), so a stored key
    /// needs nothing beside it to say how it signs. EC keys on another curve are refused.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        if let Ok(rsa) = RsaKeyPair::from_pkcs8(der) {
            return Self::from_key_pair(KeyPair::Rsa(rsa));
        }
        if let Ok(ec) = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der) {
            return Self::from_key_pair(KeyPair::EcP256(ec));
        }
        match Ed25519KeyPair::from_pkcs8(der) {
            Ok(ed) => Self::from_key_pair(KeyPair::Ed25519(ed)),
            Err(_) => Err(KeyError::Rejected(
                "not an RSA, EC P-256 or Ed25519 PKCS#8 private key".to_owned(),
            )),
        }
    }

    /// Loads a PKCS#8 private key from PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pkcs8_pem(pem_text: &str) -> Result<Self, KeyError> {
        let pem = pem::parse(pem_text).map_err(|_| KeyError::Pem)?;
        if pem.tag() != "PRIVATE KEY" {
            return Err(KeyError::Pem);
        }
        Self::from_pkcs8_der(pem.contents())
    }

    fn from_key_pair(key_pair: KeyPair) -> Result<Self, KeyError> {
        let jwk = match &key_pair {
            KeyPair::Rsa(rsa) => {
                let public = rsa.public_key();
                Jwk::rsa_public(
                    public.modulus().big_endian_without_leading_zero(),
                    public.exponent().big_endian_without_leading_zero(),
                )
            }
            KeyPair::EcP256(ec) => Jwk::ec_p256_public(ec.public_key().as_ref())?,
            KeyPair::Ed25519(ed) => Jwk::ed25519_public(ed.public_key().as_ref()),
        };
        // Our own keys obey the policy we apply to everyone else's.
        let (alg, _, _) = VerifyingKey::from_jwk_parts(&jwk)?;
        let kid = jwk.thumbprint()?;
        let public_jwk = Jwk {
            kid: Some(kid.clone()),
            use_: Some("sig".to_owned()),
            alg: Some(alg.as_str().to_owned()),
            ..jwk
        };
        let header =
            serde_json::json!({ "alg": alg.as_str(), "typ": ACCESS_TOKEN_TYPE, "kid": kid });
        Ok(Self {
            key_pair,
            alg,
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

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The public key as published in the JWKS: `kty` and its members (`n`, `e` for RSA;
    /// `crv`, `x`, `y` for EC; `crv`, `x` for OKP), `kid`, `use: sig` and `alg`.
    pub fn public_jwk(&self) -> &Jwk {
        &self.public_jwk
    }

    /// The private key as PKCS#8 PEM, for storage at rest. Never log it.
    pub fn to_pkcs8_pem(&self) -> Result<String, KeyError> {
        use aws_lc_rs::encoding::AsDer as _;
        let der: Vec<u8> = match &self.key_pair {
            KeyPair::Rsa(rsa) => rsa
                .as_der()
                .map_err(|_| KeyError::Generate)?
                .as_ref()
                .to_vec(),
            KeyPair::EcP256(ec) => ec
                .to_pkcs8v1()
                .map_err(|_| KeyError::Generate)?
                .as_ref()
                .to_vec(),
            KeyPair::Ed25519(ed) => ed
                .to_pkcs8()
                .map_err(|_| KeyError::Generate)?
                .as_ref()
                .to_vec(),
        };
        Ok(pem::encode(&pem::Pem::new("PRIVATE KEY", der)))
    }

    /// Signs `claims` into a compact JWS with the header `{"alg":..,"typ":"at+jwt","kid":..}`.
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

    /// The JWS signature over `message` with this key's algorithm: RSASSA-PKCS1-v1_5 SHA-256,
    /// ECDSA P-256 SHA-256 in JOSE form (`r || s`, 64 bytes), or Ed25519 (64 bytes).
    pub fn sign_bytes(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        match &self.key_pair {
            KeyPair::Rsa(rsa) => {
                let mut signature = vec![0; rsa.public_modulus_len()];
                rsa.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &self.rng,
                    message,
                    &mut signature,
                )
                .map_err(|_| SignError::Crypto)?;
                Ok(signature)
            }
            KeyPair::EcP256(ec) => Ok(ec
                .sign(&self.rng, message)
                .map_err(|_| SignError::Crypto)?
                .as_ref()
                .to_vec()),
            KeyPair::Ed25519(ed) => Ok(ed.sign(message).as_ref().to_vec()),
        }
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("alg", &self.alg)
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

    #[test]
    fn every_algorithm_round_trips_through_pkcs8_pem_and_verifies() {
        for (alg, kty, signature_len) in [
            (Algorithm::Rs256, "RSA", 256),
            (Algorithm::Es256, "EC", 64),
            (Algorithm::EdDsa, "OKP", 64),
        ] {
            let signer = Signer::generate_for(alg).unwrap();
            assert_eq!(signer.algorithm(), alg);
            let pem = signer.to_pkcs8_pem().unwrap();
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{alg}");
            let again = Signer::from_pkcs8_pem(&pem).unwrap();
            assert_eq!(again.algorithm(), alg);
            assert_eq!(again.kid(), signer.kid(), "{alg}");
            let jwk = signer.public_jwk();
            assert_eq!(jwk.kty, kty);
            assert_eq!(jwk.alg.as_deref(), Some(alg.as_str()));
            assert_eq!(jwk.thumbprint().unwrap(), signer.kid());
            let token = signer.sign(&serde_json::json!({"sub": "x"})).unwrap();
            let jws = UnverifiedJws::parse(&token).unwrap();
            assert_eq!(jws.header.alg, alg.as_str());
            assert_eq!(jws.signature.len(), signature_len, "{alg}");
            let key = VerifyingKey::from_jwk(jwk).unwrap();
            assert!(key.verify_as(alg, jws.signing_input.as_bytes(), &jws.signature));
            for other in Algorithm::ALL.into_iter().filter(|a| *a != alg) {
                assert!(!key.verify_as(other, jws.signing_input.as_bytes(), &jws.signature));
            }
        }
    }
}
