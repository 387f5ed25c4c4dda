//! Algorithms pinned per key (RS256, ES256, EdDSA side by side): a token is verified only with
//! the algorithm of the key its `kid` names, only if that algorithm is allowed, and the key
//! policy of each key type. docs/SECURITY.md classes 3, 4, 20 and 36-38.

use authn::jwk::{Algorithm, AllowedAlgorithms, Jwk, JwkSet, KeyError, KeySet, VerifyingKey};
use authn::jws::b64_encode;
use authn::verifier::{Keys, Verifier};
use authn::{AuthError, RejectReason};
use serde_json::json;
use testkit::TestIssuer;

/// Three issuers sharing one issuer name and audience, one per algorithm, and a verifier
/// trusting all three keys (what a JWKS in the middle of a rotation between algorithms holds).
struct Issuers {
    rsa: TestIssuer,
    ec: TestIssuer,
    ed: TestIssuer,
}

impl Issuers {
    fn new() -> Self {
        Self {
            rsa: TestIssuer::with_alg(Algorithm::Rs256),
            ec: TestIssuer::with_alg(Algorithm::Es256),
            ed: TestIssuer::with_alg(Algorithm::EdDsa),
        }
    }

    fn keys(&self) -> KeySet {
        let jwks = JwkSet::from_keys([
            self.rsa.signer().public_jwk(),
            self.ec.signer().public_jwk(),
            self.ed.signer().public_jwk(),
        ]);
        let (keys, dropped) = KeySet::from_jwks(&jwks);
        assert!(dropped.is_empty(), "{dropped:?}");
        keys
    }

    fn verifier(&self, allowed: AllowedAlgorithms) -> Verifier {
        let mut policy = self.rsa.policy();
        policy.algorithms = allowed;
        Verifier::new(Keys::fixed(self.keys()), policy)
    }

    fn payload(&self) -> String {
        serde_json::to_string(&self.rsa.claims("alice", "orders:read", &[])).expect("claims")
    }
}

fn refused(result: Result<authn::Principal, AuthError>) -> RejectReason {
    match result {
        Err(AuthError::Unauthenticated(reason)) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn each_algorithm_verifies_with_its_own_key() {
    let issuers = Issuers::new();
    let verifier = issuers.verifier(AllowedAlgorithms::all());
    for issuer in [&issuers.rsa, &issuers.ec, &issuers.ed] {
        let token = issuer.user_token("alice", "orders:read", &[]);
        let principal = verifier.verify(&token).await.expect("accepted");
        assert_eq!(principal.sub(), "alice");
    }
}

#[tokio::test]
async fn a_token_naming_another_algorithm_than_its_key_is_refused() {
    let issuers = Issuers::new();
    let verifier = issuers.verifier(AllowedAlgorithms::all());
    let payload = issuers.payload();
    let header =
        |alg: &str, kid: &str| json!({"alg": alg, "typ": "at+jwt", "kid": kid}).to_string();
    let cases = [
        // An ES256 token (a real EC signature) naming the RSA key.
        issuers
            .ec
            .forge(&header("ES256", issuers.rsa.kid()), &payload),
        // An RS256 token (a real RSA signature) naming the EC key, then the Ed25519 key.
        issuers
            .rsa
            .forge(&header("RS256", issuers.ec.kid()), &payload),
        issuers
            .rsa
            .forge(&header("RS256", issuers.ed.kid()), &payload),
        // An EdDSA signature whose header says ES256 (same 64-byte length), with the Ed25519 kid.
        issuers
            .ed
            .forge(&header("ES256", issuers.ed.kid()), &payload),
        // An ES256 signature whose header says EdDSA, with the EC kid.
        issuers
            .ec
            .forge(&header("EdDSA", issuers.ec.kid()), &payload),
        // An EdDSA token naming the EC key (both 64-byte signatures).
        issuers
            .ed
            .forge(&header("EdDSA", issuers.ec.kid()), &payload),
    ];
    for token in cases {
        assert_eq!(
            refused(verifier.verify(&token).await),
            RejectReason::AlgorithmNotAllowed,
            "{token}"
        );
    }
}

#[tokio::test]
async fn alg_none_hmac_with_the_public_key_and_unknown_names_are_refused() {
    let issuers = Issuers::new();
    let verifier = issuers.verifier(AllowedAlgorithms::all());
    let payload = b64_encode(issuers.payload());
    for issuer in [&issuers.ec, &issuers.ed] {
        let kid = issuer.kid();
        let jwk_json = serde_json::to_string(issuer.signer().public_jwk()).expect("JWK");
        // `alg: none` in several casings, with and without a signature segment.
        for alg in ["none", "None", "NONE"] {
            let header = b64_encode(json!({"alg": alg, "typ": "at+jwt", "kid": kid}).to_string());
            for token in [
                format!("{header}.{payload}."),
                format!("{header}.{payload}.AAAA"),
            ] {
                assert!(verifier.verify(&token).await.is_err(), "{alg}");
            }
        }
        // HS256 keyed with the public key: the JWK JSON, and the raw x (and x||y).
        let jwk = issuer.signer().public_jwk();
        let mut raw = authn::jws::b64_decode(jwk.x.as_deref().expect("x")).expect("x");
        if let Some(y) = &jwk.y {
            raw.extend(authn::jws::b64_decode(y).expect("y"));
        }
        for secret in [jwk_json.as_bytes(), &raw[..]] {
            let header =
                b64_encode(json!({"alg": "HS256", "typ": "at+jwt", "kid": kid}).to_string());
            let input = format!("{header}.{payload}");
            let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
            let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
            let token = format!("{input}.{}", b64_encode(tag.as_ref()));
            assert_eq!(
                refused(verifier.verify(&token).await),
                RejectReason::AlgorithmNotAllowed
            );
        }
        // Names the platform does not implement, or not in their exact JOSE spelling.
        for alg in [
            "ES384", "ES512", "ES256K", "PS256", "Ed25519", "EDDSA", "es256", "eddsa",
        ] {
            let token = issuer.forge(
                &json!({"alg": alg, "typ": "at+jwt", "kid": kid}).to_string(),
                &issuers.payload(),
            );
            assert_eq!(
                refused(verifier.verify(&token).await),
                RejectReason::AlgorithmNotAllowed,
                "{alg}"
            );
        }
    }
}

#[tokio::test]
async fn only_the_allowed_algorithms_verify() {
    let issuers = Issuers::new();
    let rs256_only = issuers.verifier("RS256".parse().expect("list"));
    let no_rsa = issuers.verifier("ES256,EdDSA".parse().expect("list"));
    let rsa = issuers.rsa.user_token("alice", "orders:read", &[]);
    let ec = issuers.ec.user_token("alice", "orders:read", &[]);
    let ed = issuers.ed.user_token("alice", "orders:read", &[]);
    assert!(rs256_only.verify(&rsa).await.is_ok());
    for token in [&ec, &ed] {
        assert_eq!(
            refused(rs256_only.verify(token).await),
            RejectReason::AlgorithmNotAllowed
        );
    }
    assert_eq!(
        refused(no_rsa.verify(&rsa).await),
        RejectReason::AlgorithmNotAllowed
    );
    assert!(no_rsa.verify(&ec).await.is_ok());
    assert!(no_rsa.verify(&ed).await.is_ok());
}

#[test]
fn allowed_algorithms_parse_from_configuration() {
    let all: AllowedAlgorithms = "RS256,ES256,EdDSA".parse().expect("list");
    assert_eq!(all, AllowedAlgorithms::all());
    assert_eq!(all.to_string(), "RS256,ES256,EdDSA");
    let some: AllowedAlgorithms = " es256 , eddsa ".parse().expect("case-insensitive");
    assert!(!some.contains(Algorithm::Rs256));
    for bad in ["", ",", "HS256", "RS256,none", "ES384"] {
        assert!(bad.parse::<AllowedAlgorithms>().is_err(), "{bad:?}");
    }
}

#[tokio::test]
async fn an_es256_signature_in_der_form_is_refused() {
    let issuers = Issuers::new();
    let verifier = issuers.verifier(AllowedAlgorithms::all());
    let token = issuers.ec.user_token("alice", "orders:read", &[]);
    let (input, signature) = token.rsplit_once('.').expect("three segments");
    let raw = authn::jws::b64_decode(signature).expect("signature");
    assert_eq!(raw.len(), 64, "JOSE form: r || s");
    // The same (r, s) as an ASN.1 DER SEQUENCE of two INTEGERs.
    let integer = |bytes: &[u8]| {
        let mut value: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
        if value.first().is_some_and(|b| b & 0x80 != 0) {
            value.insert(0, 0);
        }
        let mut out = vec![0x02, u8::try_from(value.len()).expect("short")];
        out.extend(value);
        out
    };
    let mut body = integer(&raw[..32]);
    body.extend(integer(&raw[32..]));
    let mut der = vec![0x30, u8::try_from(body.len()).expect("short")];
    der.extend(body);
    let der_token = format!("{input}.{}", b64_encode(&der));
    assert_eq!(
        refused(verifier.verify(&der_token).await),
        RejectReason::BadSignature
    );
    assert!(verifier.verify(&token).await.is_ok());
}

fn ec_jwk() -> serde_json::Value {
    let signer = authn::sign::Signer::generate_for(Algorithm::Es256).expect("key");
    serde_json::to_value(signer.public_jwk()).expect("JWK")
}

fn ed_jwk() -> serde_json::Value {
    let signer = authn::sign::Signer::generate_for(Algorithm::EdDsa).expect("key");
    serde_json::to_value(signer.public_jwk()).expect("JWK")
}

fn ingest(value: serde_json::Value) -> Result<VerifyingKey, KeyError> {
    VerifyingKey::from_jwk(&serde_json::from_value::<Jwk>(value).map_err(|_| KeyError::Encoding)?)
}

#[test]
fn the_key_policy_of_ec_and_okp_keys() {
    assert_eq!(ingest(ec_jwk()).expect("EC").algorithm(), Algorithm::Es256);
    assert_eq!(ingest(ed_jwk()).expect("OKP").algorithm(), Algorithm::EdDsa);
    let with = |mut jwk: serde_json::Value, member: &str, value: serde_json::Value| {
        jwk[member] = value;
        ingest(jwk).map(|_| ())
    };
    // Curves: P-256 and Ed25519 only.
    for crv in ["P-384", "P-521", "secp256k1", "Ed25519", ""] {
        assert!(
            matches!(with(ec_jwk(), "crv", crv.into()), Err(KeyError::Curve(_))),
            "{crv}"
        );
    }
    for crv in ["Ed448", "X25519", "X448", "P-256"] {
        assert!(
            matches!(with(ed_jwk(), "crv", crv.into()), Err(KeyError::Curve(_))),
            "{crv}"
        );
    }
    // A point not on P-256 (y + 1), and coordinates of the wrong size.
    let mut off_curve = ec_jwk();
    let mut y = authn::jws::b64_decode(off_curve["y"].as_str().expect("y")).expect("y");
    y[31] ^= 1;
    off_curve["y"] = b64_encode(&y).into();
    assert_eq!(ingest(off_curve).map(|_| ()), Err(KeyError::NotOnCurve));
    assert_eq!(
        with(ec_jwk(), "x", b64_encode([1u8; 31]).into()),
        Err(KeyError::Encoding)
    );
    assert_eq!(
        with(ed_jwk(), "x", b64_encode([1u8; 33]).into()),
        Err(KeyError::Encoding)
    );
    // The origin (0, 0) is not on the curve either.
    let mut origin = ec_jwk();
    origin["x"] = b64_encode([0u8; 32]).into();
    origin["y"] = b64_encode([0u8; 32]).into();
    assert_eq!(ingest(origin).map(|_| ()), Err(KeyError::NotOnCurve));
    // Private members, whichever.
    for member in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
        assert_eq!(
            with(ec_jwk(), member, "AAAA".into()),
            Err(KeyError::PrivateMaterial),
            "{member}"
        );
        assert_eq!(
            with(ed_jwk(), member, "AAAA".into()),
            Err(KeyError::PrivateMaterial),
            "{member}"
        );
    }
    // An `alg` that is not the key type's.
    for (jwk, alg) in [
        (ec_jwk(), "RS256"),
        (ec_jwk(), "EdDSA"),
        (ed_jwk(), "ES256"),
        (ec_jwk(), "ES384"),
    ] {
        assert!(
            matches!(
                with(jwk, "alg", alg.into()),
                Err(KeyError::WrongAlgorithm(_))
            ),
            "{alg}"
        );
    }
    // `use: enc`, and key types the platform does not know.
    assert!(matches!(
        with(ec_jwk(), "use", "enc".into()),
        Err(KeyError::WrongUse(_))
    ));
    assert!(matches!(
        with(ed_jwk(), "kty", "oct".into()),
        Err(KeyError::UnsupportedKeyType(_))
    ));
    // An EC key carrying RSA members is ambiguous, not "an EC key".
    assert_eq!(with(ec_jwk(), "n", "AQAB".into()), Err(KeyError::Encoding));
}

#[test]
fn kids_are_rfc7638_thumbprints_of_the_required_members() {
    for alg in Algorithm::ALL {
        let signer = authn::sign::Signer::generate_for(alg).expect("key");
        let jwk = signer.public_jwk();
        let required = match alg {
            Algorithm::Rs256 => json!({"e": jwk.e, "kty": "RSA", "n": jwk.n}),
            Algorithm::Es256 => json!({"crv": "P-256", "kty": "EC", "x": jwk.x, "y": jwk.y}),
            Algorithm::EdDsa => json!({"crv": "Ed25519", "kty": "OKP", "x": jwk.x}),
        };
        let digest =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, required.to_string().as_bytes());
        assert_eq!(signer.kid(), b64_encode(digest.as_ref()), "{alg}");
        assert_eq!(jwk.alg.as_deref(), Some(alg.as_str()));
    }
}
