//! Request count and latency of every server of the platform: one tower layer for HTTP (axum)
//! and one for gRPC (tonic), used by every service.
//!
//! Each service names its own series ([`MetricNames`]), so that a dashboard or an alert reads
//! one service's traffic without a `job` selector and the existing names (`gateway_requests_total`,
//! `orders_requests_total`) stay stable. The latencies are histograms with the buckets of
//! [`crate::telemetry::LATENCY_BUCKETS`], so they aggregate across pods
//! (`histogram_quantile(0.99, sum by (le) (rate(<name>_bucket[5m])))`).
//!
//! Labels are bounded whatever the clients send: the HTTP route is the matched route template
//! (`unmatched` otherwise), the method one of the standard ones (`other` otherwise); a gRPC
//! method is named only if the service declared it (`unknown` otherwise).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::MatchedPath;
use http::{HeaderMap, Method, Request, Response};
use pin_project_lite::pin_project;
use tonic::Code;
use tower::{BoxError, Layer, Service};

/// The names of one server's two series: a counter of requests and a latency histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricNames {
    /// `..._requests_total`: HTTP `{method, route, status}`, gRPC `{rpc, code}`.
    pub requests: &'static str,
    /// `..._request_duration_seconds`, same labels: HTTP until the response head is sent, gRPC
    /// until the response ends (its trailers), so a stream counts for its whole life.
    pub duration: &'static str,
}

impl MetricNames {
    pub const fn new(requests: &'static str, duration: &'static str) -> Self {
        Self { requests, duration }
    }
}

/// The status recorded for an HTTP request whose client went away before the answer (nginx's
/// "client closed request").
pub const CLIENT_CLOSED_REQUEST: &str = "499";

/// Counts and times every HTTP request by method, route template and status. Apply it with
/// `Router::layer` (so the matched route is known) outside any timeout layer (so that timeouts
/// are counted with their 504 rather than as abandoned).
#[derive(Debug, Clone, Copy)]
pub struct HttpMetricsLayer {
    names: MetricNames,
}

impl HttpMetricsLayer {
    pub fn new(names: MetricNames) -> Self {
        Self { names }
    }
}

impl<S> Layer<S> for HttpMetricsLayer {
    type Service = HttpMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpMetrics {
            inner,
            names: self.names,
        }
    }
}

/// The service made by [`HttpMetricsLayer`].
#[derive(Debug, Clone)]
pub struct HttpMetrics<S> {
    inner: S,
    names: MetricNames,
}

impl<S, B, ResB> Service<Request<B>> for HttpMetrics<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = HttpResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
        let exchange = HttpExchange {
            names: self.names,
            started: Instant::now(),
            method: method_label(request.method()),
            route,
            recorded: false,
        };
        HttpResponseFuture {
            inner: self.inner.call(request),
            exchange,
        }
    }
}

pin_project! {
    /// The response future of [`HttpMetrics`].
    pub struct HttpResponseFuture<F> {
        #[pin]
        inner: F,
        exchange: HttpExchange,
    }
}

impl<F, ResB, E> Future for HttpResponseFuture<F>
where
    F: Future<Output = Result<Response<ResB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        match &result {
            Ok(response) => this.exchange.record(response.status().as_str()),
            Err(_) => this.exchange.record("error"),
        }
        Poll::Ready(result)
    }
}

/// One HTTP request being measured; recorded once, as 499 if it is dropped unanswered.
struct HttpExchange {
    names: MetricNames,
    started: Instant,
    method: &'static str,
    route: String,
    recorded: bool,
}

impl HttpExchange {
    fn record(&mut self, status: &str) {
        if std::mem::replace(&mut self.recorded, true) {
            return;
        }
        let labels = [
            ("method", self.method.to_owned()),
            ("route", self.route.clone()),
            ("status", status.to_owned()),
        ];
        metrics::counter!(self.names.requests, &labels).increment(1);
        metrics::histogram!(self.names.duration, &labels)
            .record(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for HttpExchange {
    fn drop(&mut self) {
        self.record(CLIENT_CLOSED_REQUEST);
    }
}

/// Standard methods by name, anything else as `other` (the client chooses the method).
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Counts and times every gRPC call by method and status code, whoever answered it (the
/// service, an authentication layer, a concurrency limit), for
/// `tonic::transport::Server::builder().layer(..)`, outermost.
///
/// The code is read from the response headers (an immediate error) or the trailers. A call
/// dropped before it ended (tonic's deadline fires outside the layers, and a client can reset
/// its stream) is `DEADLINE_EXCEEDED` when its deadline (`grpc-timeout`, or the server's
/// [`GrpcMetricsLayer::timeout`]) had passed, `CANCELLED` otherwise.
#[derive(Debug, Clone, Copy)]
pub struct GrpcMetricsLayer {
    names: MetricNames,
    methods: &'static [&'static str],
    timeout: Option<Duration>,
}

impl GrpcMetricsLayer {
    /// `methods` are the full paths the server serves (`/orders.v1.OrderService/CreateOrder`);
    /// calls to any other path are labelled `rpc="unknown"`.
    pub fn new(names: MetricNames, methods: &'static [&'static str]) -> Self {
        Self {
            names,
            methods,
            timeout: None,
        }
    }

    /// The server's own deadline (`Server::builder().timeout(..)`).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics {
            inner,
            layer: *self,
        }
    }
}

/// The service made by [`GrpcMetricsLayer`].
#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    layer: GrpcMetricsLayer,
}

impl<S, B, ResB> Service<Request<B>> for GrpcMetrics<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    ResB: http_body::Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    type Response = Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = GrpcResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let path = request.uri().path();
        let rpc = self
            .layer
            .methods
            .iter()
            .find(|method| **method == path)
            .and_then(|method| method.rsplit('/').next())
            .unwrap_or("unknown");
        let deadline = match (grpc_timeout(request.headers()), self.layer.timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let call = GrpcCall {
            names: self.layer.names,
            started: Instant::now(),
            rpc,
            deadline,
            code: None,
            recorded: false,
        };
        GrpcResponseFuture {
            inner: self.inner.call(request),
            call: Some(call),
        }
    }
}

pin_project! {
    /// The response future of [`GrpcMetrics`].
    pub struct GrpcResponseFuture<F> {
        #[pin]
        inner: F,
        call: Option<GrpcCall>,
    }
}

impl<F, ResB, E> Future for GrpcResponseFuture<F>
where
    F: Future<Output = Result<Response<ResB>, E>>,
    ResB: http_body::Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    type Output = Result<Response<tonic::body::Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let Some(mut call) = this.call.take() else {
            // Polled again after completion: a contract violation by the caller.
            return Poll::Ready(result.map(|response| response.map(tonic::body::Body::new)));
        };
        Poll::Ready(match result {
            Ok(response) => {
                call.code = status_code(response.headers());
                Ok(response.map(|body| tonic::body::Body::new(GrpcBody { inner: body, call })))
            }
            Err(error) => {
                call.record(Code::Unknown);
                Err(error)
            }
        })
    }
}

pin_project! {
    /// A gRPC response body that records its call when the trailers pass (or it is dropped).
    struct GrpcBody<B> {
        #[pin]
        inner: B,
        call: GrpcCall,
    }
}

impl<B> http_body::Body for GrpcBody<B>
where
    B: http_body::Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = status_code(trailers).unwrap_or(Code::Unknown);
                    this.call.record(code);
                }
            }
            Some(Err(_)) => this.call.record(Code::Unknown),
            None => {
                let code = this.call.code.unwrap_or(Code::Unknown);
                this.call.record(code);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// One gRPC call being measured; recorded once.
struct GrpcCall {
    names: MetricNames,
    started: Instant,
    rpc: &'static str,
    deadline: Option<Duration>,
    /// From the response headers (a trailers-only answer), once they are known.
    code: Option<Code>,
    recorded: bool,
}

/// Timer slack when deciding whether a dropped call hit its deadline: tonic starts its deadline
/// timer a moment before this layer sees the call.
const DEADLINE_SLACK: Duration = Duration::from_millis(10);

impl GrpcCall {
    fn record(&mut self, code: Code) {
        if std::mem::replace(&mut self.recorded, true) {
            return;
        }
        let labels = [("rpc", self.rpc), ("code", code_name(code))];
        metrics::counter!(self.names.requests, &labels).increment(1);
        metrics::histogram!(self.names.duration, &labels)
            .record(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for GrpcCall {
    fn drop(&mut self) {
        let code = self.code.unwrap_or_else(|| match self.deadline {
            Some(deadline) if self.started.elapsed() + DEADLINE_SLACK >= deadline => {
                Code::DeadlineExceeded
            }
            _ => Code::Cancelled,
        });
        self.record(code);
    }
}

fn status_code(headers: &HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .map(|value| Code::from_bytes(value.as_bytes()))
}

/// The `grpc-timeout` of a call: 1 to 8 digits and a unit (`H M S m u n`).
fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.checked_mul(3600)?),
        "M" => Duration::from_secs(amount.checked_mul(60)?),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// The canonical name of a gRPC status code (a bounded set, safe as a metric label).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeout(value: &str) -> Option<Duration> {
        let mut headers = HeaderMap::new();
        headers.insert("grpc-timeout", value.parse().unwrap());
        grpc_timeout(&headers)
    }

    #[test]
    fn grpc_timeouts_parse_as_the_protocol_says() {
        assert_eq!(timeout("10S"), Some(Duration::from_secs(10)));
        assert_eq!(timeout("9999999m"), Some(Duration::from_millis(9_999_999)));
        assert_eq!(timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(timeout("5M"), Some(Duration::from_secs(300)));
        assert_eq!(timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(timeout("7n"), Some(Duration::from_nanos(7)));
        for bad in ["", "S", "123456789S", "10s", "-1S", "1.5S", "10"] {
            assert_eq!(timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn methods_are_bounded() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
    }
}

#[cfg(test)]
mod layer_tests {
    use std::convert::Infallible;

    use tower::ServiceExt as _;

    use super::*;

    fn rendered() -> String {
        let handle = crate::telemetry::prometheus();
        handle.run_upkeep();
        handle.render()
    }

    #[tokio::test]
    async fn an_abandoned_http_request_counts_as_499() {
        const NAMES: MetricNames = MetricNames::new(
            "test_abandoned_requests_total",
            "test_abandoned_request_duration_seconds",
        );
        crate::telemetry::prometheus();
        let service =
            HttpMetricsLayer::new(NAMES).layer(tower::service_fn(|_request: Request<()>| {
                std::future::pending::<Result<Response<()>, Infallible>>()
            }));
        let call = service.oneshot(Request::new(()));
        // The client goes away: the future is dropped unanswered.
        assert!(
            tokio::time::timeout(Duration::from_millis(10), call)
                .await
                .is_err()
        );
        let text = rendered();
        assert!(
            text.contains(
                r#"test_abandoned_requests_total{method="GET",route="unmatched",status="499"} 1"#
            ),
            "{text}"
        );
    }

    #[tokio::test]
    async fn grpc_codes_come_from_headers_or_the_deadline() {
        const NAMES: MetricNames = MetricNames::new(
            "test_grpc_requests_total",
            "test_grpc_request_duration_seconds",
        );
        const METHODS: &[&str] = &["/test.v1.Service/Refuse", "/test.v1.Service/Hang"];
        crate::telemetry::prometheus();
        let layer = GrpcMetricsLayer::new(NAMES, METHODS).timeout(Duration::from_millis(20));
        let service = layer.layer(tower::service_fn(|request: Request<()>| async move {
            if request.uri().path().ends_with("Hang") {
                std::future::pending::<()>().await;
            }
            Ok::<_, Infallible>(
                tonic::Status::permission_denied("no").into_http::<tonic::body::Body>(),
            )
        }));

        let refuse = Request::builder()
            .uri("/test.v1.Service/Refuse")
            .body(())
            .unwrap();
        let response = service.clone().oneshot(refuse).await.unwrap();
        drop(response);
        let hang = Request::builder()
            .uri("/test.v1.Service/Hang")
            .body(())
            .unwrap();
        // The server's deadline fires outside the layer and drops the call.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), service.clone().oneshot(hang))
                .await
                .is_err()
        );
        let stray = Request::builder()
            .uri("/test.v1.Service/Whatever")
            .body(())
            .unwrap();
        drop(service.oneshot(stray).await.unwrap());

        let text = rendered();
        for expected in [
            r#"test_grpc_requests_total{rpc="Refuse",code="PERMISSION_DENIED"} 1"#,
            r#"test_grpc_requests_total{rpc="Hang",code="DEADLINE_EXCEEDED"} 1"#,
            r#"test_grpc_requests_total{rpc="unknown",code="PERMISSION_DENIED"} 1"#,
        ] {
            assert!(text.contains(expected), "{expected} missing in\n{text}");
        }
    }
}
