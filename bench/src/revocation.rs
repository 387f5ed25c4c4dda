//! The revocation delay: log in, check that the token works at both verifiers, log out, then
//! poll both verifiers as fast as they answer until each refuses the token. The delay of a
//! verifier is the time from the logout response to the arrival of its first refusal (so it
//! includes one request's latency: an upper bound).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use http::{HeaderValue, StatusCode};
use proto::orders::v1::order_service_client::OrderServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

use crate::client::{
    Api, HttpConnection, bearer_header, bearer_metadata, get, get_order, grpc_channel,
};
use crate::progress::Progress;
use crate::stack::{Stack, USERNAME};
use crate::stats::Latencies;

/// Misses (at both verifiers together) after which a mode stops measuring revocations.
const MAX_MISSES: u32 = 3;

/// What one verifier did across the revocations.
#[derive(Debug, Clone, Default)]
pub struct VerifierDelays {
    /// Time from the logout response to the first refusal, of every refused revocation.
    pub delays: Latencies,
    pub refused: u32,
    /// Revocations still accepted at the deadline.
    pub missed: u32,
    /// Answers that were neither success nor refusal (e.g. 503), by kind.
    pub unexpected: BTreeMap<String, u64>,
}

impl VerifierDelays {
    fn add(&mut self, poll: Poll) {
        match poll.refused_after {
            Some(delay) => {
                self.delays.record(delay);
                self.refused += 1;
            }
            None => self.missed += 1,
        }
        for (kind, n) in poll.unexpected {
            *self.unexpected.entry(kind).or_default() += n;
        }
    }
}

/// Why the scenario ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Every revocation was attempted.
    Completed,
    /// A verifier missed the deadline without having refused any revoked token: it does not
    /// revoke (`stateless`), so waiting for the rest would only cost time.
    NeverRefused,
    /// `MAX_MISSES` deadlines were missed.
    TooManyMisses,
    /// `POST /v1/logout` did not succeed (an issuer without the endpoint answers 404).
    LogoutFailed(String),
}

/// What the scenario measured.
#[derive(Debug, Clone)]
pub struct RevocationResult {
    pub attempted: u32,
    pub gateway: VerifierDelays,
    pub orders: VerifierDelays,
    pub ending: Ending,
}

impl RevocationResult {
    fn new() -> Self {
        Self {
            attempted: 0,
            gateway: VerifierDelays::default(),
            orders: VerifierDelays::default(),
            ending: Ending::Completed,
        }
    }

    /// Whether to stop after the revocations so far.
    fn stop_reason(&self) -> Option<Ending> {
        let never = |v: &VerifierDelays| v.missed > 0 && v.refused == 0;
        if never(&self.gateway) || never(&self.orders) {
            Some(Ending::NeverRefused)
        } else if self.gateway.missed + self.orders.missed >= MAX_MISSES {
            Some(Ending::TooManyMisses)
        } else {
            None
        }
    }
}

/// The outcome of polling one verifier after one logout.
#[derive(Debug, Default)]
struct Poll {
    refused_after: Option<Duration>,
    unexpected: BTreeMap<String, u64>,
}

/// Runs up to `count` revocations against the stack's gateway and orders-service.
pub async fn run(
    stack: &Stack,
    order_id: &str,
    count: u32,
    deadline: Duration,
    progress: &Progress,
    label: &str,
) -> anyhow::Result<RevocationResult> {
    let mut api = Api::new(stack.addrs.gateway);
    let mut poll_http = HttpConnection::new(stack.addrs.gateway);
    let mut orders = OrderServiceClient::new(grpc_channel(stack.addrs.orders_grpc).await?);
    let path = format!("/v1/orders/{order_id}");
    let done = Arc::new(AtomicU64::new(0));
    progress.track(label, Arc::clone(&done), "revocations");
    let mut result = RevocationResult::new();
    for _ in 0..count {
        let token = api
            .login(USERNAME, &stack.password)
            .await
            .context("logging in")?;
        let header = bearer_header(&token)?;
        let metadata = bearer_metadata(&token)?;
        confirm(
            &mut poll_http,
            &path,
            &header,
            &mut orders,
            order_id,
            &metadata,
        )
        .await?;

        let status = api.logout(&token).await.context("logging out")?;
        if !status.is_success() {
            result.ending = Ending::LogoutFailed(format!("POST /v1/logout answered {status}"));
            break;
        }
        let logged_out = Instant::now();
        let until = logged_out + deadline;
        let (at_gateway, at_orders) = tokio::join!(
            poll_gateway(&mut poll_http, &path, &header, logged_out, until),
            poll_orders(&mut orders, order_id, &metadata, logged_out, until),
        );
        result.attempted += 1;
        result.gateway.add(at_gateway);
        result.orders.add(at_orders);
        done.fetch_add(1, Ordering::Relaxed);
        if let Some(ending) = result.stop_reason() {
            result.ending = ending;
            break;
        }
    }
    progress.done();
    Ok(result)
}

/// A fresh token must work at both verifiers before its logout means anything.
async fn confirm(
    http: &mut HttpConnection,
    path: &str,
    header: &HeaderValue,
    orders: &mut OrderServiceClient<Channel>,
    order_id: &str,
    metadata: &MetadataValue<Ascii>,
) -> anyhow::Result<()> {
    let response = http.send(get(path, Some(header))).await?;
    anyhow::ensure!(
        response.status == StatusCode::OK,
        "a fresh token was not accepted by the gateway: {}",
        response.status
    );
    get_order(orders, order_id, metadata)
        .await
        .context("a fresh token was not accepted by orders-service")?;
    Ok(())
}

async fn poll_gateway(
    http: &mut HttpConnection,
    path: &str,
    header: &HeaderValue,
    logged_out: Instant,
    until: Instant,
) -> Poll {
    let mut poll = Poll::default();
    while Instant::now() < until {
        match http.send(get(path, Some(header))).await {
            Ok(response) if response.status == StatusCode::UNAUTHORIZED => {
                poll.refused_after = Some(logged_out.elapsed());
                break;
            }
            Ok(response) if response.status == StatusCode::OK => {}
            Ok(response) => {
                *poll
                    .unexpected
                    .entry(format!("HTTP {}", response.status.as_u16()))
                    .or_default() += 1;
            }
            Err(_) => {
                *poll.unexpected.entry("transport error".into()).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    poll
}

async fn poll_orders(
    orders: &mut OrderServiceClient<Channel>,
    order_id: &str,
    metadata: &MetadataValue<Ascii>,
    logged_out: Instant,
    until: Instant,
) -> Poll {
    let mut poll = Poll::default();
    while Instant::now() < until {
        match get_order(orders, order_id, metadata).await {
            Err(status) if status.code() == tonic::Code::Unauthenticated => {
                poll.refused_after = Some(logged_out.elapsed());
                break;
            }
            Ok(()) => {}
            Err(status) => {
                *poll
                    .unexpected
                    .entry(format!("gRPC {:?}", status.code()))
                    .or_default() += 1;
                if status.code() == tonic::Code::Unavailable {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
    poll
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(ms: u64) -> Poll {
        Poll {
            refused_after: Some(Duration::from_millis(ms)),
            unexpected: BTreeMap::new(),
        }
    }

    #[test]
    fn a_verifier_that_never_refuses_stops_the_scenario_at_once() {
        let mut result = RevocationResult::new();
        result.gateway.add(Poll::default());
        result.orders.add(Poll::default());
        assert_eq!(result.stop_reason(), Some(Ending::NeverRefused));
    }

    #[test]
    fn occasional_misses_are_counted_until_too_many() {
        let mut result = RevocationResult::new();
        result.gateway.add(refused(1));
        result.orders.add(refused(2));
        assert_eq!(result.stop_reason(), None);
        result.gateway.add(Poll::default());
        result.orders.add(refused(3));
        assert_eq!(result.stop_reason(), None);
        result.gateway.add(Poll::default());
        result.orders.add(Poll::default());
        assert_eq!(result.stop_reason(), Some(Ending::TooManyMisses));
        assert_eq!((result.gateway.refused, result.gateway.missed), (1, 2));
        assert_eq!(result.orders.delays.count(), 2);
    }
}
