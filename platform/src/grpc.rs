//! Outbound gRPC helpers every service uses: trace context on outgoing calls, and a channel
//! balanced across every address a host resolves to.

use tonic::metadata::MetadataValue;

use crate::trace::TraceContext;

/// Attaches the caller's request id and `traceparent` (W3C Trace Context) to an outgoing call,
/// so the callee continues the same trace ([`crate::trace`]).
pub fn with_trace<T>(request: &mut tonic::Request<T>, context: &TraceContext) {
    let metadata = request.metadata_mut();
    if let Ok(id) = MetadataValue::try_from(context.request_id().as_str()) {
        metadata.insert("x-request-id", id);
    }
    if let Ok(parent) = MetadataValue::try_from(context.traceparent().to_string()) {
        metadata.insert("traceparent", parent);
    }
}

/// A gRPC channel that balances calls across every address `url`'s host resolves to, and follows
/// changes: the host is re-resolved every `refresh`.
///
/// One HTTP/2 connection carries every call to one server, so behind a Kubernetes Service a
/// plain channel pins a client to one pod. Pointed at a headless Service (whose DNS name
/// resolves to every ready pod), this spreads calls across all of them. An IP-literal host gives
/// a single endpoint. When a resolution fails, the last known addresses stay in use. tonic's
/// balancer takes endpoint changes but does no resolution, hence the small resolver task here;
/// it ends when the channel is dropped.
pub fn balanced_channel(
    url: &str,
    refresh: std::time::Duration,
    configure: impl Fn(tonic::transport::Endpoint) -> tonic::transport::Endpoint + Send + 'static,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    use std::collections::BTreeSet;
    use std::net::SocketAddr;

    use tonic::transport::channel::Change;
    use tonic::transport::{Channel, Endpoint};

    let template = Endpoint::from_shared(url.to_owned())?;
    let uri = template.uri().clone();
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_owned();
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(configure(template).connect_lazy());
    }
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    let scheme = uri.scheme_str().unwrap_or("http").to_owned();
    let (channel, changes) = Channel::balance_channel::<SocketAddr>(64);
    tokio::spawn(async move {
        let mut current: BTreeSet<SocketAddr> = BTreeSet::new();
        loop {
            match tokio::net::lookup_host((host.as_str(), port)).await {
                Ok(addresses) => {
                    let resolved: BTreeSet<SocketAddr> = addresses.collect();
                    for gone in current.difference(&resolved) {
                        if changes.send(Change::Remove(*gone)).await.is_err() {
                            return;
                        }
                    }
                    for new in resolved.difference(&current) {
                        let Ok(endpoint) = Endpoint::from_shared(format!("{scheme}://{new}"))
                        else {
                            continue;
                        };
                        if changes
                            .send(Change::Insert(*new, configure(endpoint)))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    if resolved != current {
                        tracing::debug!(%host, addresses = resolved.len(), "gRPC endpoints updated");
                    }
                    current = resolved;
                }
                Err(error) => {
                    tracing::warn!(%host, %error, "cannot resolve gRPC host; keeping the last known endpoints");
                }
            }
            tokio::time::sleep(refresh).await;
            if changes.is_closed() {
                return;
            }
        }
    });
    Ok(channel)
}
