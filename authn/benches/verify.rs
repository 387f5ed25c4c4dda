//! The costs the verifier and the issuer pay per token, with the hardware's RSA operation as
//! the reference: `cargo bench -p authn --bench verify`.
//!
//! - `rsa2048_verify_raw` / `rsa2048_sign_raw`: one RSASSA-PKCS1-v1_5 SHA-256 operation with a
//!   pre-parsed key, the floor (compare with `openssl speed rsa2048`, see docs/BENCHMARKS.md);
//! - `verify_full`: the whole verification path without the cache (parse, header checks, key
//!   lookup, signature, claims);
//! - `verify_cache_hit`: a repeated token through the verified-token cache;
//! - `sign_access_token`: issuing (claims serialization and signature);
//! - `jwks_ingest`: parsing and validating a three-key JWKS.

use std::hint::black_box;
use std::task::{Context, Poll, Waker};

use authn::jwk::{JwkSet, KeySet};
use authn::jws::UnverifiedJws;
use criterion::{Criterion, criterion_group, criterion_main};
use testkit::TestIssuer;

/// Polls a future that completes without waiting (a fixed key set, no session check), with no
/// runtime overhead in the measurement.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the benchmarked path awaited"),
    }
}

fn benches(c: &mut Criterion) {
    let issuer = TestIssuer::new();
    let token = issuer.user_token("alice", "orders:read orders:write", &["user"]);
    let jws = UnverifiedJws::parse(&token).expect("token");
    let key = issuer.key_set().get(issuer.kid()).expect("key").clone();

    c.bench_function("rsa2048_verify_raw", |b| {
        b.iter(|| assert!(key.verify(black_box(jws.signing_input.as_bytes()), &jws.signature)));
    });
    c.bench_function("rsa2048_sign_raw", |b| {
        b.iter(|| {
            issuer
                .signer()
                .sign_bytes(black_box(jws.signing_input.as_bytes()))
        });
    });

    let uncached = issuer.verifier();
    c.bench_function("verify_full", |b| {
        b.iter(|| ready(uncached.verify(black_box(&token))).expect("valid"));
    });

    let cached = issuer.verifier().with_token_cache(10_000);
    ready(cached.verify(&token)).expect("valid");
    c.bench_function("verify_cache_hit", |b| {
        b.iter(|| ready(cached.verify(black_box(&token))).expect("valid"));
    });

    let claims = issuer.claims("alice", "orders:read orders:write", &["user"]);
    c.bench_function("sign_access_token", |b| {
        b.iter(|| issuer.signer().sign(black_box(&claims)).expect("signed"));
    });

    let three = [TestIssuer::new(), TestIssuer::new(), TestIssuer::new()];
    let document = serde_json::to_vec(&JwkSet::from_keys(
        three.iter().map(|i| i.signer().public_jwk()),
    ))
    .expect("json");
    c.bench_function("jwks_ingest", |b| {
        b.iter(|| {
            let set: JwkSet = serde_json::from_slice(black_box(&document)).expect("jwks");
            KeySet::from_jwks(&set).0.len()
        });
    });
}

criterion_group!(verify, benches);
criterion_main!(verify);
