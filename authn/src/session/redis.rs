//! `stateful` lookups straight from the shared Redis session store.

use std::time::Duration;

use super::{BoxFuture, LookupError, SessionLookup, redis_session_key};

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
    pub fn new(redis_url: &str, timeout: Duration) -> Result<Self, LookupError> {
        Ok(Self {
            client: redis::Client::open(redis_url).map_err(|e| LookupError(e.to_string()))?,
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
}
