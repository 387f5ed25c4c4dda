//! `request_id`, `trace_id` and `span_id` as top-level members of every JSON log line written
//! inside a request, so that a log collector indexes them without knowing the span layout.
//!
//! tracing-subscriber's JSON format nests span fields (`span`, `spans`); a line logged in a
//! handler's own span (`create_order`) would show the request's ids only deep in `spans`, or
//! not at all with `with_span_list(false)`. [`TraceFieldsLayer`] keeps the ids of each span that
//! records them (the request spans of [`crate::trace::TraceContextLayer`]) in the span's
//! extensions, and [`WithTraceFields`] writes the innermost ones in front of the line.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The span fields lifted to the top level of a JSON line, in this order.
pub const TRACE_FIELDS: [&str; 3] = ["request_id", "trace_id", "span_id"];

/// The trace fields a span recorded.
#[derive(Debug, Clone, Default)]
struct TraceFields([Option<String>; 3]);

impl Visit for TraceFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if let Some(index) = TRACE_FIELDS.iter().position(|name| *name == field.name()) {
            self.0[index] = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if let Some(index) = TRACE_FIELDS.iter().position(|name| *name == field.name()) {
            // `%value` fields arrive here; their Debug is their Display.
            self.0[index] = Some(format!("{value:?}"));
        }
    }
}

/// Keeps each span's trace fields in its extensions.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceFieldsLayer;

impl<S> tracing_subscriber::Layer<S> for TraceFieldsLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = TraceFields::default();
        attrs.record(&mut fields);
        if fields.0.iter().any(Option::is_some)
            && let Some(span) = ctx.span(id)
        {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        match extensions.get_mut::<TraceFields>() {
            Some(fields) => values.record(fields),
            None => {
                let mut fields = TraceFields::default();
                values.record(&mut fields);
                if fields.0.iter().any(Option::is_some) {
                    extensions.insert(fields);
                }
            }
        }
    }
}

/// A JSON event format that adds the innermost `request_id`, `trace_id` and `span_id` of the
/// event's spans as top-level members in front of what the wrapped format writes.
#[derive(Debug, Clone)]
pub struct WithTraceFields<F>(pub F);

impl<S, N, F> FormatEvent<S, N> for WithTraceFields<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut found: [Option<String>; 3] = Default::default();
        if let Some(scope) = ctx.event_scope() {
            for span in scope {
                if let Some(fields) = span.extensions().get::<TraceFields>() {
                    for (slot, value) in found.iter_mut().zip(&fields.0) {
                        if slot.is_none() {
                            slot.clone_from(value);
                        }
                    }
                }
                if found.iter().all(Option::is_some) {
                    break;
                }
            }
        }
        if found.iter().all(Option::is_none) {
            return self.0.format_event(ctx, writer, event);
        }
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        let Some(rest) = line.strip_prefix('{') else {
            return writer.write_str(&line);
        };
        writer.write_char('{')?;
        for (name, value) in TRACE_FIELDS.iter().zip(&found) {
            if let Some(value) = value {
                let value = serde_json::to_string(value).map_err(|_| fmt::Error)?;
                write!(writer, "\"{name}\":{value},")?;
            }
        }
        writer.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt as _;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buffer {
        type Writer = Buffer;

        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    fn lines(buffer: &Buffer) -> Vec<serde_json::Value> {
        String::from_utf8(buffer.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    #[test]
    fn lines_inside_a_request_carry_its_ids_at_the_top_level() {
        let buffer = Buffer::default();
        let subscriber =
            tracing_subscriber::registry().with(crate::telemetry::json_layer(buffer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("before any request");
            let request = tracing::info_span!(
                "request",
                request_id = "r-1",
                trace_id = %"4bf92f3577b34da6a3ce929d0e0e4736",
                span_id = tracing::field::Empty,
            );
            request.record("span_id", "00f067aa0ba902b7");
            let _request = request.enter();
            let handler = tracing::info_span!("create_order", sub = "alice");
            let _handler = handler.enter();
            tracing::info!(order = 7, "order placed");
        });

        let lines = lines(&buffer);
        assert_eq!(lines.len(), 2);
        assert!(lines[0].get("request_id").is_none(), "{}", lines[0]);
        let placed = &lines[1];
        assert_eq!(placed["request_id"], "r-1");
        assert_eq!(placed["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(placed["span_id"], "00f067aa0ba902b7");
        // Everything else is the usual format.
        assert_eq!(placed["fields"]["message"], "order placed");
        assert_eq!(placed["fields"]["order"], 7);
        assert_eq!(placed["span"]["name"], "create_order");
        assert_eq!(placed["spans"][0]["request_id"], "r-1");
        assert_eq!(placed["level"], "INFO");
    }

    #[test]
    fn the_innermost_request_wins() {
        let buffer = Buffer::default();
        let subscriber =
            tracing_subscriber::registry().with(crate::telemetry::json_layer(buffer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let outer = tracing::info_span!("request", request_id = "outer", trace_id = "t");
            let _outer = outer.enter();
            let inner = tracing::info_span!("rpc", request_id = "inner");
            let _inner = inner.enter();
            tracing::warn!("nested");
        });
        let line = &lines(&buffer)[0];
        assert_eq!(line["request_id"], "inner");
        assert_eq!(line["trace_id"], "t");
    }
}
