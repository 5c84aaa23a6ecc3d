//! Traces over OpenTelemetry, exported with OTLP/HTTP (protobuf) when `HUB_OTLP_ENDPOINT` is set;
//! unset, no exporter, no query spans and no propagation run.
//!
//! - Every HTTP request is a server span (`http::middleware`), continuing the W3C `traceparent` a
//!   client sent; GraphQL requests are named after their operation (`query Plans`).
//! - Each upstream call is a client span whose context travels to the tool's upstream as `traceparent`.
//! - Each SQL statement is a span named after its command (`SELECT`), with the statement's text and
//!   never its bound values.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http;
use diesel::connection::{Instrumentation, InstrumentationEvent};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The service name spans carry.
const SERVICE_NAME: &str = "joyfull-hub";

static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether spans are being exported (then work that only tracing needs is worth doing).
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The OTLP trace pipeline; dropping it sends what is still buffered.
pub struct TracePipeline {
    provider: SdkTracerProvider,
}

impl Drop for TracePipeline {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("joyfull-hub: the last spans could not be exported: {e}");
        }
    }
}

/// The URL spans are posted to, from the collector's base URL (`…/v1/traces` is added unless given).
pub fn traces_url(endpoint: &str) -> String {
    let endpoint = endpoint.trim_end_matches('/');
    if endpoint.ends_with("/v1/traces") {
        endpoint.to_owned()
    } else {
        format!("{endpoint}/v1/traces")
    }
}

/// Builds the exporter and the tracer provider for `endpoint`, and turns on query spans.
pub fn pipeline(
    endpoint: &str,
) -> anyhow::Result<(TracePipeline, opentelemetry_sdk::trace::Tracer)> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(traces_url(endpoint))
        .build()?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(SERVICE_NAME).build())
        .build();
    let tracer = provider.tracer(SERVICE_NAME);
    diesel::connection::set_default_instrumentation(|| Some(Box::new(QuerySpans::default())))?;
    EXPORTING.store(true, Ordering::Relaxed);
    Ok((TracePipeline { provider }, tracer))
}

/// Makes `span` continue the trace of a W3C `traceparent` (and `tracestate`) in `headers`.
pub fn continue_trace(span: &tracing::Span, headers: &http::HeaderMap) {
    if !headers.contains_key("traceparent") {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let _ = span.set_parent(parent);
}

/// Renames `span` in the exported trace (its `otel.name` can only be set before the span is entered).
pub fn rename(span: &tracing::Span, name: String) {
    if exporting() {
        span.context().span().update_name(name);
    }
}

/// Adds `traceparent` (and `tracestate`) naming `span` to outgoing `headers`.
pub fn propagate(span: &tracing::Span, headers: &mut http::HeaderMap) {
    if !exporting() {
        return;
    }
    let context = span.context();
    TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(headers));
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// One span per SQL statement of a connection, opened when the statement is built (inside the caller's
/// span) and closed when its result arrives. Statements a connection pipelines finish in order.
#[derive(Default)]
struct QuerySpans {
    open: VecDeque<tracing::Span>,
}

impl Instrumentation for QuerySpans {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartQuery { .. } => {
                self.open.push_back(tracing::info_span!(
                    "db.query",
                    otel.name = tracing::field::Empty,
                    otel.kind = "client",
                    db.system.name = "postgresql",
                    db.query.text = tracing::field::Empty,
                    error.type = tracing::field::Empty,
                ));
            }
            InstrumentationEvent::FinishQuery { query, error, .. } => {
                let Some(span) = self.open.pop_front() else {
                    return;
                };
                // The finished statement's text is its SQL alone, without bound values; literals in SQL
                // sent as text (set-up statements) are masked too.
                let text = mask_literals(&query.to_string());
                let command = text
                    .split_whitespace()
                    .next()
                    .unwrap_or("SQL")
                    .to_ascii_uppercase();
                span.record("otel.name", command.as_str());
                span.record("db.query.text", text.as_str());
                if error.is_some() {
                    span.record("error.type", "database_error");
                }
            }
            _ => {}
        }
    }
}

/// `sql` with every quoted string literal replaced by `'?'`.
fn mask_literals(sql: &str) -> String {
    let mut masked = String::with_capacity(sql.len());
    let mut in_literal = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match (in_literal, c) {
            (false, '\'') => {
                in_literal = true;
                masked.push_str("'?'");
            }
            (true, '\'') if chars.peek() == Some(&'\'') => {
                chars.next();
            }
            (true, '\'') => in_literal = false,
            (true, _) => {}
            (false, c) => masked.push(c),
        }
    }
    masked
}

#[cfg(test)]
mod tests {
    use super::{mask_literals, traces_url};

    #[test]
    fn string_literals_never_reach_a_span() {
        assert_eq!(
            mask_literals("ALTER ROLE app PASSWORD 'it''s secret' LOGIN"),
            "ALTER ROLE app PASSWORD '?' LOGIN"
        );
        assert_eq!(
            mask_literals("SELECT id FROM users WHERE email = $1"),
            "SELECT id FROM users WHERE email = $1"
        );
    }

    #[test]
    fn the_traces_path_is_added_to_a_base_url_once() {
        assert_eq!(
            traces_url("http://collector:4318"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://collector:4318/"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://collector:4318/v1/traces"),
            "http://collector:4318/v1/traces"
        );
    }
}
