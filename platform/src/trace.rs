//! Request ids and W3C Trace Context, from the edge to every service a request reaches.
//!
//! The gateway accepts a client's `x-request-id` and `traceparent` when they are well formed and
//! makes new ones when they are absent or malformed (a malformed header is never passed on);
//! every service reads them back from its HTTP headers or gRPC metadata with the same code
//! ([`TraceContextLayer`]), puts them in its request span, and forwards them to the services it
//! calls ([`TraceContext::inject`]). Each hop is a span of its own: it keeps the trace id, takes
//! the caller's span id as its parent and sends its own span id on.
//!
//! The `traceparent` header is parsed and formatted here, by hand, rather than with the
//! OpenTelemetry SDK: the format is one fixed-layout header of 55 characters (W3C Trace Context
//! Level 1, §3.2), and all the platform needs is to validate it, make ids and put them in logs.
//! The `opentelemetry` crates would bring a global propagator registry and a tracer provider
//! for that, and the usual bridge (`tracing-opentelemetry`) is version-locked to them; none of it
//! is needed until spans are exported to a collector. When they are, that bridge can take the
//! ids from these spans' fields. `tracestate` is not propagated: the platform adds no vendor
//! entries, and a client's opaque list is not something the edge should forward inside.

use std::fmt;
use std::time::Duration;

use axum::extract::{FromRequestParts, MatchedPath};
use http::header::HeaderName;
use http::{HeaderMap, HeaderValue, Request, Response};
use tower::util::MapRequest;
use tower::{Layer, ServiceBuilder};
use tower_http::classify::ServerErrorsFailureClass;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestId, PropagateRequestIdLayer, SetRequestId, SetRequestIdLayer,
};
use tower_http::trace::{GrpcMakeClassifier, HttpMakeClassifier, OnResponse, Trace, TraceLayer};
use tracing::Span;

/// The request id header, set (or kept) at the edge and passed on by every hop.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// The W3C Trace Context header.
pub const TRACEPARENT_HEADER: HeaderName = HeaderName::from_static("traceparent");
/// Longest request id kept from a caller; longer ones are replaced.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// A 16-byte trace id, never all zeros. Shown as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId([u8; 16]);

/// An 8-byte span (parent) id, never all zeros. Shown as 16 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId([u8; 8]);

impl TraceId {
    /// A random trace id (all 128 bits from the system CSPRNG).
    pub fn random() -> Self {
        Self(random_nonzero())
    }

    pub fn from_bytes(bytes: [u8; 16]) -> Option<Self> {
        (bytes != [0; 16]).then_some(Self(bytes))
    }

    pub fn to_bytes(self) -> [u8; 16] {
        self.0
    }
}

impl SpanId {
    /// A random span id.
    pub fn random() -> Self {
        Self(random_nonzero())
    }

    pub fn from_bytes(bytes: [u8; 8]) -> Option<Self> {
        (bytes != [0; 8]).then_some(Self(bytes))
    }

    pub fn to_bytes(self) -> [u8; 8] {
        self.0
    }
}

fn random_nonzero<const N: usize>() -> [u8; N] {
    loop {
        let mut bytes = [0u8; N];
        aws_lc_rs::rand::fill(&mut bytes).expect("BUG: the system random number generator failed");
        if bytes != [0; N] {
            return bytes;
        }
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for byte in bytes {
        write!(f, "{byte:02x}")?;
    }
    Ok(())
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

/// Why a `traceparent` value was refused (for debug logs; the caller is never told).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TraceParentError {
    #[error("traceparent has the wrong length")]
    Length,
    #[error("traceparent has an invalid version")]
    Version,
    #[error("traceparent is not dash-separated lowercase hex")]
    Format,
    #[error("traceparent has an all-zero trace id or parent id")]
    Zero,
    #[error("more than one traceparent header")]
    Repeated,
}

/// A parsed `traceparent`: `{version}-{trace-id}-{parent-id}-{trace-flags}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    /// The caller's span.
    pub parent_id: SpanId,
    /// Trace flag 0x01: the caller recorded (sampled) its span.
    pub sampled: bool,
}

impl TraceParent {
    /// Parses a `traceparent` as W3C Trace Context Level 1 (§3.2, §4.3) says a receiver must:
    ///
    /// - version: two lowercase hex digits, `ff` is invalid; version `00` is exactly 55
    ///   characters; a higher (future) version is parsed as `00` from its first 55 characters
    ///   and must end there or continue with a `-`;
    /// - trace-id: 32, parent-id: 16, trace-flags: 2 lowercase hex digits (uppercase is
    ///   invalid), separated by single dashes; an all-zero trace-id or parent-id is invalid.
    ///
    /// Only the `sampled` flag is kept; unknown flags are dropped, as Level 1 requires.
    pub fn parse(value: &str) -> Result<Self, TraceParentError> {
        const LEN: usize = 55;
        let bytes = value.as_bytes();
        if bytes.len() < LEN {
            return Err(TraceParentError::Length);
        }
        let version = hex::<1>(&bytes[0..2]).ok_or(TraceParentError::Version)?[0];
        match version {
            0xff => return Err(TraceParentError::Version),
            0x00 if bytes.len() != LEN => return Err(TraceParentError::Length),
            _ if bytes.len() > LEN && bytes[LEN] != b'-' => return Err(TraceParentError::Format),
            _ => {}
        }
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return Err(TraceParentError::Format);
        }
        let trace_id = hex::<16>(&bytes[3..35]).ok_or(TraceParentError::Format)?;
        let parent_id = hex::<8>(&bytes[36..52]).ok_or(TraceParentError::Format)?;
        let flags = hex::<1>(&bytes[53..55]).ok_or(TraceParentError::Format)?[0];
        Ok(Self {
            trace_id: TraceId::from_bytes(trace_id).ok_or(TraceParentError::Zero)?,
            parent_id: SpanId::from_bytes(parent_id).ok_or(TraceParentError::Zero)?,
            sampled: flags & 0x01 == 0x01,
        })
    }

    /// The one `traceparent` of a request: none, or an invalid or repeated header, is an error.
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Self>, TraceParentError> {
        let mut values = headers.get_all(TRACEPARENT_HEADER).iter();
        match (values.next(), values.next()) {
            (None, _) => Ok(None),
            (Some(value), None) => value
                .to_str()
                .map_err(|_| TraceParentError::Format)
                .and_then(Self::parse)
                .map(Some),
            (Some(_), Some(_)) => Err(TraceParentError::Repeated),
        }
    }

    /// The header value (always version `00`).
    pub fn to_header_value(&self) -> HeaderValue {
        HeaderValue::try_from(self.to_string()).expect("BUG: a traceparent is ASCII")
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id,
            self.parent_id,
            u8::from(self.sampled)
        )
    }
}

/// `2 * N` lowercase hex digits as bytes.
fn hex<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    fn nibble(digit: u8) -> Option<u8> {
        match digit {
            b'0'..=b'9' => Some(digit - b'0'),
            b'a'..=b'f' => Some(digit - b'a' + 10),
            _ => None,
        }
    }
    if digits.len() != 2 * N {
        return None;
    }
    let mut bytes = [0u8; N];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(bytes)
}

/// A request id: kept from the caller when it is 1 to [`MAX_REQUEST_ID_LEN`] characters of
/// `A-Z a-z 0-9 - _ . : / + = @` (UUIDs, ULIDs, base64 and the ids of common proxies fit), made
/// up (a UUIDv4) otherwise, so that a log line can never be forged or broken through it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RequestId(String);

impl RequestId {
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    pub fn parse(value: &str) -> Option<Self> {
        let valid = !value.is_empty()
            && value.len() <= MAX_REQUEST_ID_LEN
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(&b));
        valid.then(|| Self(value.to_owned()))
    }

    /// The one valid `x-request-id` of a request, if it has exactly one.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let mut values = headers.get_all(REQUEST_ID_HEADER).iter();
        match (values.next(), values.next()) {
            (Some(value), None) => value.to_str().ok().and_then(Self::parse),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn to_header_value(&self) -> HeaderValue {
        HeaderValue::try_from(self.0.as_str()).expect("BUG: a request id is visible ASCII")
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({})", self.0)
    }
}

/// Where one request is in its trace, as seen by the service handling it: the request id, the
/// trace id, this service's own span id and, when the caller sent a valid `traceparent`, the
/// caller's span id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    request_id: RequestId,
    trace_id: TraceId,
    span_id: SpanId,
    parent_id: Option<SpanId>,
    sampled: bool,
}

impl TraceContext {
    /// The start of a new trace (and a new request id).
    pub fn root() -> Self {
        Self {
            request_id: RequestId::generate(),
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
            parent_id: None,
            // Every request is recorded, in the logs at least; downstream samplers that follow
            // their parent then keep the whole trace.
            sampled: true,
        }
    }

    /// The context of a request received with `headers`: its request id and trace continued
    /// when well formed, new ones otherwise. A malformed value is dropped, never passed on.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut context = Self::root();
        if let Some(request_id) = RequestId::from_headers(headers) {
            context.request_id = request_id;
        } else if headers.contains_key(REQUEST_ID_HEADER) {
            tracing::debug!("malformed x-request-id replaced");
        }
        match TraceParent::from_headers(headers) {
            Ok(Some(parent)) => {
                context.trace_id = parent.trace_id;
                context.parent_id = Some(parent.parent_id);
                context.sampled = parent.sampled;
            }
            Ok(None) => {}
            Err(error) => tracing::debug!(%error, "malformed traceparent; starting a new trace"),
        }
        context
    }

    pub fn request_id(&self) -> &RequestId {
        &self.request_id
    }

    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// This service's span for the request.
    pub fn span_id(&self) -> SpanId {
        self.span_id
    }

    /// The caller's span, if it sent a valid `traceparent`.
    pub fn parent_id(&self) -> Option<SpanId> {
        self.parent_id
    }

    /// The `traceparent` to send to a service this request calls: same trace, this span as
    /// the parent.
    pub fn traceparent(&self) -> TraceParent {
        TraceParent {
            trace_id: self.trace_id,
            parent_id: self.span_id,
            sampled: self.sampled,
        }
    }

    /// Sets `x-request-id` and `traceparent` on an outgoing request's headers, replacing
    /// whatever was there (gRPC calls: [`crate::grpc::with_trace`]).
    pub fn inject(&self, headers: &mut HeaderMap) {
        headers.insert(REQUEST_ID_HEADER, self.request_id.to_header_value());
        headers.insert(TRACEPARENT_HEADER, self.traceparent().to_header_value());
    }

    /// The two headers to send to a service this request calls.
    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::with_capacity(2);
        self.inject(&mut headers);
        headers
    }
}

/// The request's context, as [`TraceContextLayer`] left it; a new trace when the layer is
/// missing (a handler is never refused for want of a trace).
impl<S: Send + Sync> FromRequestParts<S> for TraceContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<TraceContext>()
            .cloned()
            .unwrap_or_else(TraceContext::root))
    }
}

// The `map_request` step and the span makers are plain `fn` pointers (a closure cannot be
// generic, and a named type keeps `Layer::Service` nameable), so each takes the one request body
// of the server it is made for.

/// The request body of an axum router, where [`TraceContextLayer::http`] is applied.
type HttpBody = axum::body::Body;
/// The request body of a tonic server, where [`TraceContextLayer::grpc`] is applied.
type GrpcBody = tonic::body::Body;

/// [`TraceContextLayer`] for an axum router ([`TraceContextLayer::http`]).
#[derive(Debug, Clone, Copy)]
pub struct Http;

/// [`TraceContextLayer`] for a tonic server ([`TraceContextLayer::grpc`]).
#[derive(Debug, Clone, Copy)]
pub struct Grpc;

/// Reads (or makes) the [`TraceContext`] of every request a server receives, puts it in the
/// request extensions (handlers take it as an extractor, or from `tonic::Request::extensions`),
/// normalises the request's `x-request-id` header to the id in use, runs the request inside a
/// span carrying `request_id`, `trace_id`, `span_id` and `parent_span_id`, and answers with
/// `x-request-id`.
///
/// - [`TraceContextLayer::http`]: span `request` with `method` and `route` (the matched route
///   template: apply the layer with `Router::layer`), and a log line when the response starts
///   (debug; warn for a 5xx).
/// - [`TraceContextLayer::grpc`]: span `rpc` with `rpc` (the method path); for
///   `tonic::transport::Server::builder().layer(..)`. gRPC outcomes are counted by
///   [`crate::request_metrics::GrpcMetricsLayer`].
///
/// Built from tower-http, outermost first: [`accept_trace_context`] (a `map_request` step),
/// [`SetRequestIdLayer`] with [`ContextRequestId`], [`PropagateRequestIdLayer`], and a
/// [`TraceLayer`] with the HTTP or gRPC classifier whose span is made by [`http_span`] or
/// [`grpc_span`]. It leaves an `x-request-id` that the inner service put on its response
/// (tower-http's [`PropagateRequestIdLayer`] does not overwrite one): the only such response is
/// the gateway's proxied answer from auth-service, which carries the id the gateway sent.
#[derive(Debug, Clone, Copy)]
pub struct TraceContextLayer<P> {
    _protocol: P,
}

impl TraceContextLayer<Http> {
    pub fn http() -> Self {
        Self { _protocol: Http }
    }
}

impl TraceContextLayer<Grpc> {
    pub fn grpc() -> Self {
        Self { _protocol: Grpc }
    }
}

/// The service made by [`TraceContextLayer::http`].
pub type HttpTraceContext<S> = MapRequest<
    SetRequestId<
        PropagateRequestId<
            Trace<
                S,
                HttpMakeClassifier,
                fn(&Request<HttpBody>) -> Span,
                (),
                LogResponse,
                (),
                (),
                fn(ServerErrorsFailureClass, Duration, &Span),
            >,
        >,
        ContextRequestId,
    >,
    fn(Request<HttpBody>) -> Request<HttpBody>,
>;

/// The service made by [`TraceContextLayer::grpc`].
pub type GrpcTraceContext<S> = MapRequest<
    SetRequestId<
        PropagateRequestId<
            Trace<S, GrpcMakeClassifier, fn(&Request<GrpcBody>) -> Span, (), (), (), (), ()>,
        >,
        ContextRequestId,
    >,
    fn(Request<GrpcBody>) -> Request<GrpcBody>,
>;

impl<S> Layer<S> for TraceContextLayer<Http> {
    type Service = HttpTraceContext<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let trace = TraceLayer::new_for_http()
            .make_span_with(http_span as fn(&Request<HttpBody>) -> Span)
            .on_request(())
            .on_response(LogResponse)
            .on_body_chunk(())
            .on_eos(())
            .on_failure(log_failure as fn(ServerErrorsFailureClass, Duration, &Span));
        ServiceBuilder::new()
            .map_request(accept_trace_context as fn(Request<HttpBody>) -> Request<HttpBody>)
            .layer(SetRequestIdLayer::new(REQUEST_ID_HEADER, ContextRequestId))
            .layer(PropagateRequestIdLayer::new(REQUEST_ID_HEADER))
            .layer(trace)
            .service(inner)
    }
}

impl<S> Layer<S> for TraceContextLayer<Grpc> {
    type Service = GrpcTraceContext<S>;

    fn layer(&self, inner: S) -> Self::Service {
        // gRPC outcomes are not logged here (no `on_response`, `on_failure`): a call's status is
        // in its trailers, and GrpcMetricsLayer counts it.
        let trace = TraceLayer::new_for_grpc()
            .make_span_with(grpc_span as fn(&Request<GrpcBody>) -> Span)
            .on_request(())
            .on_response(())
            .on_body_chunk(())
            .on_eos(())
            .on_failure(());
        ServiceBuilder::new()
            .map_request(accept_trace_context as fn(Request<GrpcBody>) -> Request<GrpcBody>)
            .layer(SetRequestIdLayer::new(REQUEST_ID_HEADER, ContextRequestId))
            .layer(PropagateRequestIdLayer::new(REQUEST_ID_HEADER))
            .layer(trace)
            .service(inner)
    }
}

/// Reads the request's [`TraceContext`] into its extensions, and takes a malformed or repeated
/// `x-request-id` away: [`SetRequestIdLayer`] keeps any `x-request-id` a request carries, and
/// only one that is valid may stay; without one, it sets the context's new id
/// ([`ContextRequestId`]).
pub fn accept_trace_context<B>(mut request: Request<B>) -> Request<B> {
    let context = TraceContext::from_headers(request.headers());
    if RequestId::from_headers(request.headers()).is_none() {
        request.headers_mut().remove(REQUEST_ID_HEADER);
    }
    request.extensions_mut().insert(context);
    request
}

/// The [`MakeRequestId`] of [`TraceContextLayer`]: the request id of the request's
/// [`TraceContext`] (a new one, as the caller sent none that [`RequestId::parse`] accepts).
#[derive(Debug, Clone, Copy, Default)]
pub struct ContextRequestId;

impl MakeRequestId for ContextRequestId {
    fn make_request_id<B>(
        &mut self,
        request: &Request<B>,
    ) -> Option<tower_http::request_id::RequestId> {
        let id = request
            .extensions()
            .get::<TraceContext>()
            .map_or_else(RequestId::generate, |context| context.request_id.clone());
        Some(id.to_header_value().into())
    }
}

/// The request's context, as [`accept_trace_context`] left it.
fn context_of<B>(request: &Request<B>) -> std::borrow::Cow<'_, TraceContext> {
    match request.extensions().get::<TraceContext>() {
        Some(context) => std::borrow::Cow::Borrowed(context),
        None => std::borrow::Cow::Owned(TraceContext::from_headers(request.headers())),
    }
}

/// The span `request` of an HTTP request: `method`, `route` (the matched route template,
/// `unmatched` otherwise) and the trace context.
pub fn http_span(request: &Request<HttpBody>) -> Span {
    let context = context_of(request);
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    tracing::info_span!(
        "request",
        method = %request.method(),
        route,
        request_id = %context.request_id,
        trace_id = %context.trace_id,
        span_id = %context.span_id,
        parent_span_id = context.parent_id.map(|id| id.to_string()),
    )
}

/// The span `rpc` of a gRPC call: `rpc` (the method path) and the trace context.
pub fn grpc_span(request: &Request<GrpcBody>) -> Span {
    let context = context_of(request);
    tracing::info_span!(
        "rpc",
        rpc = request.uri().path(),
        request_id = %context.request_id,
        trace_id = %context.trace_id,
        span_id = %context.span_id,
        parent_span_id = context.parent_id.map(|id| id.to_string()),
    )
}

fn latency_ms(latency: Duration) -> f64 {
    latency.as_secs_f64() * 1000.0
}

/// "request finished" (debug) with `status` and `latency_ms` when an HTTP response starts; a 5xx
/// is the classifier's failure, logged by [`log_failure`].
#[derive(Debug, Clone, Copy)]
pub struct LogResponse;

impl<B> OnResponse<B> for LogResponse {
    fn on_response(self, response: &Response<B>, latency: Duration, _span: &Span) {
        let status = response.status();
        if !status.is_server_error() {
            let (status, latency_ms) = (status.as_u16(), latency_ms(latency));
            tracing::debug!(status, latency_ms, "request finished");
        }
    }
}

/// "request failed" (warn) with `status` and `latency_ms` for a 5xx response. An error of the
/// inner service is not logged: an axum router has none (its error type is `Infallible`).
pub fn log_failure(class: ServerErrorsFailureClass, latency: Duration, _span: &Span) {
    if let ServerErrorsFailureClass::StatusCode(status) = class {
        let (status, latency_ms) = (status.as_u16(), latency_ms(latency));
        tracing::warn!(status, latency_ms, "request failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_the_spec_example() {
        let parent = TraceParent::parse(VALID).unwrap();
        assert_eq!(
            parent.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(parent.parent_id.to_string(), "00f067aa0ba902b7");
        assert!(parent.sampled);
        assert_eq!(parent.to_string(), VALID);
        let unsampled =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(!unsampled.sampled);
    }

    #[test]
    fn refuses_what_the_spec_calls_invalid() {
        let cases = [
            ("", TraceParentError::Length),
            (&VALID[..54], TraceParentError::Length),
            // Version 00 is exactly 55 characters.
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
                TraceParentError::Length,
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                TraceParentError::Version,
            ),
            (
                "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                TraceParentError::Version,
            ),
            // Uppercase hex is not the format.
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                TraceParentError::Format,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
                TraceParentError::Format,
            ),
            (
                "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                TraceParentError::Format,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
                TraceParentError::Format,
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                TraceParentError::Zero,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                TraceParentError::Zero,
            ),
            // A future version must continue with a dash after the version-00 fields.
            (
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
                TraceParentError::Format,
            ),
        ];
        for (value, error) in cases {
            assert_eq!(TraceParent::parse(value), Err(error), "{value:?}");
        }
    }

    #[test]
    fn a_future_version_is_read_as_version_00() {
        let parent =
            TraceParent::parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03-what-ever")
                .unwrap();
        assert!(parent.sampled);
        // Re-emitted as version 00, unknown flags dropped.
        assert_eq!(parent.to_string(), VALID);
    }

    #[test]
    fn request_ids_are_kept_only_when_safe() {
        for good in [
            "req-7",
            "trace-me-42",
            "0190a0a0-0000-7000-8000-000000000000",
            "Root=1-5759e988-bd862e3fe1be46a994272793",
            "abc+/=@:._",
        ] {
            assert_eq!(RequestId::parse(good).unwrap().as_str(), good);
        }
        let long = "a".repeat(MAX_REQUEST_ID_LEN + 1);
        for bad in [
            "",
            "with space",
            "new\nline",
            "quote\"",
            "semi;colon",
            "é",
            long.as_str(),
        ] {
            assert!(RequestId::parse(bad).is_none(), "{bad:?}");
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn a_valid_context_is_continued_with_a_new_span() {
        let context = TraceContext::from_headers(&headers(&[
            ("traceparent", VALID),
            ("x-request-id", "r-1"),
        ]));
        assert_eq!(context.request_id().as_str(), "r-1");
        assert_eq!(
            context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(context.parent_id().unwrap().to_string(), "00f067aa0ba902b7");
        assert_ne!(context.span_id().to_string(), "00f067aa0ba902b7");

        let sent = context.headers();
        assert_eq!(sent[REQUEST_ID_HEADER], "r-1");
        let next = TraceParent::parse(sent[TRACEPARENT_HEADER].to_str().unwrap()).unwrap();
        assert_eq!(next.trace_id, context.trace_id());
        assert_eq!(next.parent_id, context.span_id());
        assert!(next.sampled);
    }

    #[test]
    fn a_malformed_context_is_replaced_never_passed_on() {
        let bad_parent = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01";
        let context = TraceContext::from_headers(&headers(&[
            ("traceparent", bad_parent),
            ("x-request-id", "evil id\t"),
        ]));
        assert_eq!(context.parent_id(), None);
        assert_ne!(
            context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_ne!(context.request_id().as_str(), "evil id\t");
        let sent = context.headers();
        assert_ne!(sent[TRACEPARENT_HEADER], bad_parent);
        TraceParent::parse(sent[TRACEPARENT_HEADER].to_str().unwrap()).unwrap();

        // Two traceparent headers: which one would be meant? Neither.
        let twice =
            TraceContext::from_headers(&headers(&[("traceparent", VALID), ("traceparent", VALID)]));
        assert_eq!(twice.parent_id(), None);
    }

    #[test]
    fn new_traces_have_distinct_nonzero_ids() {
        let (a, b) = (TraceContext::root(), TraceContext::root());
        assert_ne!(a.trace_id(), b.trace_id());
        assert_ne!(a.request_id(), b.request_id());
        assert_ne!(a.trace_id().to_bytes(), [0; 16]);
        assert_eq!(a.trace_id().to_string().len(), 32);
        assert_eq!(a.span_id().to_string().len(), 16);
    }
}

#[cfg(test)]
mod layer_tests {
    use std::convert::Infallible;

    use tower::{Service as _, ServiceExt as _};

    use super::*;

    /// What the handler saw: the request's `x-request-id` headers and its context.
    async fn call(headers: &[(&str, &str)]) -> (Vec<String>, TraceContext, HeaderMap) {
        let mut service = TraceContextLayer::http().layer(tower::service_fn(
            |request: Request<HttpBody>| async move {
                let ids: Vec<String> = request
                    .headers()
                    .get_all(REQUEST_ID_HEADER)
                    .iter()
                    .map(|value| value.to_str().unwrap().to_owned())
                    .collect();
                let context = request.extensions().get::<TraceContext>().unwrap().clone();
                let mut response = Response::new(HttpBody::empty());
                response.extensions_mut().insert((ids, context));
                Ok::<_, Infallible>(response)
            },
        ));
        let mut request = Request::new(HttpBody::empty());
        for (name, value) in headers {
            request.headers_mut().append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let response = service.ready().await.unwrap().call(request).await.unwrap();
        let (ids, context) = response
            .extensions()
            .get::<(Vec<String>, TraceContext)>()
            .unwrap()
            .clone();
        (ids, context, response.headers().clone())
    }

    #[tokio::test]
    async fn the_request_id_in_use_is_the_one_header_seen_and_answered() {
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (ids, context, answered) =
            call(&[("x-request-id", "r-1"), ("traceparent", traceparent)]).await;
        assert_eq!(ids, ["r-1"]);
        assert_eq!(context.request_id().as_str(), "r-1");
        assert_eq!(context.parent_id().unwrap().to_string(), "00f067aa0ba902b7");
        assert_eq!(answered[REQUEST_ID_HEADER], "r-1");

        for sent in [
            &[][..],
            &[("x-request-id", "evil id")][..],
            &[("x-request-id", "r-1"), ("x-request-id", "r-2")][..],
        ] {
            let (ids, context, answered) = call(sent).await;
            let id = context.request_id().as_str();
            assert!(uuid::Uuid::parse_str(id).is_ok(), "{sent:?}: {id}");
            assert_eq!(ids, [id], "{sent:?}");
            assert_eq!(answered.get_all(REQUEST_ID_HEADER).iter().count(), 1);
            assert_eq!(answered[REQUEST_ID_HEADER], id, "{sent:?}");
        }
    }
}
