//! The id of the request a task is serving, for JSON log lines.
//!
//! With JSON logs and no trace export, a request runs inside [`scope`] instead of a span: a span costs
//! every request its creation, its fields' formatting and an enter and exit at each poll, and a request
//! that logs nothing but its own finished line (`request_line`) needs none of that. Every line logged
//! while the task serves the request carries its id (`json_lines`): outside any span as
//! `"span":{"request_id":…,"name":"request"}`, the shape the request span gave it, and inside a span as
//! that span's first member.

use std::future::Future;

tokio::task_local! {
    static REQUEST_ID: Box<str>;
}

/// The span name the lines show for a request's scope.
pub const SPAN_NAME: &str = "request";

/// Runs `serving` with `id` as the request id of the lines it logs.
pub async fn scope<F: Future>(id: &str, serving: F) -> F::Output {
    REQUEST_ID.scope(id.into(), serving).await
}

/// Calls `with` with the request id of the task this runs in; `None` (and `with` not called) when the
/// task serves no request.
pub fn with_current<R>(with: impl FnOnce(&str) -> R) -> Option<R> {
    REQUEST_ID.try_with(|id| with(id)).ok()
}

#[cfg(test)]
mod tests {
    use super::{scope, with_current};

    #[tokio::test]
    async fn a_scope_serves_its_id_to_its_own_task_only() {
        assert_eq!(with_current(str::to_owned), None);
        let inside = scope("r-7", async { with_current(str::to_owned) }).await;
        assert_eq!(inside.as_deref(), Some("r-7"));
        let spawned = scope("r-8", async {
            tokio::spawn(async { with_current(str::to_owned) }).await
        })
        .await
        .unwrap();
        assert_eq!(spawned, None, "a spawned task is not the request's");
        assert_eq!(with_current(str::to_owned), None);
    }
}
