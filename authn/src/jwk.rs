//! JSON Web Keys (RFC 7517): the published form of the issuer's public keys, the key policy
//! applied when they are ingested, and RFC 7638 thumbprints (our `kid`s).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents};
use serde::{Deserialize, Serialize};

use crate::base64url::{decode as b64_decode, encode as b64_encode};

/// The only signature algorithm the platform issues and accepts.
pub const ALGORITHM: &str = "RS256";
/// The longest `kid` accepted. Ours are 43 characters (a base64url SHA-256).
pub const MAX_KID_LEN: usize = 128;

/// Smallest accepted RSA modulus (RFC 7518 §3.3 requires 2048 bits).
pub const MIN_RSA_BITS: usize = 2048;
/// Largest accepted RSA modulus: bounds the verification cost of one token.
pub const MAX_RSA_BITS: usize = 8192;
/// The only accepted public exponent. Small exponents (1, 3) are refused outright.
pub const RSA_EXPONENT: &[u8] = &[0x01, 0x00, 0x01];

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("key type {0:?} is not RSA")]
    NotRsa(String),
    #[error("key is not for signatures (use {0:?})")]
    WrongUse(String),
    #[error("key algorithm {0:?} is not RS256")]
    WrongAlgorithm(String),
    #[error("key_ops does not allow verify")]
    WrongOperations,
    #[error("key carries private material")]
    PrivateMaterial,
    #[error("key has no usable kid")]
    MissingKid,
    #[error("several keys share this kid")]
    DuplicateKid,
    #[error("key members are missing or not canonical base64url")]
    Encoding,
    #[error("RSA modulus of {0} bits is outside {MIN_RSA_BITS}..={MAX_RSA_BITS}")]
    Size(usize),
    #[error("RSA public exponent is not 65537")]
    Exponent,
    #[error(
        "RSA modulus has the ROCA fingerprint (CVE-2017-15361): its private key is recoverable"
    )]
    Roca,
    #[error("key rejected: {0}")]
    Rejected(String),
    #[error("key generation failed")]
    Generate,
    #[error("not a PKCS#8 PEM private key")]
    Pem,
}

/// One JSON Web Key as it appears in a JWKS. Only the members this platform uses are typed;
/// the private members are captured so that a key carrying them can be refused.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_ops: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// Private RSA exponent, or EC private scalar: never acceptable in a published key set.
    #[serde(default, skip_serializing)]
    pub d: Option<serde_json::Value>,
    /// Symmetric key material (`kty: oct`): never acceptable in a published key set.
    #[serde(default, skip_serializing)]
    pub k: Option<serde_json::Value>,
}

impl Jwk {
    /// An RSA public JWK from big-endian modulus and exponent, without `kid`, `use` or `alg`.
    pub fn rsa_public(modulus: &[u8], exponent: &[u8]) -> Self {
        Self {
            kty: "RSA".to_owned(),
            n: Some(b64_encode(modulus)),
            e: Some(b64_encode(exponent)),
            ..Self::default()
        }
    }

    /// The RFC 7638 thumbprint: base64url(SHA-256) of the required members in lexicographic
    /// order without whitespace. For RSA: `{"e":..,"kty":"RSA","n":..}`.
    pub fn thumbprint(&self) -> Result<String, KeyError> {
        if self.kty != "RSA" {
            return Err(KeyError::NotRsa(self.kty.clone()));
        }
        let (Some(n), Some(e)) = (&self.n, &self.e) else {
            return Err(KeyError::Encoding);
        };
        // serde_json::Value objects keep keys sorted, which is the canonical order RFC 7638 asks.
        let canonical = serde_json::json!({ "e": e, "kty": "RSA", "n": n }).to_string();
        Ok(b64_encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            canonical.as_bytes(),
        )))
    }
}

/// A JWKS document (RFC 7517 §5). `keys` must be present and an array.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwkSet {
    pub keys: Vec<serde_json::Value>,
}

impl JwkSet {
    /// A key set publishing `keys`.
    pub fn from_keys<'a>(keys: impl IntoIterator<Item = &'a Jwk>) -> Self {
        Self {
            keys: keys
                .into_iter()
                .map(|k| serde_json::to_value(k).expect("BUG: a Jwk always serializes"))
                .collect(),
        }
    }
}

/// An RS256 public key that passed the key policy, parsed once for fast verification.
pub struct VerifyingKey {
    kid: String,
    bits: usize,
    key: ParsedPublicKey,
}

impl VerifyingKey {
    /// Applies the key policy to `jwk` and parses it.
    ///
    /// Policy: `kty` RSA; `use` absent or `sig`; `alg` absent or RS256; `key_ops`, if present,
    /// allows `verify`; no private members; a `kid` of at most [`MAX_KID_LEN`] characters;
    /// canonical base64url `n` and `e`; a modulus of [`MIN_RSA_BITS`] to [`MAX_RSA_BITS`];
    /// exponent 65537.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, KeyError> {
        let kid = match &jwk.kid {
            Some(kid) if !kid.is_empty() && kid.len() <= MAX_KID_LEN => kid.clone(),
            _ => return Err(KeyError::MissingKid),
        };
        let (key, bits) = Self::from_rsa_jwk_parts(jwk)?;
        Ok(Self { kid, bits, key })
    }

    /// The policy checks on everything but the `kid`.
    pub(crate) fn from_rsa_jwk_parts(jwk: &Jwk) -> Result<(ParsedPublicKey, usize), KeyError> {
        if jwk.kty != "RSA" {
            return Err(KeyError::NotRsa(jwk.kty.clone()));
        }
        if jwk.d.is_some() || jwk.k.is_some() {
            return Err(KeyError::PrivateMaterial);
        }
        if let Some(use_) = jwk.use_.as_deref().filter(|u| *u != "sig") {
            return Err(KeyError::WrongUse(use_.to_owned()));
        }
        if let Some(alg) = jwk.alg.as_deref().filter(|a| *a != ALGORITHM) {
            return Err(KeyError::WrongAlgorithm(alg.to_owned()));
        }
        if let Some(ops) = &jwk.key_ops
            && !ops.iter().any(|op| op == "verify")
        {
            return Err(KeyError::WrongOperations);
        }
        let (Some(n), Some(e)) = (&jwk.n, &jwk.e) else {
            return Err(KeyError::Encoding);
        };
        let n = b64_decode(n).map_err(|_| KeyError::Encoding)?;
        let e = b64_decode(e).map_err(|_| KeyError::Encoding)?;
        // RFC 7518 §6.3.1: unsigned big-endian without leading zero octets.
        if n.first().is_none_or(|b| *b == 0) {
            return Err(KeyError::Encoding);
        }
        let bits = n.len() * 8 - n[0].leading_zeros() as usize;
        if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
            return Err(KeyError::Size(bits));
        }
        if e != RSA_EXPONENT {
            return Err(KeyError::Exponent);
        }
        if has_roca_fingerprint(&n) {
            return Err(KeyError::Roca);
        }
        let key = RsaPublicKeyComponents { n: &n, e: &e }
            .to_parsed_public_key(&signature::RSA_PKCS1_2048_8192_SHA256)
            .map_err(|err| KeyError::Rejected(err.to_string()))?;
        Ok((key, bits))
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn bits(&self) -> usize {
        self.bits
    }

    /// Checks an RSASSA-PKCS1-v1_5 SHA-256 signature over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.key.verify_sig(message, signature).is_ok()
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("bits", &self.bits)
            .finish_non_exhaustive()
    }
}

/// A key that was dropped at ingestion, and why (for the log line and the metric).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedKey {
    /// The key's `kid`, escaped and shortened for logging, if it had a string one.
    pub kid: Option<String>,
    pub reason: KeyError,
}

/// The verifying keys of one JWKS document, indexed by `kid`.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: HashMap<String, Arc<VerifyingKey>>,
}

impl KeySet {
    /// Ingests a JWKS: every key is checked on its own and refused keys are dropped (and
    /// returned, so the caller can log them). Keys sharing a `kid` are all dropped: which one
    /// a token means would be ambiguous.
    pub fn from_jwks(jwks: &JwkSet) -> (Self, Vec<DroppedKey>) {
        fn kid_of(value: &serde_json::Value) -> Option<&str> {
            value.get("kid").and_then(serde_json::Value::as_str)
        }
        let mut kid_counts: HashMap<&str, usize> = HashMap::new();
        for kid in jwks.keys.iter().filter_map(kid_of) {
            *kid_counts.entry(kid).or_default() += 1;
        }
        let mut keys = HashMap::new();
        let mut dropped = Vec::new();
        for value in &jwks.keys {
            let kid = kid_of(value);
            let parsed = if kid.is_some_and(|kid| kid_counts[kid] > 1) {
                Err(KeyError::DuplicateKid)
            } else {
                serde_json::from_value::<Jwk>(value.clone())
                    .map_err(|_| KeyError::Encoding)
                    .and_then(|jwk| VerifyingKey::from_jwk(&jwk))
            };
            match parsed {
                Ok(key) => {
                    keys.insert(key.kid.clone(), Arc::new(key));
                }
                Err(reason) => dropped.push(DroppedKey {
                    kid: kid.map(escape_for_log),
                    reason,
                }),
            }
        }
        (Self { keys }, dropped)
    }

    /// A key set of already validated keys.
    pub fn from_keys(keys: impl IntoIterator<Item = VerifyingKey>) -> Self {
        Self {
            keys: keys
                .into_iter()
                .map(|k| (k.kid.clone(), Arc::new(k)))
                .collect(),
        }
    }

    pub fn get(&self, kid: &str) -> Option<&Arc<VerifyingKey>> {
        self.keys.get(kid)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }
}

/// Whether an RSA modulus was made by the Infineon RSALib prime generator broken by ROCA
/// (CVE-2017-15361, Nemec et al., CCS 2017), whose factors can be recovered from the public key.
///
/// The published detection test: such moduli lie, modulo each of these small primes, in the
/// subgroup generated by 65537. A random modulus passes every prime with negligible
/// probability. No maintained Rust crate offers this check, hence these few lines.
fn has_roca_fingerprint(modulus: &[u8]) -> bool {
    const PRIMES: [u32; 38] = [
        3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89,
        97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
    ];
    PRIMES.iter().all(|&p| {
        let residue = modulus
            .iter()
            .fold(0u32, |acc, &byte| (acc * 256 + u32::from(byte)) % p);
        let generator = 65537 % p;
        let mut power = 1;
        loop {
            if power == residue {
                return true;
            }
            power = power * generator % p;
            if power == 1 {
                return false;
            }
        }
    })
}

/// Makes an untrusted string safe for a log line: at most 64 characters, control and
/// non-ASCII characters escaped.
pub fn escape_for_log(untrusted: &str) -> String {
    untrusted
        .chars()
        .take(64)
        .flat_map(char::escape_default)
        .collect()
}
