//! Log lines as JSON, one object per line, written without building any value in between:
//!
//! `{"timestamp":"…Z","level":"INFO","fields":{"message":"…",…},"target":"…","span":{…,"name":"…"}}`
//!
//! `span` is the innermost span the line was logged in, with that span's fields, led by the `request_id`
//! of the request the task serves, if it serves one (`request_id`); outside any span, that request
//! alone, named `request`; left out when there is neither. A span's fields are formatted once, when it
//! is made, as the inside of a JSON object (`"key":value,…`, see [`JsonPairs`]), so a line copies them
//! instead of parsing them again.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use super::request_id;

/// The format of a whole line.
pub struct JsonLine;

/// The format of a span's fields: JSON members without the braces around them.
pub struct JsonPairs;

impl<S> FormatEvent<S, JsonPairs> for JsonLine
where
    S: Subscriber + for<'lookup> LookupSpan<'lookup>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonPairs>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        write!(
            writer,
            "{{\"timestamp\":\"{}\",\"level\":\"{}\",\"fields\":{{",
            timestamp(),
            meta.level()
        )?;
        let mut fields = Members::new(&mut writer, false);
        event.record(&mut fields);
        fields.result?;
        writer.write_str("},\"target\":")?;
        write_str(&mut writer, meta.target())?;
        let span = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current());
        // Outside any span, a line the task logs while serving a request shows that request alone.
        let name = span
            .as_ref()
            .map(|span| span.name())
            .or_else(|| request_id::with_current(|_| request_id::SPAN_NAME));
        if let Some(name) = name {
            writer.write_str(",\"span\":{")?;
            // The request the task serves leads the span's own fields (see `request_id`).
            if let Some(written) = request_id::with_current(|id| {
                writer.write_str("\"request_id\":")?;
                write_str(&mut writer, id)?;
                writer.write_char(',')
            }) {
                written?;
            }
            if let Some(span) = &span
                && let Some(pairs) = span.extensions().get::<FormattedFields<JsonPairs>>()
                && !pairs.is_empty()
            {
                writer.write_str(pairs)?;
                writer.write_char(',')?;
            }
            writer.write_str("\"name\":")?;
            write_str(&mut writer, name)?;
            writer.write_char('}')?;
        }
        writer.write_str("}\n")
    }
}

impl<'writer> FormatFields<'writer> for JsonPairs {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut members = Members::new(&mut writer, false);
        fields.record(&mut members);
        members.result
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let started = !current.fields.is_empty();
        let mut members = Members::new(&mut current.fields, started);
        fields.record(&mut members);
        members.result
    }
}

/// Now, as `2026-12-06T05:06:12.682255Z`.
pub fn timestamp() -> impl fmt::Display {
    Timestamp(chrono::Utc::now())
}

struct Timestamp(chrono::DateTime<chrono::Utc>);

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use chrono::{Datelike, Timelike};
        let at = self.0;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            at.year(),
            at.month(),
            at.day(),
            at.hour(),
            at.minute(),
            at.second(),
            at.nanosecond() % 1_000_000_000 / 1_000
        )
    }
}

/// Writes fields as JSON members; when `started`, the writer already holds members, and a comma goes
/// before the first one written here.
struct Members<'w, W: fmt::Write> {
    writer: &'w mut W,
    started: bool,
    result: fmt::Result,
}

impl<'w, W: fmt::Write> Members<'w, W> {
    fn new(writer: &'w mut W, started: bool) -> Self {
        Self {
            writer,
            started,
            result: Ok(()),
        }
    }

    fn member(&mut self, field: &Field, value: impl FnOnce(&mut W) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        self.result = (|| {
            if self.started {
                self.writer.write_char(',')?;
            }
            self.started = true;
            write_str(self.writer, field.name())?;
            self.writer.write_char(':')?;
            value(self.writer)
        })();
    }
}

impl<W: fmt::Write> Visit for Members<'_, W> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.member(field, |w| {
            w.write_char('"')?;
            write!(Escaped(w), "{value:?}")?;
            w.write_char('"')
        });
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field, |w| write_str(w, value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.member(field, |w| {
            if value.is_finite() {
                write!(w, "{value}")
            } else {
                w.write_str("null")
            }
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, |w| write!(w, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, |w| write!(w, "{value}"));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.member(field, |w| write!(w, "{value}"));
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.member(field, |w| write!(w, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, |w| write!(w, "{value}"));
    }
}

/// Writes `text` as a JSON string, quotes included.
pub fn write_str(writer: &mut impl fmt::Write, text: &str) -> fmt::Result {
    writer.write_char('"')?;
    Escaped(&mut *writer).write_str(text)?;
    writer.write_char('"')
}

/// Escapes what is written through it as the inside of a JSON string.
struct Escaped<'w, W: fmt::Write + ?Sized>(&'w mut W);

impl<W: fmt::Write + ?Sized> fmt::Write for Escaped<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut plain = 0;
        for (at, byte) in text.bytes().enumerate() {
            let escape = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..0x20 => "",
                _ => continue,
            };
            self.0.write_str(&text[plain..at])?;
            if escape.is_empty() {
                write!(self.0, "\\u{byte:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            plain = at + 1;
        }
        self.0.write_str(&text[plain..])
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::{Value, json};
    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Lines {
        type Writer = Self;

        fn make_writer(&'a self) -> Self {
            self.clone()
        }
    }

    fn logged(log: impl FnOnce()) -> Vec<Value> {
        let lines = Lines::default();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_writer(lines.clone())
                .fmt_fields(JsonPairs)
                .event_format(JsonLine),
        );
        tracing::subscriber::with_default(subscriber, log);
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }

    #[test]
    fn a_line_holds_its_fields_target_and_innermost_span() {
        let lines = logged(|| {
            let outer = tracing::info_span!("request", request_id = "r-1");
            let _outer = outer.enter();
            let inner = tracing::info_span!("invocation", tool_id = %"t\"1", attempt = 2_u64);
            inner.record("outcome", "ok");
            let _inner = inner.enter();
            tracing::warn!(
                tokens = 13_i64,
                latency_ms = 0.5,
                ratio = f64::NAN,
                estimated = false,
                text = "tab\there\u{1}",
                "invocation \"metered\""
            );
        });
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["target"], "joyfull_hub::telemetry::json_lines::tests");
        assert_eq!(
            line["fields"],
            json!({
                "message": "invocation \"metered\"",
                "tokens": 13,
                "latency_ms": 0.5,
                "ratio": null,
                "estimated": false,
                "text": "tab\there\u{1}",
            })
        );
        assert_eq!(
            line["span"],
            json!({"tool_id": "t\"1", "attempt": 2, "name": "invocation"})
        );
        let stamp = line["timestamp"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(stamp).is_ok()
                && stamp.len() == "2026-12-06T05:06:12.682255Z".len()
                && stamp.ends_with('Z'),
            "{stamp}"
        );
    }

    #[test]
    fn a_span_recorded_later_or_without_fields_stays_an_object() {
        let lines = logged(|| {
            let span = tracing::info_span!("quiet", outcome = tracing::field::Empty);
            span.in_scope(|| tracing::info!("before"));
            span.record("outcome", "ok");
            span.in_scope(|| tracing::info!("after"));
            tracing::info!("outside");
        });
        assert_eq!(lines[0]["span"], json!({"name": "quiet"}));
        assert_eq!(lines[1]["span"], json!({"outcome": "ok", "name": "quiet"}));
        assert!(lines[2].get("span").is_none(), "{}", lines[2]);
    }

    #[tokio::test]
    async fn every_line_shows_the_request_its_task_serves() {
        let lines = request_id::scope("r\"9", async {
            logged(|| {
                tracing::info!("served");
                tracing::info_span!("invocation", tool_id = "t-2")
                    .in_scope(|| tracing::info!("inner"));
            })
        })
        .await;
        assert_eq!(
            lines[0]["span"],
            json!({"request_id": "r\"9", "name": "request"})
        );
        assert_eq!(
            lines[1]["span"],
            json!({"request_id": "r\"9", "tool_id": "t-2", "name": "invocation"})
        );
        assert!(logged(|| tracing::info!("idle"))[0].get("span").is_none());
    }

    #[test]
    fn strings_are_escaped_as_json() {
        let mut out = String::new();
        write_str(&mut out, "/a\"b\n\\\u{1f}é").unwrap();
        assert_eq!(out, "\"/a\\\"b\\n\\\\\\u001fé\"");
        assert_eq!(
            serde_json::from_str::<String>(&out).unwrap(),
            "/a\"b\n\\\u{1f}é"
        );
    }
}
