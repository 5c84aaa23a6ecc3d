//! What the gateway tells about failing upstreams: the `gateway_circuit_open` gauge, and platform events
//! for administrators when a tool's circuit opens or its upstream fails in a burst.

use std::time::Instant;

use serde_json::json;

use super::breaker::Transition;
use crate::app::AppState;
use crate::error::AppError;
use crate::notifications::model::EventType;
use crate::tools::model::ToolRow;

/// Shows a tool's circuit in `gateway_circuit_open` (1 open, 0 closed) when it changes, and tells the
/// administrators when it opens.
pub fn circuit_changed(app: &AppState, tool: &ToolRow, transition: Option<Transition>) {
    let open = match transition {
        Some(Transition::Opened) => 1.0,
        Some(Transition::Closed) => 0.0,
        None => return,
    };
    metrics::gauge!("gateway_circuit_open", "tool" => tool.slug.clone()).set(open);
    if open > 0.0 {
        tell_administrators(app, tool, EventType::ToolCircuitOpened, json!({}));
    }
}

/// Records a platform event about `tool` (once per tool and type per ten minutes, however many
/// instances saw it), from a task of its own: the call that caused it does not wait.
fn tell_administrators(
    app: &AppState,
    tool: &ToolRow,
    event: EventType,
    details: serde_json::Value,
) {
    let (app, id, name, slug) = (app.clone(), tool.id, tool.name.clone(), tool.slug.clone());
    tokio::spawn(async move {
        let window = app.clock.now().timestamp() / 600;
        let mut payload = json!({ "toolId": id, "toolName": name, "toolSlug": slug });
        if let (Some(fields), serde_json::Value::Object(extra)) = (payload.as_object_mut(), details)
        {
            fields.extend(extra);
        }
        let recorded = async {
            let mut conn = app.pool.get().await?;
            let key = format!("{event}:{id}:{window}");
            crate::notifications::record::record_once_in(&mut conn, event, None, payload, &key)
                .await?;
            Ok::<(), AppError>(())
        };
        if let Err(e) = recorded.await {
            tracing::warn!(error = %e.public_message(), %event, "could not record a platform event");
        }
    });
}

/// Counts an upstream failure of `tool` toward a burst, and tells administrators when one completes.
pub fn upstream_failed(app: &AppState, tool: &ToolRow) {
    if app.bursts.failed(tool.id, Instant::now()) {
        let failures = json!({
            "failures": super::bursts::BURST,
            "windowSeconds": super::bursts::WINDOW.as_secs(),
        });
        tell_administrators(app, tool, EventType::ToolUpstreamFailures, failures);
    }
}
