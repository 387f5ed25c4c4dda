//! The HTTP client this crate fetches with (JWKS, the verifier's own service token).

/// A `reqwest` client builder whose TLS uses aws-lc-rs, the crypto library the rest of the
/// crate uses.
pub(crate) fn http_client_builder() -> reqwest::ClientBuilder {
    // Installing fails only when a provider is already installed, which is as good.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder()
}
