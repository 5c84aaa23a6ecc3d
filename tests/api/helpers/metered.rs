//! The usual setting of a metering test, ready to call.

use serde_json::json;

use super::upstream::Upstream;
use super::{TestApp, TestUser};

/// An app with an upstream, an admin (`root`), a tool that answers from the upstream, and Ada on the
/// free plan.
pub struct Metered {
    pub app: TestApp,
    pub upstream: Upstream,
    pub root: TestUser,
    pub tool: String,
    pub ada: TestUser,
}

pub async fn metered() -> Metered {
    let app = TestApp::spawn().await;
    let upstream = Upstream::start().await;
    let root = app.admin("root@example.com").await;
    let tool = app
        .create_tool(
            &root,
            json!({ "name": "Good", "endpoint": upstream.url("/ok") }),
        )
        .await;
    let ada = app.register("Ada", "ada@example.com").await;
    app.subscribe_free(&ada).await;
    Metered {
        app,
        upstream,
        root,
        tool,
        ada,
    }
}
