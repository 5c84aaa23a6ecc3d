//! The line logged when a request finishes, the most frequent line there is. With JSON logs it is
//! written here, in the shape of every other line (`fields`, `target`, and the request's id under
//! `span`), because formatting it through the subscriber cost a request about a fifth of its time;
//! otherwise it is an ordinary event of the request's span.

use std::fmt::Write as _;

use super::log_writer;

/// The target the line is logged under, for `RUST_LOG`.
const TARGET: &str = "joyfull_hub::http::middleware";

/// Logs that the request `request_id` (inside `span`) finished.
pub fn request_finished(
    span: &tracing::Span,
    request_id: &str,
    method: &axum::http::Method,
    path: &str,
    status: u16,
    latency_ms: f64,
) {
    if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
        return;
    }
    let Some(lines) = log_writer::json_lines() else {
        span.in_scope(|| {
            tracing::info!(
                target: TARGET,
                method = %method,
                path = %path,
                status,
                latency_ms,
                "request finished"
            );
        });
        return;
    };
    let mut line = String::with_capacity(256);
    let _ = write!(
        line,
        "{{\"timestamp\":\"{}\",\"level\":\"INFO\",\"fields\":{{\"message\":\"request finished\",\"method\":{},\"path\":{},\"status\":{status},\"latency_ms\":{latency_ms}}},\"target\":\"{TARGET}\",\"span\":{{\"request_id\":{},\"name\":\"request\"}}}}",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        json_string(method.as_str()),
        json_string(path),
        json_string(request_id),
    );
    line.push('\n');
    lines.append(line.as_bytes());
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_owned())
}

#[cfg(test)]
mod tests {
    use super::json_string;

    #[test]
    fn strings_are_escaped_as_json() {
        assert_eq!(json_string("/a\"b\n"), "\"/a\\\"b\\n\"");
    }
}
