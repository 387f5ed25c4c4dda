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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::extract::MatchedPath;
use http::{HeaderMap, Method, Request, Response};
use tonic::Code;
use tower::Layer;
use tower_http::classify::{
    ClassifiedResponse, ClassifyEos, ClassifyResponse, GrpcEosErrorsAsFailures,
    GrpcErrorsAsFailures, GrpcFailureClass, MakeClassifier, NeverClassifyEos,
    ServerErrorsAsFailures, ServerErrorsFailureClass,
};
use tower_http::trace::{Trace, TraceLayer};
use tracing::Span;

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
///
/// A tower-http [`TraceLayer`] (no span, no log line) whose classifier records the request:
/// tower-http calls it with the response (or the inner service's error), and a request dropped
/// before either is recorded as [`CLIENT_CLOSED_REQUEST`] when its classifier is dropped
/// ([`HttpExchange`]).
#[derive(Debug, Clone, Copy)]
pub struct HttpMetricsLayer {
    names: MetricNames,
}

impl HttpMetricsLayer {
    pub fn new(names: MetricNames) -> Self {
        Self { names }
    }
}

/// The service made by [`HttpMetricsLayer`].
pub type HttpMetrics<S> = Trace<S, HttpMetricsLayer, Span, (), (), (), (), ()>;

impl<S> Layer<S> for HttpMetricsLayer {
    type Service = HttpMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        silent(TraceLayer::new(*self)).layer(inner)
    }
}

/// A [`TraceLayer`] used for its classifier only: no span of its own, no log line.
fn silent<M>(layer: TraceLayer<M>) -> TraceLayer<M, Span, (), (), (), (), ()> {
    layer
        .make_span_with(Span::none())
        .on_request(())
        .on_response(())
        .on_body_chunk(())
        .on_eos(())
        .on_failure(())
}

/// Each request gets a classifier that measures it.
impl MakeClassifier for HttpMetricsLayer {
    type Classifier = HttpClassifier;
    type FailureClass = ServerErrorsFailureClass;
    type ClassifyEos = NeverClassifyEos<ServerErrorsFailureClass>;

    fn make_classifier<B>(&self, request: &Request<B>) -> Self::Classifier {
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
        HttpClassifier(Arc::new(HttpExchange {
            names: self.names,
            started: Instant::now(),
            method: method_label(request.method()),
            route,
            recorded: AtomicBool::new(false),
        }))
    }
}

/// tower-http's [`ServerErrorsAsFailures`], recording the request's status as it classifies it.
#[derive(Clone)]
pub struct HttpClassifier(Arc<HttpExchange>);

impl ClassifyResponse for HttpClassifier {
    type FailureClass = ServerErrorsFailureClass;
    type ClassifyEos = NeverClassifyEos<ServerErrorsFailureClass>;

    fn classify_response<B>(
        self,
        response: &Response<B>,
    ) -> ClassifiedResponse<Self::FailureClass, Self::ClassifyEos> {
        self.0.record(response.status().as_str());
        ServerErrorsAsFailures::new().classify_response(response)
    }

    fn classify_error<E>(self, error: &E) -> Self::FailureClass
    where
        E: std::fmt::Display + 'static,
    {
        self.0.record("error");
        ServerErrorsAsFailures::new().classify_error(error)
    }
}

/// One HTTP request being measured; recorded once, as 499 if it is dropped unanswered.
///
/// The drop is the one thing no callback says: tower-http's `TraceLayer` (and the other
/// middleware crates) report what a response future yields, and a future dropped before it
/// yields (the client went away, hyper dropped the call) yields nothing. So the classifier,
/// which tower-http keeps in the response future until the response comes, carries this guard.
pub struct HttpExchange {
    names: MetricNames,
    started: Instant,
    method: &'static str,
    route: String,
    recorded: AtomicBool,
}

impl HttpExchange {
    fn record(&self, status: &str) {
        if self.recorded.swap(true, Ordering::Relaxed) {
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
///
/// A tower-http [`TraceLayer`] (no span, no log line) whose classifier, tower-http's
/// [`GrpcErrorsAsFailures`], records the call: tower-http calls it with the response headers
/// and, when they carry no status, with the trailers at the end of the body; a call dropped
/// before either is recorded when its classifier is dropped ([`GrpcCall`]).
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

/// The service made by [`GrpcMetricsLayer`].
pub type GrpcMetrics<S> = Trace<S, GrpcMetricsLayer, Span, (), (), (), (), ()>;

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        silent(TraceLayer::new(*self)).layer(inner)
    }
}

/// Each call gets a classifier that measures it.
impl MakeClassifier for GrpcMetricsLayer {
    type Classifier = GrpcClassifier;
    type FailureClass = GrpcFailureClass;
    type ClassifyEos = GrpcEosClassifier;

    fn make_classifier<B>(&self, request: &Request<B>) -> Self::Classifier {
        let path = request.uri().path();
        let rpc = self
            .methods
            .iter()
            .find(|method| **method == path)
            .and_then(|method| method.rsplit('/').next())
            .unwrap_or("unknown");
        let deadline = match (grpc_timeout(request.headers()), self.timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        GrpcClassifier(Arc::new(GrpcCall {
            names: self.names,
            started: Instant::now(),
            rpc,
            deadline,
            recorded: AtomicBool::new(false),
        }))
    }
}

/// tower-http's [`GrpcErrorsAsFailures`], recording the call's code from the response headers
/// (when they carry one), or handing the call to [`GrpcEosClassifier`] for the trailers.
#[derive(Clone)]
pub struct GrpcClassifier(Arc<GrpcCall>);

impl ClassifyResponse for GrpcClassifier {
    type FailureClass = GrpcFailureClass;
    type ClassifyEos = GrpcEosClassifier;

    fn classify_response<B>(
        self,
        response: &Response<B>,
    ) -> ClassifiedResponse<Self::FailureClass, Self::ClassifyEos> {
        match GrpcErrorsAsFailures::new().classify_response(response) {
            ClassifiedResponse::Ready(result) => {
                // Ready: the headers carry `grpc-status` (a trailers-only answer).
                self.0
                    .record(status_code(response.headers()).unwrap_or(Code::Unknown));
                ClassifiedResponse::Ready(result)
            }
            ClassifiedResponse::RequiresEos(eos) => {
                ClassifiedResponse::RequiresEos(GrpcEosClassifier { eos, call: self.0 })
            }
        }
    }

    fn classify_error<E>(self, error: &E) -> Self::FailureClass
    where
        E: std::fmt::Display + 'static,
    {
        self.0.record(Code::Unknown);
        GrpcErrorsAsFailures::new().classify_error(error)
    }
}

/// The end of a gRPC response: the code from its trailers (`UNKNOWN` without one, or when the
/// body fails).
pub struct GrpcEosClassifier {
    eos: GrpcEosErrorsAsFailures,
    call: Arc<GrpcCall>,
}

impl ClassifyEos for GrpcEosClassifier {
    type FailureClass = GrpcFailureClass;

    fn classify_eos(self, trailers: Option<&HeaderMap>) -> Result<(), Self::FailureClass> {
        self.call
            .record(trailers.and_then(status_code).unwrap_or(Code::Unknown));
        self.eos.classify_eos(trailers)
    }

    fn classify_error<E>(self, error: &E) -> Self::FailureClass
    where
        E: std::fmt::Display + 'static,
    {
        self.call.record(Code::Unknown);
        self.eos.classify_error(error)
    }
}

/// One gRPC call being measured; recorded once.
///
/// Recorded as `DEADLINE_EXCEEDED` or `CANCELLED` when it is dropped before it was classified:
/// tower-http reports what a response future or body yields, and a call dropped by tonic's
/// deadline or a client's `RST_STREAM` yields nothing. tower-http keeps the classifier in the
/// response future, then in the response body until its end, so this guard lives exactly as
/// long as the call.
pub struct GrpcCall {
    names: MetricNames,
    started: Instant,
    rpc: &'static str,
    deadline: Option<Duration>,
    recorded: AtomicBool,
}

/// Timer slack when deciding whether a dropped call hit its deadline: tonic starts its deadline
/// timer a moment before this layer sees the call.
const DEADLINE_SLACK: Duration = Duration::from_millis(10);

impl GrpcCall {
    fn record(&self, code: Code) {
        if self.recorded.swap(true, Ordering::Relaxed) {
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
        let code = match self.deadline {
            Some(deadline) if self.started.elapsed() + DEADLINE_SLACK >= deadline => {
                Code::DeadlineExceeded
            }
            _ => Code::Cancelled,
        };
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
            HttpMetricsLayer::new(NAMES).layer(tower::service_fn(|_request: Request<String>| {
                std::future::pending::<Result<Response<String>, Infallible>>()
            }));
        let call = service.oneshot(Request::new(String::new()));
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
        let service = layer.layer(tower::service_fn(|request: Request<String>| async move {
            if request.uri().path().ends_with("Hang") {
                std::future::pending::<()>().await;
            }
            Ok::<_, Infallible>(
                tonic::Status::permission_denied("no").into_http::<tonic::body::Body>(),
            )
        }));

        let refuse = Request::builder()
            .uri("/test.v1.Service/Refuse")
            .body(String::new())
            .unwrap();
        let response = service.clone().oneshot(refuse).await.unwrap();
        drop(response);
        let hang = Request::builder()
            .uri("/test.v1.Service/Hang")
            .body(String::new())
            .unwrap();
        // The server's deadline fires outside the layer and drops the call.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), service.clone().oneshot(hang))
                .await
                .is_err()
        );
        let stray = Request::builder()
            .uri("/test.v1.Service/Whatever")
            .body(String::new())
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
