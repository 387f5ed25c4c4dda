//! The suites that span services live in `tests/` of this crate, so that no service
//! dev-depends on another. Each starts the real services in process on port 0 with `testkit`
//! and talks to them over real HTTP and gRPC:
//!
//! - `e2e`: a user and a service client through the whole system.
//! - `modes`: logout, logout-all, session deletion and user disabling as each verifier mode
//!   sees them, and the issuer or the session store going away.
//! - `keys`: signing-key rotation under traffic and emergency revocation, at both verifiers.
//! - `secrets`: no secret in any log line, metric or response body.
//! - `attacks`, `orders_rest`, `proxy`, `observability`, `ops`: the gateway in front of the real
//!   orders-service (attack catalogue at the edge, the REST API, forwarding to the issuer,
//!   trace context and metrics, health and readiness).
