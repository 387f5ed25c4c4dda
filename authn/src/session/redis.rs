//! `stateful` lookups straight from the shared Redis session store, and the Redis client every
//! service of the platform connects with ([`client`]: plain or TLS, with an optional CA file).

use std::path::Path;
use std::time::Duration;

use redis::{ErrorKind, RedisError};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

use super::{
    BoxFuture, LookupError, SessionLookup, SessionStatus, redis_session_key, redis_user_changed_key,
};

/// A Redis client for `url`. `redis://` connects in the clear; `rediss://` over TLS (rustls on
/// aws-lc-rs), checking the server's certificate and its name against the URL's host.
///
/// The certificate is checked against the public roots (webpki-roots), or, with `ca_file` (a
/// PEM file of one or more CA certificates, `REDIS_CA_FILE`), against those CAs only: the file
/// replaces the public roots, so a private CA is trusted for Redis and nothing else is. A
/// `ca_file` with a `redis://` URL is refused rather than ignored (the operator meant TLS), as is
/// the `#insecure` fragment (no build of the platform can skip the certificate check).
pub fn client(url: &str, ca_file: Option<&Path>) -> Result<redis::Client, RedisError> {
    // The TLS configuration is built by rustls from the process's default provider.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let Some(ca_file) = ca_file else {
        return redis::Client::open(url);
    };
    let client = redis::Client::open(url)?;
    if !matches!(
        client.get_connection_info().addr(),
        redis::ConnectionAddr::TcpTls { .. }
    ) {
        return Err(config_error(
            "a Redis CA file is set but the Redis URL does not use TLS (rediss://)",
            ca_file.display().to_string(),
        ));
    }
    let pem = std::fs::read(ca_file).map_err(|e| {
        config_error(
            "cannot read the Redis CA file",
            format!("{}: {e}", ca_file.display()),
        )
    })?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            config_error(
                "the Redis CA file is not PEM",
                format!("{}: {e}", ca_file.display()),
            )
        })?;
    if certificates.is_empty() {
        return Err(config_error(
            "the Redis CA file holds no certificate",
            ca_file.display().to_string(),
        ));
    }
    redis::Client::build_with_tls(
        url,
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem),
        },
    )
}

fn config_error(what: &'static str, detail: String) -> RedisError {
    RedisError::from((ErrorKind::InvalidClientConfig, what, detail))
}

/// Reads the shared Redis session store directly: a session is active while its key exists.
#[derive(Debug)]
pub struct RedisSessionLookup {
    client: redis::Client,
    /// Connected on first use and reconnected by the manager; a Redis outage at start-up fails
    /// requests closed instead of keeping the service from starting.
    connection: tokio::sync::OnceCell<redis::aio::ConnectionManager>,
    timeout: Duration,
}

impl RedisSessionLookup {
    /// A lookup in the Redis at `redis_url`, over TLS for `rediss://` (see [`client`] for
    /// `ca_file`). Connects on first use.
    pub fn new(
        redis_url: &str,
        ca_file: Option<&Path>,
        timeout: Duration,
    ) -> Result<Self, LookupError> {
        Ok(Self {
            client: client(redis_url, ca_file).map_err(|e| LookupError(e.to_string()))?,
            connection: tokio::sync::OnceCell::new(),
            timeout,
        })
    }

    async fn connection(&self) -> Result<redis::aio::ConnectionManager, LookupError> {
        self.connection
            .get_or_try_init(|| async {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(1);
                redis::aio::ConnectionManager::new_with_config(self.client.clone(), config).await
            })
            .await
            .cloned()
            .map_err(|e| LookupError(e.to_string()))
    }
}

impl SessionLookup for RedisSessionLookup {
    fn is_active<'a>(&'a self, sid: &'a str) -> BoxFuture<'a, Result<bool, LookupError>> {
        Box::pin(async move {
            let mut connection = self.connection().await?;
            redis::cmd("EXISTS")
                .arg(redis_session_key(sid))
                .query_async::<bool>(&mut connection)
                .await
                .map_err(|e| LookupError(e.to_string()))
        })
    }

    /// `EXISTS` of the session and `GET` of its user's last change, in one round trip.
    fn status<'a>(
        &'a self,
        sid: &'a str,
        sub: &'a str,
    ) -> BoxFuture<'a, Result<SessionStatus, LookupError>> {
        Box::pin(async move {
            let mut connection = self.connection().await?;
            let (active, user_changed_at): (bool, Option<i64>) = redis::pipe()
                .cmd("EXISTS")
                .arg(redis_session_key(sid))
                .cmd("GET")
                .arg(redis_user_changed_key(sub))
                .query_async(&mut connection)
                .await
                .map_err(|e| LookupError(e.to_string()))?;
            Ok(SessionStatus {
                active,
                user_changed_at,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_needs_a_tls_url_and_a_certificate() {
        let dir = std::env::temp_dir().join(format!("authn-redis-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").expect("write");

        let plain = client("redis://127.0.0.1:6379", Some(&empty)).expect_err("plain URL");
        assert!(plain.to_string().contains("rediss://"), "{plain}");
        let none = client("rediss://127.0.0.1:6379", Some(&empty)).expect_err("no certificate");
        assert!(none.to_string().contains("no certificate"), "{none}");
        let missing = client("rediss://127.0.0.1:6379", Some(&dir.join("absent.pem")))
            .expect_err("missing file");
        assert!(missing.to_string().contains("cannot read"), "{missing}");
        assert!(client("rediss://127.0.0.1:6379", None).is_ok());
        assert!(client("redis://127.0.0.1:6379", None).is_ok());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
