//! The verifier against the attack classes of SECURITY-TESTS.md that concern the token itself
//! (1-5 and 8-13), at the library level. The same classes run against the real services in
//! the services' own test suites.

use aws_lc_rs::hmac;
use serde_json::{Value, json};
use shared::RejectReason::{self, *};
use shared::jws::b64_encode;
use shared::testing::TestIssuer;
use shared::{AuthError, Verifier};

struct Case {
    issuer: TestIssuer,
    verifier: Verifier,
}

impl Case {
    fn new() -> Self {
        let issuer = TestIssuer::new();
        let verifier = issuer.verifier();
        Self { issuer, verifier }
    }

    fn valid_claims(&self) -> Value {
        serde_json::to_value(self.issuer.claims("alice", "orders:read", &["user"])).unwrap()
    }

    fn header(&self) -> Value {
        self.issuer.header()
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        self.issuer.forge(&header.to_string(), &claims.to_string())
    }

    async fn refused(&self, token: &str) -> RejectReason {
        match self.verifier.verify(token).await {
            Err(AuthError::Unauthenticated(reason)) => reason,
            other => panic!("token {token:.60} must be refused, got {other:?}"),
        }
    }

    async fn assert_refused(&self, token: &str, expected: RejectReason) {
        assert_eq!(self.refused(token).await, expected, "{token:.80}");
    }
}

fn unsigned(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        b64_encode(header.to_string()),
        b64_encode(claims.to_string())
    )
}

#[tokio::test]
async fn a_valid_token_is_accepted() {
    let case = Case::new();
    let token = case.sign(&case.header(), &case.valid_claims());
    let principal = case.verifier.verify(&token).await.unwrap();
    assert_eq!(principal.sub(), "alice");
}

/// Class 1: `alg: none` in any casing, with and without a signature segment.
#[tokio::test]
async fn class_01_alg_none() {
    let case = Case::new();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = json!({ "alg": alg, "typ": "at+jwt", "kid": case.issuer.kid() });
        let claims = case.valid_claims();
        case.assert_refused(&unsigned(&header, &claims, ""), Malformed)
            .await;
        case.assert_refused(
            unsigned(&header, &claims, "").trim_end_matches('.'),
            Malformed,
        )
        .await;
        case.assert_refused(&unsigned(&header, &claims, "AAAA"), AlgorithmNotAllowed)
            .await;
        // Even with a genuine RS256 signature over the `none` header.
        case.assert_refused(&case.sign(&header, &claims), AlgorithmNotAllowed)
            .await;
    }
}

/// Class 2: missing, empty, truncated or altered signatures; altered payloads; wrong
/// segment counts (including a five-segment JWE).
#[tokio::test]
async fn class_02_signature_and_structure() {
    let case = Case::new();
    let token = case.sign(&case.header(), &case.valid_claims());
    let (signing_input, signature) = token.rsplit_once('.').unwrap();
    case.assert_refused(signing_input, Malformed).await;
    case.assert_refused(&format!("{signing_input}."), Malformed)
        .await;
    for cut in 1..=4 {
        let truncated = format!("{signing_input}.{}", &signature[..signature.len() - cut]);
        let reason = case.refused(&truncated).await;
        assert!(
            matches!(reason, BadSignature | Malformed),
            "cut {cut}: {reason:?}"
        );
    }
    let mut altered = signature.as_bytes().to_vec();
    altered[10] = if altered[10] == b'A' { b'B' } else { b'A' };
    case.assert_refused(
        &format!("{signing_input}.{}", String::from_utf8(altered).unwrap()),
        BadSignature,
    )
    .await;

    let mut other_claims = case.valid_claims();
    other_claims["roles"] = json!(["admin"]);
    let (header_b64, _) = signing_input.split_once('.').unwrap();
    let altered_payload = format!(
        "{header_b64}.{}.{signature}",
        b64_encode(other_claims.to_string())
    );
    case.assert_refused(&altered_payload, BadSignature).await;

    case.assert_refused(&format!("{token}.{signature}"), Malformed)
        .await;
    case.assert_refused(&format!("{token}.{signature}.{signature}"), Malformed)
        .await;
    let jwe_header = b64_encode(r#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#);
    case.assert_refused(&format!("{jwe_header}.AAAA.AAAA.AAAA.AAAA"), Malformed)
        .await;
}

fn hs256(secret: &[u8], header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64_encode(header.to_string()),
        b64_encode(claims.to_string())
    );
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), input.as_bytes());
    format!("{input}.{}", b64_encode(tag.as_ref()))
}

/// A DER length.
fn der_len(len: usize) -> Vec<u8> {
    if len < 0x80 {
        vec![u8::try_from(len).unwrap()]
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        let mut out = vec![0x80 | u8::try_from(bytes.len()).unwrap()];
        out.extend(bytes);
        out
    }
}

fn der_integer(big_endian: &[u8]) -> Vec<u8> {
    let mut content = big_endian.to_vec();
    if content[0] & 0x80 != 0 {
        content.insert(0, 0);
    }
    let mut out = vec![0x02];
    out.extend(der_len(content.len()));
    out.extend(content);
    out
}

/// Class 3: algorithm confusion, HS256 keyed with the issuer's public key in every encoding.
#[tokio::test]
async fn class_03_algorithm_confusion() {
    let case = Case::new();
    let jwk = case.issuer.signer().public_jwk().clone();
    let n = shared::jws::b64_decode(jwk.n.as_deref().unwrap()).unwrap();
    let e = shared::jws::b64_decode(jwk.e.as_deref().unwrap()).unwrap();
    let mut pkcs1 = der_integer(&n);
    pkcs1.extend(der_integer(&e));
    let mut pkcs1_der = vec![0x30];
    pkcs1_der.extend(der_len(pkcs1.len()));
    pkcs1_der.extend(pkcs1);
    let spki = spki_of(&n, &e);
    let spki_pem = pem::encode(&pem::Pem::new("PUBLIC KEY", spki.clone()));
    let pkcs1_pem = pem::encode(&pem::Pem::new("RSA PUBLIC KEY", pkcs1_der.clone()));
    let secrets: Vec<Vec<u8>> = vec![
        spki_pem.clone().into_bytes(),
        spki_pem.trim_end().as_bytes().to_vec(),
        spki_pem.replace('\n', "\r\n").into_bytes(),
        pkcs1_pem.clone().into_bytes(),
        pkcs1_pem.trim_end().as_bytes().to_vec(),
        spki,
        pkcs1_der,
        serde_json::to_vec(&jwk).unwrap(),
        serde_json::to_vec(&case.issuer.jwks()).unwrap(),
        n,
        jwk.n.clone().unwrap().into_bytes(),
    ];
    for alg in ["HS256", "hs256"] {
        let header = json!({ "alg": alg, "typ": "at+jwt", "kid": case.issuer.kid() });
        for secret in &secrets {
            let token = hs256(secret, &header, &case.valid_claims());
            case.assert_refused(&token, AlgorithmNotAllowed).await;
        }
    }
}

/// SubjectPublicKeyInfo DER for an RSA key (rsaEncryption OID, NULL parameters).
fn spki_of(n: &[u8], e: &[u8]) -> Vec<u8> {
    let mut rsa_key = der_integer(n);
    rsa_key.extend(der_integer(e));
    let mut rsa_seq = vec![0x30];
    rsa_seq.extend(der_len(rsa_key.len()));
    rsa_seq.extend(rsa_key);
    let algorithm: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bit_string = vec![0x03];
    bit_string.extend(der_len(rsa_seq.len() + 1));
    bit_string.push(0);
    bit_string.extend(rsa_seq);
    let mut body = algorithm.to_vec();
    body.extend(bit_string);
    let mut out = vec![0x30];
    out.extend(der_len(body.len()));
    out.extend(body);
    assert!(
        aws_lc_rs::rsa::PublicKey::from_der(&out).is_ok(),
        "valid SPKI"
    );
    out
}

/// Class 4: any algorithm but RS256, including all-zero signatures.
#[tokio::test]
async fn class_04_other_algorithms() {
    let case = Case::new();
    for alg in [
        "HS256", "HS384", "HS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "RS384",
        "RS512", "EdDSA", "rs256", "RS256 ", "",
    ] {
        let header = json!({ "alg": alg, "typ": "at+jwt", "kid": case.issuer.kid() });
        for signature_len in [32, 64, 256, 512] {
            let zeros = b64_encode(vec![0u8; signature_len]);
            case.assert_refused(
                &unsigned(&header, &case.valid_claims(), &zeros),
                AlgorithmNotAllowed,
            )
            .await;
        }
        case.assert_refused(
            &case.sign(&header, &case.valid_claims()),
            AlgorithmNotAllowed,
        )
        .await;
    }
    let no_alg = json!({ "typ": "at+jwt", "kid": case.issuer.kid() });
    case.assert_refused(&case.sign(&no_alg, &case.valid_claims()), Malformed)
        .await;
    let zero_rs256 = unsigned(
        &case.header(),
        &case.valid_claims(),
        &b64_encode([0u8; 256]),
    );
    case.assert_refused(&zero_rs256, BadSignature).await;
}

/// Class 5: key material in the header is ignored for key selection.
#[tokio::test]
async fn class_05_embedded_keys_are_ignored() {
    let case = Case::new();
    let attacker = TestIssuer::new();
    let attacker_jwk = serde_json::to_value(attacker.signer().public_jwk()).unwrap();
    for (member, value) in [
        ("jwk", attacker_jwk.clone()),
        ("jku", json!("https://attacker.example/jwks.json")),
        ("x5u", json!("https://attacker.example/cert.pem")),
        (
            "x5c",
            json!(["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]),
        ),
    ] {
        // Signed by the attacker, naming the issuer's kid: the issuer's key does not verify it.
        let mut header = case.header();
        header[member] = value.clone();
        let token = attacker.forge(&header.to_string(), &case.valid_claims().to_string());
        case.assert_refused(&token, BadSignature).await;
        // Naming the attacker's own kid: no such key in the trusted set.
        header["kid"] = json!(attacker.kid());
        let token = attacker.forge(&header.to_string(), &case.valid_claims().to_string());
        case.assert_refused(&token, UnknownKey).await;
        // Signed by the issuer with the member present: accepted, the member has no effect.
        let mut header = case.header();
        header[member] = value;
        let token = case.sign(&header, &case.valid_claims());
        assert!(case.verifier.verify(&token).await.is_ok(), "{member}");
    }
}

/// Class 6: hostile `kid`s are refused without reaching a key lookup.
#[tokio::test]
async fn class_06_hostile_kids() {
    let case = Case::new();
    let long = "k".repeat(10 * 1024);
    for kid in [
        json!("../../../../etc/passwd"),
        json!("' OR '1'='1"),
        json!("$(reboot); `id`"),
        json!("a\u{0}b"),
        json!("a\r\nX-Injected: 1"),
        json!(long),
        json!(""),
    ] {
        let mut header = case.header();
        header["kid"] = kid.clone();
        let reason = case
            .refused(&case.sign(&header, &case.valid_claims()))
            .await;
        assert!(
            matches!(reason, UnknownKey | MissingKid | TooLarge),
            "{kid:.40}: {reason:?}"
        );
    }
    for kid in [json!(7), json!({"a": 1}), json!(["x"]), json!(null)] {
        let mut header = case.header();
        header["kid"] = kid.clone();
        let reason = case
            .refused(&case.sign(&header, &case.valid_claims()))
            .await;
        assert!(
            matches!(reason, Malformed | MissingKid),
            "{kid}: {reason:?}"
        );
    }
}

/// Class 8: `exp`, `nbf`, `iat` and lifetime.
#[tokio::test]
async fn class_08_time_claims() {
    let case = Case::new();
    let now = shared::unix_now();
    let with = |name: &str, value: Value| {
        let mut claims = case.valid_claims();
        claims["iat"] = json!(now - 600);
        claims["nbf"] = json!(now - 600);
        claims[name] = value;
        case.sign(&case.header(), &claims)
    };
    case.assert_refused(&with("exp", json!(now - 31)), Expired)
        .await;
    case.assert_refused(&with("exp", json!(now - 3600)), Expired)
        .await;
    assert!(
        case.verifier
            .verify(&with("exp", json!(now - 5)))
            .await
            .is_ok(),
        "within leeway"
    );
    for bad in [json!("9999999999"), json!(null), json!(true), json!(1.5)] {
        case.assert_refused(&with("exp", bad), InvalidClaims).await;
    }
    let overflow = case.issuer.forge(
        &case.header().to_string(),
        &case
            .valid_claims()
            .to_string()
            .replacen("\"exp\":", "\"exp\":1e400,\"x\":", 1),
    );
    case.assert_refused(&overflow, InvalidClaims).await;
    let mut no_exp = case.valid_claims();
    no_exp.as_object_mut().unwrap().remove("exp");
    case.assert_refused(&case.sign(&case.header(), &no_exp), InvalidClaims)
        .await;
    case.assert_refused(&with("nbf", json!(now + 120)), NotYetValid)
        .await;
    case.assert_refused(&with("iat", json!(now + 120)), IssuedInFuture)
        .await;
    let mut long_lived = case.valid_claims();
    long_lived["iat"] = json!(now);
    long_lived["exp"] = json!(now + 3 * 3600);
    case.assert_refused(&case.sign(&case.header(), &long_lived), LifetimeTooLong)
        .await;
}

/// Class 9: `iss` and `aud`.
#[tokio::test]
async fn class_09_issuer_and_audience() {
    let case = Case::new();
    let with = |name: &str, value: Value| {
        let mut claims = case.valid_claims();
        claims[name] = value;
        case.sign(&case.header(), &claims)
    };
    let iss = TestIssuer::ISSUER;
    for bad in [
        format!("{iss}/"),
        format!("{iss}.evil"),
        iss[..iss.len() - 1].to_owned(),
        iss.to_uppercase(),
    ] {
        case.assert_refused(&with("iss", json!(bad)), WrongIssuer)
            .await;
    }
    case.assert_refused(&with("iss", json!([iss])), InvalidClaims)
        .await;
    for bad in [
        json!("payments"),
        json!([]),
        json!(["payments"]),
        json!("orders "),
    ] {
        case.assert_refused(&with("aud", bad), WrongAudience).await;
    }
    let mut no_aud = case.valid_claims();
    no_aud.as_object_mut().unwrap().remove("aud");
    case.assert_refused(&case.sign(&case.header(), &no_aud), InvalidClaims)
        .await;
    assert!(
        case.verifier
            .verify(&with("aud", json!(["payments", "orders"])))
            .await
            .is_ok()
    );
}

/// Class 10: `typ` other than `at+jwt`.
#[tokio::test]
async fn class_10_token_type() {
    let case = Case::new();
    for typ in [
        json!("JWT"),
        json!("id_token+jwt"),
        json!("refresh+jwt"),
        json!("at+jwt2"),
        json!(""),
        json!(null),
    ] {
        let mut header = case.header();
        header["typ"] = typ.clone();
        case.assert_refused(&case.sign(&header, &case.valid_claims()), WrongType)
            .await;
    }
    let mut header = case.header();
    header.as_object_mut().unwrap().remove("typ");
    case.assert_refused(&case.sign(&header, &case.valid_claims()), WrongType)
        .await;
    for typ in ["AT+JWT", "application/at+jwt"] {
        let mut header = case.header();
        header["typ"] = json!(typ);
        assert!(
            case.verifier
                .verify(&case.sign(&header, &case.valid_claims()))
                .await
                .is_ok(),
            "{typ}"
        );
    }
}

/// Class 11: any `crit`.
#[tokio::test]
async fn class_11_crit() {
    let case = Case::new();
    for crit in [
        json!(["exp"]),
        json!(["b64"]),
        json!([]),
        json!("x"),
        json!(null),
    ] {
        let mut header = case.header();
        header["crit"] = crit;
        header["b64"] = json!(false);
        case.assert_refused(&case.sign(&header, &case.valid_claims()), CriticalHeader)
            .await;
    }
}

/// Class 12: duplicate members, payloads that are not objects.
#[tokio::test]
async fn class_12_duplicates_and_non_objects() {
    let case = Case::new();
    let header = case.header().to_string();
    let claims = case.valid_claims().to_string();
    let dup_header = header.replacen('{', r#"{"alg":"none","#, 1);
    case.assert_refused(&case.issuer.forge(&dup_header, &claims), Malformed)
        .await;
    let dup_sub = claims.replacen('{', r#"{"sub":"admin","#, 1);
    case.assert_refused(&case.issuer.forge(&header, &dup_sub), InvalidClaims)
        .await;
    let dup_unknown = claims.replacen('{', r#"{"x":1,"x":2,"#, 1);
    case.assert_refused(&case.issuer.forge(&header, &dup_unknown), InvalidClaims)
        .await;
    for payload in ["[]", "\"x\"", "1", "null", "{", "{}}", "\u{feff}{}"] {
        case.assert_refused(&case.issuer.forge(&header, payload), InvalidClaims)
            .await;
    }
    case.assert_refused(&case.issuer.forge(&header, ""), Malformed)
        .await;
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_claims = claims.replacen('{', &format!(r#"{{"deep":{deep},"#), 1);
    let token = case.issuer.forge(&header, &deep_claims);
    assert!(case.verifier.verify(&token).await.is_err());
}

/// Class 13: non-canonical base64url in any segment.
#[tokio::test]
async fn class_13_non_canonical_base64url() {
    let case = Case::new();
    let token = case.sign(&case.header(), &case.valid_claims());
    let parts: Vec<&str> = token.split('.').collect();
    for i in 0..3 {
        for mutate in [
            |s: &str| format!("{s}="),
            |s: &str| format!("{s}=="),
            |s: &str| format!(" {s}"),
            |s: &str| format!("{s}\n"),
            |s: &str| format!("{}\t{}", &s[..4], &s[4..]),
            |s: &str| s.replace('-', "+").replace('_', "/"),
        ] {
            let mut mutated: Vec<String> = parts.iter().map(|p| (*p).to_owned()).collect();
            mutated[i] = mutate(parts[i]);
            if mutated[i] == parts[i] {
                continue;
            }
            assert!(
                case.verifier.verify(&mutated.join(".")).await.is_err(),
                "segment {i}"
            );
        }
    }
    // Non-zero trailing bits: the signature (256 bytes) ends with two padding bits in base64url.
    let sig = parts[2];
    let last = sig.chars().last().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let index = alphabet.find(last).unwrap();
    let with_bit = alphabet.chars().nth(index | 1).unwrap();
    if with_bit != last {
        let token = format!(
            "{}.{}.{}{with_bit}",
            parts[0],
            parts[1],
            &sig[..sig.len() - 1]
        );
        case.assert_refused(&token, Malformed).await;
    }
}

/// Class 14 at the library level: huge tokens are refused before decoding.
#[tokio::test]
async fn class_14_oversized() {
    let case = Case::new();
    case.assert_refused(&".".repeat(100_000), TooLarge).await;
    case.assert_refused(&"a".repeat(64 * 1024), TooLarge).await;
}
