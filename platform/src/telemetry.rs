//! Logs and metrics, set up the same way in every service.
//!
//! JSON log lines (`LOG_FORMAT=json`) carry the request's `request_id`, `trace_id` and
//! `span_id` as top-level members ([`trace_fields`]); every histogram is exported as a
//! Prometheus histogram with [`LATENCY_BUCKETS`], never as a summary, so that it aggregates
//! across pods.

pub mod trace_fields;

use std::io::IsTerminal as _;
use std::sync::OnceLock;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Installs the tracing subscriber (filter from `RUST_LOG`, default `info`; JSON lines when
/// `LOG_FORMAT=json`, for log collectors) and the Prometheus recorder. Logs go to stderr.
pub fn init(service: &'static str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = if json {
        registry.with(json_layer(std::io::stderr)).try_init()
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr),
            )
            .try_init()
    };
    if result.is_ok() {
        tracing::debug!(service, "telemetry initialised");
    }
    prometheus();
}

/// The JSON log format of `LOG_FORMAT=json`, writing to `writer`: one object per line, the
/// event's fields under `fields`, its spans under `span` and `spans`, and the request's
/// `request_id`, `trace_id` and `span_id` at the top level.
pub fn json_layer<S, W>(writer: W) -> impl tracing_subscriber::Layer<S> + Send + Sync + 'static
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::Layer as _;
    let format = tracing_subscriber::fmt::format()
        .json()
        .with_current_span(true)
        .with_span_list(true);
    trace_fields::TraceFieldsLayer.and_then(
        tracing_subscriber::fmt::layer()
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(trace_fields::WithTraceFields(format))
            .with_writer(writer),
    )
}

/// Histogram buckets of every latency, in seconds: 1 ms to 10 s (the longest request timeout),
/// about three per decade.
pub const LATENCY_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process-wide Prometheus recorder, installed on first use.
///
/// A global because the `metrics` facade is one by design: macros anywhere in the process
/// record into the one installed recorder. Several services in one test process share it.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&LATENCY_BUCKETS)
            .expect("BUG: LATENCY_BUCKETS is not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
        }
        handle
    })
}

/// The router of a service's metrics listener: `GET /metrics` and nothing else.
///
/// Metrics listen on a port of their own, apart from the public ones: an ingress that routes
/// every path to the gateway (the web app lives at `/`) would otherwise publish them, and a
/// NetworkPolicy can then open this port, and only this one, to the monitoring namespace.
pub fn metrics_router() -> Router {
    Router::new().route("/metrics", get(metrics_handler))
}

/// `GET /metrics`: Prometheus text exposition format.
pub async fn metrics_handler() -> impl IntoResponse {
    let handle = prometheus();
    handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
}
