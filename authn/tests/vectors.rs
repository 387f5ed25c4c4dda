//! The verifier against public test vectors (copied from the project's shared vector set into
//! `tests/vectors/`; sources and licences in `tests/vectors/README.md`).

use authn::RejectReason;
use authn::jwk::{Jwk, JwkSet, KeyError, KeySet, VerifyingKey};
use authn::jws::{UnverifiedJws, b64_decode};
use authn::verifier::{Keys, Policy, Verifier};
use aws_lc_rs::rsa::{KeyPair, KeyPairComponents, PublicKeyComponents};
use aws_lc_rs::signature::RSA_PKCS1_SHA256;
use serde_json::Value;

fn vector(name: &str) -> Value {
    let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).expect("vector JSON")
}

fn str_at<'v>(value: &'v Value, pointer: &str) -> &'v str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{pointer} missing"))
}

fn b64(value: &Value, pointer: &str) -> Vec<u8> {
    b64_decode(str_at(value, pointer)).expect("base64url")
}

fn public_key(jwk: &Value, kid: &str) -> VerifyingKey {
    let mut jwk: Jwk = serde_json::from_value(jwk.clone()).expect("JWK");
    jwk.kid = Some(kid.to_owned());
    VerifyingKey::from_jwk(&jwk).expect("key accepted by the policy")
}

fn private_key(jwk: &Value) -> KeyPair {
    let part = |name: &str| b64(jwk, &format!("/{name}"));
    KeyPair::from_components(&KeyPairComponents {
        public_key: PublicKeyComponents {
            n: part("n"),
            e: part("e"),
        },
        d: part("d"),
        p: part("p"),
        q: part("q"),
        dP: part("dp"),
        dQ: part("dq"),
        qInv: part("qi"),
    })
    .expect("private key")
}

fn sign(key: &KeyPair, message: &[u8]) -> Vec<u8> {
    let mut signature = vec![0; key.public_modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        message,
        &mut signature,
    )
    .expect("sign");
    signature
}

/// RFC 7515 Appendix A.2: RS256 over the RFC's JWT (whose `exp` is in 2011).
#[tokio::test]
async fn rfc7515_a2_rs256_example() {
    let v = vector("rfc7515-a2.json");
    let token = str_at(&v, "/expected_compact_jws");
    let jws = UnverifiedJws::parse(token).expect("parses");
    assert_eq!(jws.signing_input, str_at(&v, "/signing_input"));
    assert_eq!(jws.signature, b64(&v, "/signature_b64u"));

    let key = public_key(&v["jwk_public"], "a2");
    assert!(key.verify(jws.signing_input.as_bytes(), &jws.signature));
    // RSASSA-PKCS1-v1_5 is deterministic: our signing reproduces the RFC's bytes.
    let signature = sign(
        &private_key(&v["jwk_private"]),
        jws.signing_input.as_bytes(),
    );
    assert_eq!(signature, jws.signature);

    // Through the full verifier the RFC's token is refused, and must be: its header has no
    // `typ: at+jwt` and no `kid`, and it has no `aud` (it is not an access token).
    let verifier = Verifier::new(
        Keys::fixed(KeySet::from_keys([key])),
        Policy::new("joe", "any"),
    );
    assert_eq!(
        verifier.verify_at(token, 1_300_819_000).await.unwrap_err(),
        RejectReason::WrongType.into()
    );
}

/// RFC 7520 §4.1: RS256 over a non-JSON payload, with a `kid`.
#[test]
fn rfc7520_4_1_rsa_v15_signature() {
    let v = vector("rfc7520-4_1.rsa_v15_signature.json");
    let token = str_at(&v, "/output/compact");
    let jws = UnverifiedJws::parse(token).expect("parses");
    assert_eq!(
        jws.header.kid.as_deref(),
        Some("bilbo.baggins@hobbiton.example")
    );
    assert_eq!(jws.signing_input, str_at(&v, "/signing/sig-input"));

    let mut public = v["input"]["key"].clone();
    for private in ["d", "p", "q", "dp", "dq", "qi"] {
        public.as_object_mut().expect("object").remove(private);
    }
    let key = public_key(&public, "bilbo");
    assert!(key.verify(jws.signing_input.as_bytes(), &jws.signature));
    assert_eq!(
        sign(
            &private_key(&v["input"]["key"]),
            jws.signing_input.as_bytes()
        ),
        b64(&v, "/signing/sig")
    );
    // The payload is not JSON: a verifier must not accept it as claims.
    assert!(jws.payload::<Value>().is_err());
}

/// RFC 7638 §3.1: the thumbprint of RFC 7517 A.1's key, which is our `kid` scheme.
#[test]
fn rfc7638_thumbprint() {
    let v = vector("rfc7517-a1-rsa-rfc7638-thumbprint.json");
    let jwk: Jwk = serde_json::from_value(v["jwk_public"].clone()).expect("JWK");
    assert_eq!(
        jwk.thumbprint().expect("RSA"),
        str_at(&v, "/rfc7638_sha256_thumbprint_b64u")
    );
}

/// A JWK in the policy's terms; the public exponent and modulus come from Wycheproof hex.
fn wycheproof_key(group: &Value) -> Result<VerifyingKey, KeyError> {
    let hex_bytes = |pointer: &str| {
        let hex = str_at(group, pointer);
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect();
        let first_non_zero = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
        bytes[first_non_zero..].to_vec()
    };
    let mut jwk = Jwk::rsa_public(
        &hex_bytes("/publicKey/modulus"),
        &hex_bytes("/publicKey/publicExponent"),
    );
    jwk.kid = Some("wycheproof".into());
    VerifyingKey::from_jwk(&jwk)
}

fn hex(value: &Value) -> Vec<u8> {
    let hex = value.as_str().expect("hex string");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Wycheproof RSASSA-PKCS1-v1_5 SHA-256, 2048-bit: every valid case verifies, every invalid and
/// "acceptable" case is refused.
///
/// Deliberate deviation: the groups with public exponent 3 (cases 258 and 259, marked valid)
/// are refused earlier, at key ingestion, because the key policy accepts e = 65537 only.
#[test]
fn wycheproof_rsa_pkcs1_2048_sha256() {
    let v = vector("rsa_signature_2048_sha256_test.json");
    let (mut valid, mut invalid, mut refused_keys) = (0, 0, 0);
    for group in v["testGroups"].as_array().expect("groups") {
        let tests = group["tests"].as_array().expect("tests");
        let key = match wycheproof_key(group) {
            Ok(key) => key,
            Err(error) => {
                assert_eq!(error, KeyError::Exponent, "only e = 3 groups are refused");
                assert_eq!(str_at(group, "/publicKey/publicExponent"), "03");
                refused_keys += tests.len();
                continue;
            }
        };
        for case in tests {
            let id = &case["tcId"];
            let accepted = key.verify(&hex(&case["msg"]), &hex(&case["sig"]));
            match case["result"].as_str() {
                Some("valid") => {
                    assert!(accepted, "case {id} is valid and must verify");
                    valid += 1;
                }
                Some("invalid" | "acceptable") => {
                    assert!(!accepted, "case {id} must be refused");
                    invalid += 1;
                }
                other => panic!("case {id}: unknown result {other:?}"),
            }
        }
    }
    assert_eq!((valid, invalid, refused_keys), (7, 250, 2));
}

/// Wycheproof JWK/JWKS ingestion: every RSA key refused by a case marked invalid is dropped by
/// the key policy, and the one valid RS256 key is kept.
#[test]
fn wycheproof_jwk_ingestion() {
    let v = vector("json_web_key_test.json");
    for group in v["testGroups"].as_array().expect("groups") {
        let comment = str_at(group, "/comment");
        // Verifiers only ever see public key sets; private sets must be refused whole.
        let (set, public) = match group.get("public") {
            Some(public) => (public.clone(), true),
            None => (group["private"].clone(), false),
        };
        let jwks = if set.get("keys").is_some() {
            serde_json::from_value::<JwkSet>(set).expect("JWKS")
        } else {
            JwkSet { keys: vec![set] }
        };
        let (keys, dropped) = KeySet::from_jwks(&jwks);
        for case in group["tests"].as_array().expect("tests") {
            let id = &case["tcId"];
            let valid = case["result"] == "valid";
            if public && valid && comment == "rs256" {
                assert_eq!(keys.len(), 1, "case {id}: the RS256 key is kept");
                assert!(dropped.is_empty());
            } else if comment == "jws_mixedSymmetryKeyset" {
                // The set's EC member is a well-formed public P-256 key, usable for ES256 since
                // the platform accepts ES256; the symmetric key is dropped. What the case
                // calls invalid is its HS256 token, which the JWS layer refuses.
                assert_eq!(keys.kids().collect::<Vec<_>>(), ["kid-ec-sign"]);
                assert_eq!(dropped.len(), 1);
                assert!(!jws_layer_accepts(&keys, str_at(case, "/jws")), "case {id}");
            } else {
                assert!(
                    keys.is_empty(),
                    "case {id} ({comment}): no key of this set may be usable, got {:?}",
                    keys.kids().collect::<Vec<_>>()
                );
            }
        }
    }
}

/// The JWS layer of the verifier (strict compact parsing, the pinned algorithm, key selection
/// by `kid` from a policy-checked key set, the signature) on one Wycheproof case.
fn jws_layer_accepts(keys: &KeySet, token: &str) -> bool {
    let Ok(jws) = UnverifiedJws::parse(token) else {
        return false;
    };
    let Some(alg) = authn::jwk::Algorithm::from_jose(&jws.header.alg) else {
        return false;
    };
    if jws.header.crit {
        return false;
    }
    let Some(key) = jws.header.kid.as_deref().and_then(|kid| keys.get(kid)) else {
        return false;
    };
    key.verify_as(alg, jws.signing_input.as_bytes(), &jws.signature)
}

/// Wycheproof JWS (`json_web_signature_test.json`), all 401 cases: every invalid case is
/// refused. Valid cases are accepted when they are RS256 under our key policy; the deliberate
/// deviations, each refused on purpose, are listed with their case ids.
#[test]
fn wycheproof_json_web_signature() {
    let v = vector("json_web_signature_test.json");
    // Valid in Wycheproof, refused here on purpose:
    // - every case of a group whose algorithm the platform does not implement (HS*, PS*,
    //   ES384, ES512, RS384, RS512): only RS256, ES256 and EdDSA exist here. This includes 372
    //   and 373 (HS256, a `?` inside a segment), which strict base64url would refuse anyway;
    // - 259: an empty payload segment. A JWT always carries a claims object, and an empty
    //   segment is refused as malformed before anything else.
    // Keys with `use: enc` (cases 353, 355, invalid anyway) are dropped at ingestion.
    const EMPTY_PAYLOAD: [u64; 1] = [259];
    // RS256: 33, 260-263, 345, 349; ES256: 18 and 378.
    const ACCEPTED: [u64; 9] = [18, 33, 260, 261, 262, 263, 345, 349, 378];
    let (mut cases, mut accepted_valid) = (0, Vec::new());
    for group in v["testGroups"].as_array().expect("groups") {
        let key_json = group.get("public").unwrap_or(&group["private"]);
        let jwks = JwkSet {
            keys: vec![key_json.clone()],
        };
        let (keys, _) = KeySet::from_jwks(&jwks);
        let supported_group =
            ["RS256", "ES256", "EdDSA"].contains(&key_json["alg"].as_str().unwrap_or_default());
        for case in group["tests"].as_array().expect("tests") {
            cases += 1;
            let id = case["tcId"].as_u64().expect("id");
            let token = str_at(case, "/jws");
            let accepted = jws_layer_accepts(&keys, token);
            match case["result"].as_str() {
                Some("valid") if supported_group && !EMPTY_PAYLOAD.contains(&id) => {
                    assert!(
                        accepted,
                        "case {id} is a valid {} JWS and must be accepted",
                        key_json["alg"]
                    );
                    accepted_valid.push(id);
                }
                Some("valid") => assert!(
                    !accepted,
                    "case {id}: deliberate deviation, must be refused"
                ),
                _ => assert!(!accepted, "case {id} is invalid and must be refused"),
            }
        }
    }
    assert_eq!(cases, 401);
    assert_eq!(accepted_valid, ACCEPTED);
}

/// A Wycheproof group's key, ingested through the JWKS path (`KeySet::from_jwks`), so the key
/// policy (curve, point on the curve, sizes) applies as it does to the issuer's JWKS. Groups
/// without a JWK carry the uncompressed point, turned into one.
fn wycheproof_jwks_key(group: &Value, alg: authn::jwk::Algorithm) -> std::sync::Arc<VerifyingKey> {
    let mut jwk = match group.get("publicKeyJwk") {
        Some(jwk) => jwk.clone(),
        None => serde_json::to_value(
            Jwk::ec_p256_public(&hex(&group["publicKey"]["uncompressed"])).expect("point"),
        )
        .expect("JWK"),
    };
    jwk["kid"] = "wycheproof".into();
    jwk["alg"] = alg.as_str().into();
    let (keys, dropped) = KeySet::from_jwks(&JwkSet { keys: vec![jwk] });
    assert!(dropped.is_empty(), "{dropped:?}");
    keys.get("wycheproof").expect("key").clone()
}

/// Runs every case of a Wycheproof verification file through `key.verify_as(alg, ..)`, the
/// call the verifier makes after pinning: every valid case verifies, every invalid one is
/// refused. Neither file has "acceptable" cases; if one appeared it would count as invalid (the
/// strict reading). Returns (valid, invalid).
fn run_wycheproof(file: &str, alg: authn::jwk::Algorithm) -> (usize, usize) {
    let v = vector(file);
    let (mut valid, mut invalid) = (0, 0);
    for group in v["testGroups"].as_array().expect("groups") {
        let key = wycheproof_jwks_key(group, alg);
        assert_eq!(key.algorithm(), alg);
        for case in group["tests"].as_array().expect("tests") {
            let id = &case["tcId"];
            let accepted = key.verify_as(alg, &hex(&case["msg"]), &hex(&case["sig"]));
            match case["result"].as_str() {
                Some("valid") => {
                    assert!(accepted, "case {id} is valid and must verify");
                    valid += 1;
                }
                Some("invalid" | "acceptable") => {
                    assert!(!accepted, "case {id} ({}) must be refused", case["comment"]);
                    invalid += 1;
                }
                other => panic!("case {id}: unknown result {other:?}"),
            }
            // The same signature under any other algorithm: refused, whatever the case says.
            for other in authn::jwk::Algorithm::ALL.into_iter().filter(|a| *a != alg) {
                assert!(!key.verify_as(other, &hex(&case["msg"]), &hex(&case["sig"])));
            }
        }
    }
    (valid, invalid)
}

/// Wycheproof ECDSA P-256 SHA-256 in P1363 form (JWS ES256): 262 cases, 173 valid, 89 invalid
/// (DER-encoded and wrong-length signatures, r or s of 0 or n, edge-case keys), all matching.
#[test]
fn wycheproof_ecdsa_p256_sha256_p1363() {
    assert_eq!(
        run_wycheproof(
            "ecdsa_secp256r1_sha256_p1363_test.json",
            authn::jwk::Algorithm::Es256
        ),
        (173, 89)
    );
}

/// Wycheproof Ed25519 (JWS EdDSA): 151 cases, 88 valid, 63 invalid (non-canonical `s`,
/// truncated or extended signatures), all matching.
#[test]
fn wycheproof_ed25519() {
    assert_eq!(
        run_wycheproof("ed25519_test.json", authn::jwk::Algorithm::EdDsa),
        (88, 63)
    );
}

/// RFC 8037 Appendix A: the Ed25519 JWK's RFC 7638 thumbprint (A.3), and the example JWS (A.4)
/// through the JWS layer: strict compact parsing, `alg: EdDSA` pinned to the key's algorithm,
/// the signature. The same JWS with `alg` changed, or verified with an RSA key's algorithm,
/// is refused. The private JWK is refused as a published key.
#[test]
fn rfc8037_ed25519_example() {
    let v = vector("rfc8037-a-ed25519.json");
    let public: Jwk = serde_json::from_value(v["jwk_public"].clone()).expect("JWK");
    assert_eq!(
        public.thumbprint().expect("thumbprint"),
        str_at(&v, "/thumbprint_sha256")
    );
    let mut private: Jwk = serde_json::from_value(v["jwk_private"].clone()).expect("JWK");
    private.kid = Some("private".into());
    assert_eq!(
        VerifyingKey::from_jwk(&private).unwrap_err(),
        KeyError::PrivateMaterial
    );

    let key = public_key(&v["jwk_public"], "rfc8037");
    assert_eq!(key.algorithm(), authn::jwk::Algorithm::EdDsa);
    let compact = str_at(&v, "/compact");
    let jws = UnverifiedJws::parse(compact).expect("compact JWS");
    assert_eq!(jws.signing_input, str_at(&v, "/signing_input"));
    let alg = authn::jwk::Algorithm::from_jose(&jws.header.alg).expect("EdDSA");
    assert!(key.verify_as(alg, jws.signing_input.as_bytes(), &jws.signature));
    assert!(!key.verify_as(
        authn::jwk::Algorithm::Es256,
        jws.signing_input.as_bytes(),
        &jws.signature
    ));
    let mut altered = jws.signature.clone();
    altered[0] ^= 1;
    assert!(!key.verify_as(alg, jws.signing_input.as_bytes(), &altered));
    // The JOSE names are case-sensitive: "EDDSA" and "eddsa" name no algorithm.
    assert!(authn::jwk::Algorithm::from_jose("EDDSA").is_none());
    assert!(authn::jwk::Algorithm::from_jose("eddsa").is_none());
}
