//! Calls that no limit constrains (a plan without a token limit or an enforced rate, a credential
//! without limits of its own) reserve nothing: no reservation statement runs before the upstream. They
//! are still charged and logged, and a change that brings a limit back (to the plan, or to the user's
//! subscription, on any instance or straight in the database) is obeyed by every instance.

use std::time::{Duration, Instant};

use joyfull_hub::config::Secret;
use serde_json::json;

use crate::helpers::upstream::Upstream;
use crate::helpers::{TestApp, error_code};

async fn tokens_used(app: &TestApp) -> i64 {
    app.sql_number(
        "SELECT s.tokens_used AS n FROM subscriptions s JOIN users u ON u.id = s.user_id \
         WHERE u.email = 'ada@example.com' AND s.status <> 'EXPIRED'",
    )
    .await
}

async fn move_ada_to(app: &TestApp, tier: &str) {
    app.sql(&format!(
        "UPDATE subscriptions SET tier = '{tier}' WHERE status <> 'EXPIRED' AND user_id = \
         (SELECT id FROM users WHERE email = 'ada@example.com')"
    ))
    .await;
}

#[tokio::test]
async fn a_call_no_limit_constrains_reserves_nothing_and_is_still_charged() {
    let upstream = Upstream::start().await;
    let app = TestApp::spawn().await;
    let catalogue = app.catalogue(upstream.url("/ok")).await;
    app.count_reservations().await;
    let ada = &catalogue.user.access_token;

    // On the Free plan (a token limit), a call reserves.
    let body = app.invoke(ada, &catalogue.tool, json!({}), None).await;
    assert!(body["errors"].is_null(), "{body}");
    assert_eq!(app.reservations_made().await, 1);
    let used_on_free = tokens_used(&app).await;
    assert!(used_on_free > 0);

    // On Enterprise (no token limit, rates not enforced here), none does; the tokens still count.
    move_ada_to(&app, "ENTERPRISE").await;
    app.state.caches.sync(&app.state.pool).await.unwrap();
    let mut charged = 0;
    for _ in 0..5 {
        let body = app.invoke(ada, &catalogue.tool, json!({}), None).await;
        assert!(body["errors"].is_null(), "{body}");
        charged += body["data"]["invokeTool"]["tokensUsed"].as_i64().unwrap();
    }
    assert_eq!(
        app.reservations_made().await,
        1,
        "no reservation for unlimited calls"
    );
    assert_eq!(tokens_used(&app).await, used_on_free + charged);
    assert_eq!(
        app.sql_number("SELECT count(*) AS n FROM usage_events")
            .await,
        6,
        "every call is in the usage log"
    );

    // An administrator gives Enterprise a limit: the next call reserves again.
    let update =
        "mutation { updatePlan(tier: ENTERPRISE, input: {tokenLimit: 1000000}) { tokenLimit } }";
    let updated = app
        .graphql_as(&catalogue.root.access_token, update, json!({}))
        .await;
    assert!(updated["errors"].is_null(), "{updated}");
    let body = app.invoke(ada, &catalogue.tool, json!({}), None).await;
    assert!(body["errors"].is_null(), "{body}");
    assert_eq!(app.reservations_made().await, 2);
}

/// Polls `check` on calls through `app` for up to two seconds.
async fn within_two_seconds(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !check().await {
        assert!(Instant::now() < deadline, "{what} within two seconds");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_limit_brought_back_anywhere_binds_every_instance() {
    let upstream = Upstream::start().await;
    let first = TestApp::spawn().await;
    let url = first.db.url.clone();
    let second = TestApp::spawn_with(move |config| {
        config.database_url = Some(Secret::new(url));
    })
    .await;
    let catalogue = first.catalogue(upstream.url("/ok")).await;
    first.count_reservations().await;
    move_ada_to(&first, "ENTERPRISE").await;
    // An API key (without limits of its own), since each instance signs its own access tokens here.
    let ada = first.api_key(&catalogue.user.access_token).await;
    let tool = catalogue.tool.clone();

    // The second instance has Ada's unlimited entitlement in memory.
    within_two_seconds("unlimited calls on the second instance", async || {
        let body = second.invoke(&ada, &tool, json!({}), None).await;
        assert!(body["errors"].is_null(), "{body}");
        first.reservations_made().await == 0
    })
    .await;

    // Straight in the database, Ada moves to Free: the second instance reserves again.
    move_ada_to(&first, "FREE").await;
    within_two_seconds("a reservation on the second instance", async || {
        let body = second.invoke(&ada, &tool, json!({}), None).await;
        assert!(body["errors"].is_null(), "{body}");
        first.reservations_made().await > 0
    })
    .await;

    // Back on Enterprise, then the first instance gives the plan a limit too small for a call.
    move_ada_to(&first, "ENTERPRISE").await;
    second.state.caches.sync(&second.state.pool).await.unwrap();
    let body = second.invoke(&ada, &tool, json!({}), None).await;
    assert!(body["errors"].is_null(), "{body}");
    let update = "mutation { updatePlan(tier: ENTERPRISE, input: {tokenLimit: 1}) { tokenLimit } }";
    let updated = first
        .graphql_as(&catalogue.root.access_token, update, json!({}))
        .await;
    assert!(updated["errors"].is_null(), "{updated}");
    within_two_seconds("the new limit on the second instance", async || {
        let body = second.invoke(&ada, &tool, json!({}), None).await;
        body["errors"].is_array() && error_code(&body) == "QUOTA_EXCEEDED"
    })
    .await;
}

#[tokio::test]
async fn an_entitlement_in_memory_ends_when_its_grace_does() {
    let upstream = Upstream::start().await;
    let app = TestApp::spawn().await;
    let catalogue = app.catalogue(upstream.url("/ok")).await;
    app.count_reservations().await;
    let ada = &catalogue.user.access_token;
    // Enterprise with a failed payment: access goes on for the grace, an hour from billing's "now".
    let grace_end = joyfull_hub::clock::Clock::now(app.clock.as_ref()) + chrono::Duration::hours(1);
    app.sql(&format!(
        "UPDATE subscriptions SET tier = 'ENTERPRISE', status = 'PAST_DUE', grace_ends_at = '{}' \
         WHERE status <> 'EXPIRED' AND user_id = '{}'",
        grace_end.to_rfc3339(),
        catalogue.user.id
    ))
    .await;
    app.state.caches.sync(&app.state.pool).await.unwrap();
    let body = app.invoke(ada, &catalogue.tool, json!({}), None).await;
    assert!(body["errors"].is_null(), "{body}");
    assert_eq!(
        app.reservations_made().await,
        0,
        "unlimited during the grace"
    );

    // Past the grace, the entitlement held in memory grants nothing: the call goes to billing.
    app.clock.advance(chrono::Duration::hours(2));
    let body = app.invoke(ada, &catalogue.tool, json!({}), None).await;
    let on_enterprise = app
        .sql_number(&format!(
            "SELECT count(*) AS n FROM usage_events WHERE user_id = '{}' AND status = 'SUCCESS' \
             AND subscription_id IN (SELECT id FROM subscriptions WHERE tier = 'ENTERPRISE')",
            catalogue.user.id
        ))
        .await;
    assert_eq!(
        on_enterprise, 1,
        "no call is charged to the lapsed plan: {body}"
    );
}

#[tokio::test]
async fn a_call_no_limit_constrains_settles_its_idempotency_key() {
    let upstream = Upstream::start().await;
    let app = TestApp::spawn().await;
    let catalogue = app.catalogue(upstream.url("/flaky")).await;
    move_ada_to(&app, "ENTERPRISE").await;
    app.state.caches.sync(&app.state.pool).await.unwrap();
    app.count_reservations().await;
    let ada = &catalogue.user.access_token;

    // A failed call frees its key, so a retry with it runs again.
    upstream.fail_next(1000);
    let failed = app
        .invoke(ada, &catalogue.tool, json!({}), Some("job-7"))
        .await;
    assert!(!failed["errors"].is_null(), "{failed}");
    upstream.fail_next(0);
    let retried = app
        .invoke(ada, &catalogue.tool, json!({}), Some("job-7"))
        .await;
    assert!(retried["errors"].is_null(), "{retried}");
    assert_eq!(retried["data"]["invokeTool"]["replayed"], false);

    // A completed call keeps its answer: the same key replays it without calling again.
    let calls = upstream.calls();
    let repeat = app
        .invoke(ada, &catalogue.tool, json!({}), Some("job-7"))
        .await;
    assert_eq!(repeat["data"]["invokeTool"]["replayed"], true, "{repeat}");
    assert_eq!(
        repeat["data"]["invokeTool"]["id"],
        retried["data"]["invokeTool"]["id"]
    );
    assert_eq!(upstream.calls(), calls);
    assert_eq!(app.reservations_made().await, 0, "no call reserved");
}
