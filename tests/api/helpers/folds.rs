//! Where the fold of the daily rollups into monthly ones stands (`usage::fold`), set by a test.

use chrono::{NaiveDate, NaiveTime};

use serde_json::json;

use super::metered::{Metered, metered};
use super::{TestApp, TestUser};

/// Folds the days before `day` into their months, as the sweeper does once the day after it has ended.
/// The calls metered before are rolled up first, so the daily rollups the fold reads hold them.
pub async fn fold_before(app: &TestApp, day: &str) {
    app.rolled_up().await;
    let day: NaiveDate = day.parse().unwrap();
    let now = day.succ_opt().unwrap().and_time(NaiveTime::MIN).and_utc();
    joyfull_hub::usage::service::fold_closed_days(&app.state, now)
        .await
        .expect("the fold");
}

/// Nothing folded yet: the months of the tests' days are read from the days until a test folds them.
pub async fn fold_nothing(app: &TestApp) {
    app.sql(
        "UPDATE platform_fold SET folded_before = '2025-01-01'; DELETE FROM platform_monthly; \
         DELETE FROM usage_monthly; DELETE FROM usage_day_totals",
    )
    .await;
}

/// The usual metering setting with nothing folded, after four calls of Ada's: three of its tool that
/// succeed and one of a tool whose upstream fails.
pub async fn four_calls_unfolded() -> Metered {
    let setting = metered().await;
    let Metered {
        app,
        upstream,
        root,
        tool,
        ada,
    } = &setting;
    fold_nothing(app).await;
    let failing = app
        .create_tool(
            root,
            json!({ "name": "Bad", "endpoint": upstream.url("/fail") }),
        )
        .await;
    for _ in 0..3 {
        app.invoke(&ada.access_token, tool, json!({}), None).await;
    }
    app.invoke(&ada.access_token, &failing, json!({}), None)
        .await;
    setting
}

/// An app with nothing folded, an admin (`root`) and two tools, A and B, that no test calls.
pub async fn two_tools_unfolded() -> (TestApp, TestUser, String, String) {
    let app = TestApp::spawn().await;
    fold_nothing(&app).await;
    let root = app.admin("root@example.com").await;
    let mut tools = Vec::new();
    for name in ["A", "B"] {
        let tool = app
            .create_tool(
                &root,
                json!({ "name": name, "endpoint": "http://127.0.0.1:9/" }),
            )
            .await;
        tools.push(tool);
    }
    let b = tools.pop().unwrap();
    let a = tools.pop().unwrap();
    (app, root, a, b)
}
