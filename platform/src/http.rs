//! The outbound HTTP client every service starts from.

/// A `reqwest` client builder whose TLS uses aws-lc-rs, the crypto library the rest of the
/// platform uses. Every outbound HTTP client (the gateway's proxy, benchmarks) starts here.
pub fn client_builder() -> reqwest::ClientBuilder {
    // Installing fails only when a provider is already installed, which is as good.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder()
}
