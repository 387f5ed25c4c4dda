//! JSON Web Keys (RFC 7517): the published form of the issuer's public keys, the key policy
//! applied when they are ingested, and RFC 7638 thumbprints (our `kid`s).

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents};
use serde::{Deserialize, Serialize};

use crate::base64url::{decode as b64_decode, encode as b64_encode};

/// The default signature algorithm (RS256): what the issuer signs with unless configured
/// otherwise.
pub const ALGORITHM: &str = "RS256";

/// A JWS signature algorithm the platform issues and accepts (RFC 7518 §3, RFC 8037 §3.1).
///
/// Each key has exactly one: RSA keys RS256, EC P-256 keys ES256, Ed25519 keys EdDSA. A
/// verifier checks a token's `alg` against the algorithm of the key its `kid` names, never
/// the other way round (the header never chooses how a key is used).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048- to 8192-bit keys.
    #[default]
    Rs256,
    /// ECDSA on P-256 with SHA-256, the signature in JOSE form (`r || s`, 64 bytes).
    Es256,
    /// Ed25519 (RFC 8037: `alg: EdDSA`, `crv: Ed25519`).
    EdDsa,
}

impl Algorithm {
    pub const ALL: [Algorithm; 3] = [Algorithm::Rs256, Algorithm::Es256, Algorithm::EdDsa];

    /// The JOSE name (`RS256`, `ES256`, `EdDSA`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Algorithm::Rs256 => "RS256",
            Algorithm::Es256 => "ES256",
            Algorithm::EdDsa => "EdDSA",
        }
    }

    /// The JWK `kty` of keys of this algorithm.
    pub const fn key_type(self) -> &'static str {
        match self {
            Algorithm::Rs256 => "RSA",
            Algorithm::Es256 => "EC",
            Algorithm::EdDsa => "OKP",
        }
    }

    /// The JOSE name exactly as registered: `es256` or `EDDSA` are not these algorithms.
    pub fn from_jose(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|alg| alg.as_str() == name)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An algorithm name that is not one of `RS256`, `ES256`, `EdDSA`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown signature algorithm {0:?} (expected RS256, ES256 or EdDSA)")]
pub struct UnknownAlgorithm(pub String);

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    /// Parses a configuration value. The JOSE names are case-sensitive in tokens, but an
    /// operator typing `es256` means ES256, so configuration is case-insensitive.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|alg| alg.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownAlgorithm(s.to_owned()))
    }
}

/// The set of algorithms a verifier accepts (`AUTH_ALLOWED_ALGS`). Default: all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AllowedAlgorithms {
    rs256: bool,
    es256: bool,
    eddsa: bool,
}

impl Default for AllowedAlgorithms {
    fn default() -> Self {
        Self::all()
    }
}

impl AllowedAlgorithms {
    pub const fn all() -> Self {
        Self {
            rs256: true,
            es256: true,
            eddsa: true,
        }
    }

    /// Exactly the given algorithms.
    pub fn only(algs: impl IntoIterator<Item = Algorithm>) -> Self {
        let mut set = Self {
            rs256: false,
            es256: false,
            eddsa: false,
        };
        for alg in algs {
            match alg {
                Algorithm::Rs256 => set.rs256 = true,
                Algorithm::Es256 => set.es256 = true,
                Algorithm::EdDsa => set.eddsa = true,
            }
        }
        set
    }

    pub const fn contains(self, alg: Algorithm) -> bool {
        match alg {
            Algorithm::Rs256 => self.rs256,
            Algorithm::Es256 => self.es256,
            Algorithm::EdDsa => self.eddsa,
        }
    }

    pub fn iter(self) -> impl Iterator<Item = Algorithm> {
        Algorithm::ALL
            .into_iter()
            .filter(move |alg| self.contains(*alg))
    }
}

impl fmt::Display for AllowedAlgorithms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Algorithm::as_str).collect();
        f.write_str(&names.join(","))
    }
}

impl FromStr for AllowedAlgorithms {
    type Err = UnknownAlgorithm;

    /// A comma-separated list (`RS256,ES256`); at least one algorithm.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let algs = s
            .split(',')
            .filter(|name| !name.trim().is_empty())
            .map(Algorithm::from_str)
            .collect::<Result<Vec<_>, _>>()?;
        if algs.is_empty() {
            return Err(UnknownAlgorithm(s.to_owned()));
        }
        Ok(Self::only(algs))
    }
}
/// The longest `kid` accepted. Ours are 43 characters (a base64url SHA-256).
pub const MAX_KID_LEN: usize = 128;

/// The only EC curve accepted (`kty: EC`).
pub const P256: &str = "P-256";
/// The only OKP curve accepted (`kty: OKP`).
pub const ED25519: &str = "Ed25519";
const P256_COORDINATE_LEN: usize = 32;
const ED25519_PUBLIC_KEY_LEN: usize = 32;

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
    #[error("key type {0:?} is not one of RSA, EC, OKP")]
    UnsupportedKeyType(String),
    #[error("curve {0:?} is not P-256 (EC) or Ed25519 (OKP)")]
    Curve(String),
    #[error("public point is not on the curve")]
    NotOnCurve,
    #[error("key is not for signatures (use {0:?})")]
    WrongUse(String),
    #[error("key algorithm {0:?} does not match the key type")]
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
    /// The curve of an EC (`P-256`) or OKP (`Ed25519`) key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// The x coordinate (EC) or the public key (OKP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// The y coordinate (EC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// Private RSA exponent, EC private scalar or OKP private key: never acceptable in a
    /// published key set.
    #[serde(default, skip_serializing)]
    pub d: Option<serde_json::Value>,
    /// Symmetric key material (`kty: oct`): never acceptable in a published key set.
    #[serde(default, skip_serializing)]
    pub k: Option<serde_json::Value>,
    /// The other private RSA members (RFC 7518 §6.3.2): captured only to refuse the key.
    #[serde(default, skip_serializing)]
    pub p: Option<serde_json::Value>,
    #[serde(default, skip_serializing)]
    pub q: Option<serde_json::Value>,
    #[serde(default, skip_serializing)]
    pub dp: Option<serde_json::Value>,
    #[serde(default, skip_serializing)]
    pub dq: Option<serde_json::Value>,
    #[serde(default, skip_serializing)]
    pub qi: Option<serde_json::Value>,
    #[serde(default, skip_serializing)]
    pub oth: Option<serde_json::Value>,
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

    /// A P-256 public JWK (`kty: EC`) from the uncompressed point `04 || x || y`.
    pub fn ec_p256_public(uncompressed_point: &[u8]) -> Result<Self, KeyError> {
        let (0x04, coordinates) = uncompressed_point
            .split_first()
            .map(|(tag, rest)| (*tag, rest))
            .ok_or(KeyError::Encoding)?
        else {
            return Err(KeyError::Encoding);
        };
        if coordinates.len() != 2 * P256_COORDINATE_LEN {
            return Err(KeyError::Encoding);
        }
        let (x, y) = coordinates.split_at(P256_COORDINATE_LEN);
        Ok(Self {
            kty: "EC".to_owned(),
            crv: Some(P256.to_owned()),
            x: Some(b64_encode(x)),
            y: Some(b64_encode(y)),
            ..Self::default()
        })
    }

    /// An Ed25519 public JWK (`kty: OKP`, RFC 8037) from the 32-byte public key.
    pub fn ed25519_public(public_key: &[u8]) -> Self {
        Self {
            kty: "OKP".to_owned(),
            crv: Some(ED25519.to_owned()),
            x: Some(b64_encode(public_key)),
            ..Self::default()
        }
    }

    /// Whether any private member (`d`, `k`, `p`, `q`, `dp`, `dq`, `qi`, `oth`) is present.
    pub fn has_private_members(&self) -> bool {
        [
            &self.d, &self.k, &self.p, &self.q, &self.dp, &self.dq, &self.qi, &self.oth,
        ]
        .iter()
        .any(|member| member.is_some())
    }

    /// The RFC 7638 thumbprint: base64url(SHA-256) of the required members in lexicographic
    /// order without whitespace. For RSA `{"e":..,"kty":"RSA","n":..}`, for EC
    /// `{"crv":..,"kty":"EC","x":..,"y":..}`, for OKP `{"crv":..,"kty":"OKP","x":..}`
    /// (RFC 8037 §2).
    pub fn thumbprint(&self) -> Result<String, KeyError> {
        // serde_json::Value objects keep keys sorted, which is the canonical order RFC 7638 asks.
        let canonical = match self.kty.as_str() {
            "RSA" => {
                let (Some(n), Some(e)) = (&self.n, &self.e) else {
                    return Err(KeyError::Encoding);
                };
                serde_json::json!({ "e": e, "kty": "RSA", "n": n })
            }
            "EC" => {
                let (Some(crv), Some(x), Some(y)) = (&self.crv, &self.x, &self.y) else {
                    return Err(KeyError::Encoding);
                };
                serde_json::json!({ "crv": crv, "kty": "EC", "x": x, "y": y })
            }
            "OKP" => {
                let (Some(crv), Some(x)) = (&self.crv, &self.x) else {
                    return Err(KeyError::Encoding);
                };
                serde_json::json!({ "crv": crv, "kty": "OKP", "x": x })
            }
            other => return Err(KeyError::UnsupportedKeyType(other.to_owned())),
        }
        .to_string();
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

/// A public key that passed the key policy, parsed once for fast verification, with the one
/// algorithm it verifies.
pub struct VerifyingKey {
    kid: String,
    alg: Algorithm,
    bits: usize,
    key: ParsedPublicKey,
}

impl VerifyingKey {
    /// Applies the key policy to `jwk` and parses it.
    ///
    /// Policy for every key: `use` absent or `sig`; `key_ops`, if present, allows `verify`; no
    /// private members; a `kid` of at most [`MAX_KID_LEN`] characters; canonical base64url
    /// members; `alg` absent or the one algorithm of the key type. Then per type:
    /// - `RSA` (RS256): a modulus of [`MIN_RSA_BITS`] to [`MAX_RSA_BITS`], exponent 65537, no
    ///   ROCA fingerprint;
    /// - `EC` (ES256): `crv` P-256 only, 32-byte `x` and `y` naming a point on the curve;
    /// - `OKP` (EdDSA): `crv` Ed25519 only, a 32-byte `x`.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, KeyError> {
        let kid = match &jwk.kid {
            Some(kid) if !kid.is_empty() && kid.len() <= MAX_KID_LEN => kid.clone(),
            _ => return Err(KeyError::MissingKid),
        };
        let (alg, key, bits) = Self::from_jwk_parts(jwk)?;
        Ok(Self {
            kid,
            alg,
            bits,
            key,
        })
    }

    /// The policy checks on everything but the `kid`.
    pub(crate) fn from_jwk_parts(
        jwk: &Jwk,
    ) -> Result<(Algorithm, ParsedPublicKey, usize), KeyError> {
        let alg = match jwk.kty.as_str() {
            "RSA" => Algorithm::Rs256,
            "EC" => Algorithm::Es256,
            "OKP" => Algorithm::EdDsa,
            other => return Err(KeyError::UnsupportedKeyType(other.to_owned())),
        };
        if jwk.has_private_members() {
            return Err(KeyError::PrivateMaterial);
        }
        if let Some(use_) = jwk.use_.as_deref().filter(|u| *u != "sig") {
            return Err(KeyError::WrongUse(use_.to_owned()));
        }
        if let Some(named) = jwk.alg.as_deref().filter(|a| *a != alg.as_str()) {
            return Err(KeyError::WrongAlgorithm(named.to_owned()));
        }
        if let Some(ops) = &jwk.key_ops
            && !ops.iter().any(|op| op == "verify")
        {
            return Err(KeyError::WrongOperations);
        }
        let (key, bits) = match alg {
            Algorithm::Rs256 => Self::rsa(jwk)?,
            Algorithm::Es256 => Self::ec_p256(jwk)?,
            Algorithm::EdDsa => Self::ed25519(jwk)?,
        };
        Ok((alg, key, bits))
    }

    fn rsa(jwk: &Jwk) -> Result<(ParsedPublicKey, usize), KeyError> {
        if jwk.crv.is_some() || jwk.x.is_some() || jwk.y.is_some() {
            return Err(KeyError::Encoding);
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

    fn ec_p256(jwk: &Jwk) -> Result<(ParsedPublicKey, usize), KeyError> {
        match jwk.crv.as_deref() {
            Some(P256) => {}
            other => return Err(KeyError::Curve(other.unwrap_or_default().to_owned())),
        }
        if jwk.n.is_some() || jwk.e.is_some() {
            return Err(KeyError::Encoding);
        }
        let (Some(x), Some(y)) = (&jwk.x, &jwk.y) else {
            return Err(KeyError::Encoding);
        };
        let x = b64_decode(x).map_err(|_| KeyError::Encoding)?;
        let y = b64_decode(y).map_err(|_| KeyError::Encoding)?;
        // RFC 7518 §6.2.1.2: each coordinate is the full size of the field, leading zeros kept.
        if x.len() != P256_COORDINATE_LEN || y.len() != P256_COORDINATE_LEN {
            return Err(KeyError::Encoding);
        }
        let mut point = Vec::with_capacity(1 + 2 * P256_COORDINATE_LEN);
        point.push(0x04);
        point.extend_from_slice(&x);
        point.extend_from_slice(&y);
        // aws-lc parses the point with EC_POINT_oct2point, which refuses coordinates outside
        // the field and points not on P-256 (invalid-curve attacks), and the point at infinity.
        let key = ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &point)
            .map_err(|_| KeyError::NotOnCurve)?;
        Ok((key, 256))
    }

    fn ed25519(jwk: &Jwk) -> Result<(ParsedPublicKey, usize), KeyError> {
        match jwk.crv.as_deref() {
            Some(ED25519) => {}
            other => return Err(KeyError::Curve(other.unwrap_or_default().to_owned())),
        }
        if jwk.n.is_some() || jwk.e.is_some() || jwk.y.is_some() {
            return Err(KeyError::Encoding);
        }
        let Some(x) = &jwk.x else {
            return Err(KeyError::Encoding);
        };
        let x = b64_decode(x).map_err(|_| KeyError::Encoding)?;
        if x.len() != ED25519_PUBLIC_KEY_LEN {
            return Err(KeyError::Encoding);
        }
        let key = ParsedPublicKey::new(&signature::ED25519, &x)
            .map_err(|err| KeyError::Rejected(err.to_string()))?;
        Ok((key, 256))
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The one algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// Key size in bits: the RSA modulus, or 256 for P-256 and Ed25519.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// Checks a signature over `message` with this key's algorithm: RSASSA-PKCS1-v1_5
    /// SHA-256, ECDSA P-256 SHA-256 in JOSE form (64 bytes `r || s`; DER is refused), or
    /// Ed25519.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        if self.alg == Algorithm::Es256 && signature.len() != 2 * P256_COORDINATE_LEN {
            return false;
        }
        self.key.verify_sig(message, signature).is_ok()
    }

    /// [`VerifyingKey::verify`] for a token whose header names `alg`: false unless `alg` is
    /// this key's algorithm. This is the pinning: the header never picks how a key is used.
    pub fn verify_as(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        alg == self.alg && self.verify(message, signature)
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
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
