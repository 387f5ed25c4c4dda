//! Property tests (a bounded fuzzer) over the token parsing and verification path and over the
//! JWKS parser: arbitrary input never panics, and no mutation of a signed token is accepted.
//!
//! CI runs the default number of cases (`PROPTEST_CASES` raises it for a longer local run).
//! Failing inputs are kept by proptest under `tests/fuzz.proptest-regressions` and replayed on
//! every run: commit that file when it appears.

use std::sync::LazyLock;

use authn::jwk::{JwkSet, KeySet};
use authn::jws::UnverifiedJws;
use proptest::prelude::*;
use testkit::TestIssuer;

static ISSUER: LazyLock<TestIssuer> = LazyLock::new(TestIssuer::new);
static TOKEN: LazyLock<String> =
    LazyLock::new(|| ISSUER.user_token("alice", "orders:read", &["user"]));

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

/// Characters that tokens are made of, plus the ones attackers add.
fn token_text() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[A-Za-z0-9_\\-.=+/ \\t{}\"]{0,600}").expect("regex")
}

proptest! {
    #[test]
    fn parsing_never_panics(input in token_text()) {
        let _ = UnverifiedJws::parse(&input);
    }

    #[test]
    fn arbitrary_tokens_are_refused(input in token_text()) {
        let verifier = ISSUER.verifier();
        let result = runtime().block_on(verifier.verify(&input));
        prop_assert!(result.is_err());
    }

    #[test]
    fn no_mutation_of_a_signed_token_is_accepted(
        position in 0usize..2000,
        replacement in proptest::char::range('-', 'z'),
        delete in any::<bool>(),
    ) {
        let token = TOKEN.as_str();
        let position = position % token.len();
        let mut mutated: String = token[..position].to_owned();
        if !delete {
            mutated.push(replacement);
        }
        mutated.push_str(&token[position + 1..]);
        prop_assume!(mutated != token);
        let verifier = ISSUER.verifier();
        prop_assert!(runtime().block_on(verifier.verify(&mutated)).is_err(), "{mutated}");
    }

    #[test]
    fn jwks_parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(document) = serde_json::from_slice::<JwkSet>(&bytes) {
            let _ = KeySet::from_jwks(&document);
        }
    }

    #[test]
    fn odd_jwks_members_never_panic(
        kty in "(RSA|EC|oct|rsa|)",
        n in "[A-Za-z0-9_\\-=]{0,400}",
        e in "(AQAB|Aw|AQ|AAEAAQ|)",
        alg in "(RS256|HS256|none|)",
        use_ in "(sig|enc|)",
    ) {
        let document = JwkSet {
            keys: vec![serde_json::json!({"kty": kty, "n": n, "e": e, "alg": alg, "use": use_, "kid": "k"})],
        };
        let (keys, dropped) = KeySet::from_jwks(&document);
        prop_assert_eq!(keys.len() + dropped.len(), 1);
    }
}
