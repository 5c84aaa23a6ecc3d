//! Logs, metrics and traces. Logs are human-readable in development and JSON in production; every line written
//! while serving a request carries its `request_id`, through the request span or, for JSON lines without
//! trace export, the request's scope (`request_id`; see `http::middleware`).
//! Metrics are rendered in Prometheus text format at `/metrics`.

use std::collections::HashSet;
use std::io::IsTerminal;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, OnceLock};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::Level;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Layer as _, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

pub mod json_lines;
pub mod log_writer;
pub mod request_id;
pub mod request_line;
pub mod traces;

/// How many batches the GraphQL DataLoaders ran (per server instance), for tests.
#[derive(Default)]
pub struct LoaderStats {
    pub tool_batches: AtomicU64,
    pub subscription_batches: AtomicU64,
}

/// What must live until the process exits: dropping it sends the spans and writes the log lines still
/// buffered.
pub struct TelemetryGuard {
    _traces: Option<traces::TracePipeline>,
    _log: log_writer::LogFlush,
}

/// Installs the global subscriber: logs on standard output, written in batches (`log_writer`;
/// `RUST_LOG` overrides the default filter) and, with an OTLP endpoint, the hub's spans exported as
/// traces. Keep the returned guard until exit.
pub fn init(format: LogFormat, otlp_endpoint: Option<&str>) -> TelemetryGuard {
    let (writer, log_flush) = log_writer::BatchedStdout::start();
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,tower_http=warn,diesel_async=warn"));
    let (pipeline, trace_layer) = match otlp_endpoint.map(traces::pipeline) {
        Some(Ok((pipeline, tracer))) => {
            let spans = Targets::new().with_target("joyfull_hub", Level::INFO);
            let layer = tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(spans);
            (Some(pipeline), Some(layer))
        }
        Some(Err(e)) => {
            eprintln!("joyfull-hub: traces are off, the OTLP exporter cannot start: {e:#}");
            (None, None)
        }
        None => (None, None),
    };
    let registry = tracing_subscriber::registry().with(trace_layer);
    // A second initialisation (tests) keeps the first subscriber; that is fine.
    let _ = match format {
        LogFormat::Json => {
            writer.serve_json_lines();
            registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_writer(writer)
                        .fmt_fields(json_lines::JsonPairs)
                        .event_format(json_lines::JsonLine)
                        .with_filter(filter),
                )
                .try_init()
        }
        LogFormat::Pretty => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer)
                    .with_ansi(std::io::stdout().is_terminal())
                    .with_filter(filter),
            )
            .try_init(),
    };
    TelemetryGuard {
        _traces: pipeline,
        _log: log_flush,
    }
}

/// Latency buckets in seconds, from 1 ms to 30 s (the request timeout).
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
            }
            handle
        })
        .clone()
}

/// A label value set that stops growing at `capacity`: values seen after that are reported as
/// `other`, so clients cannot blow up the metrics' cardinality with made-up operation names.
pub struct BoundedLabels {
    capacity: usize,
    seen: Mutex<HashSet<String>>,
}

impl BoundedLabels {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            seen: Mutex::new(HashSet::new()),
        }
    }

    /// The label to use for `value`.
    pub fn label(&self, value: &str) -> String {
        let Ok(mut seen) = self.seen.lock() else {
            return "other".into();
        };
        if seen.contains(value) {
            return value.to_owned();
        }
        if seen.len() < self.capacity {
            seen.insert(value.to_owned());
            return value.to_owned();
        }
        "other".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_beyond_capacity_become_other() {
        let labels = BoundedLabels::new(2);
        assert_eq!(labels.label("a"), "a");
        assert_eq!(labels.label("b"), "b");
        assert_eq!(labels.label("c"), "other");
        assert_eq!(labels.label("a"), "a");
    }
}
