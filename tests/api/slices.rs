//! Slices (`billing::slices`): a busy user's instance leases a slice of what is left of their tokens
//! and rate and grants calls from it without a round trip each. Every token is still charged, the
//! limit holds across instances, what a slice held unspent comes back, and a change to the
//! subscription ends a slice at once.

use std::sync::Arc;

use joyfull_hub::config::Secret;
use serde_json::{Value, json};

use crate::helpers::upstream::Upstream;
use crate::helpers::{TestApp, error_code};

fn succeeded(body: &Value) -> bool {
    body["data"]["invokeTool"]["status"] == "SUCCESS"
}

#[tokio::test]
async fn a_busy_users_calls_draw_on_slices_and_every_token_is_charged() {
    let upstream = Upstream::start().await;
    let app = TestApp::spawn().await;
    let catalogue = app.catalogue(upstream.url("/ten")).await;
    app.count_reservations().await;
    // Far from the limit: a call reserves 1 000 tokens (the tool's maximum per call).
    app.sql("UPDATE plans SET token_limit = 10000000 WHERE tier = 'FREE'")
        .await;
    let ada = &catalogue.user.access_token;

    let mut charged = 0;
    for _ in 0..40 {
        let body = app.invoke(ada, &catalogue.tool, json!({}), None).await;
        assert!(succeeded(&body), "{body}");
        charged += body["data"]["invokeTool"]["tokensUsed"].as_i64().unwrap();
    }

    let reservations = app.reservations_made().await;
    assert!(
        reservations <= 10,
        "slices doubling from one call to the next: {reservations} reservations for 40 calls"
    );
    assert_eq!(
        app.sql_number("SELECT tokens_used AS n FROM subscriptions")
            .await,
        charged
    );
    assert_eq!(
        app.sql_number("SELECT count(*) AS n FROM usage_events")
            .await,
        40
    );
    assert_eq!(
        app.tokens_reserved_once_idle().await,
        0,
        "the last slice's unspent tokens come back"
    );
    assert_eq!(
        app.sql_number("SELECT count(*) AS n FROM quota_reservations")
            .await,
        0,
        "and its row goes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_drawing_on_slices_never_pass_the_limit_and_lose_nothing() {
    let upstream = Upstream::start().await;
    let first = TestApp::spawn().await;
    let url = first.db.url.clone();
    let second =
        TestApp::spawn_with(move |config| config.database_url = Some(Secret::new(url))).await;
    let catalogue = first.catalogue(upstream.url("/ten")).await;
    // Each call reserves and uses 10 tokens: 100 calls fit.
    first
        .sql(&format!(
            "UPDATE tools SET estimated_tokens = 10, max_tokens_per_call = 10 WHERE id = '{}'",
            catalogue.tool
        ))
        .await;
    first
        .sql("UPDATE plans SET token_limit = 1000 WHERE tier = 'FREE'")
        .await;
    // An API key (without limits of its own), since each instance signs its own access tokens here.
    let key = first.api_key(&catalogue.user.access_token).await;
    let apps = Arc::new([first, second]);

    let mut admitted: i64 = 0;
    for _wave in 0..3 {
        let calls: Vec<_> = (0..60)
            .map(|call| {
                let (apps, key, tool) = (apps.clone(), key.clone(), catalogue.tool.clone());
                tokio::spawn(
                    async move { apps[call % 2].invoke(&key, &tool, json!({}), None).await },
                )
            })
            .collect();
        for call in calls {
            let body = call.await.unwrap();
            if succeeded(&body) {
                admitted += 1;
            } else {
                assert_eq!(error_code(&body), "QUOTA_EXCEEDED", "{body}");
            }
        }
        let used = apps[0]
            .sql_number("SELECT tokens_used AS n FROM subscriptions")
            .await;
        assert_eq!(used, 10 * admitted, "every admitted call is charged");
        assert!(used <= 1000, "never past the limit: {used}");
    }

    // What slices held unspent comes back, after which the rest of the limit is there to use.
    assert_eq!(apps[0].tokens_reserved_once_idle().await, 0);
    assert_eq!(apps[1].tokens_reserved_once_idle().await, 0);
    loop {
        let body = apps[usize::from(admitted % 2 == 1)]
            .invoke(&key, &catalogue.tool, json!({}), None)
            .await;
        if !succeeded(&body) {
            assert_eq!(error_code(&body), "QUOTA_EXCEEDED", "{body}");
            break;
        }
        admitted += 1;
    }
    assert_eq!(admitted, 100, "every token of the limit was usable");
    assert_eq!(
        apps[0]
            .sql_number("SELECT tokens_used AS n FROM subscriptions")
            .await,
        1000
    );
}

#[tokio::test]
async fn a_change_to_the_plan_or_the_subscription_ends_a_slice_at_once() {
    let upstream = Upstream::start().await;
    let app = TestApp::spawn().await;
    let catalogue = app.catalogue(upstream.url("/ten")).await;
    let ada = &catalogue.user.access_token;
    app.sql("UPDATE plans SET token_limit = 10000000 WHERE tier = 'FREE'")
        .await;
    // Enough quick calls for a slice that covers many more.
    for _ in 0..12 {
        let body = app.invoke(ada, &catalogue.tool, json!({}), None).await;
        assert!(succeeded(&body), "{body}");
    }
    let held = app
        .sql_number("SELECT coalesce(max(tokens), 0)::bigint AS n FROM quota_reservations")
        .await;
    assert!(held > 0, "a slice is held");

    // Straight in the database, the plan's limit drops below what was used: the subscription is the
    // same, but the slice in memory no longer grants.
    app.sql("UPDATE plans SET token_limit = 1 WHERE tier = 'FREE'")
        .await;
    app.state.caches.sync(&app.state.pool).await.unwrap();
    let body = app.invoke(ada, &catalogue.tool, json!({}), None).await;
    assert_eq!(error_code(&body), "QUOTA_EXCEEDED", "{body}");

    // Back to a large limit, a slice again; then the subscription ends.
    app.sql("UPDATE plans SET token_limit = 10000000 WHERE tier = 'FREE'")
        .await;
    app.state.caches.sync(&app.state.pool).await.unwrap();
    for _ in 0..12 {
        let body = app.invoke(ada, &catalogue.tool, json!({}), None).await;
        assert!(succeeded(&body), "{body}");
    }
    app.sql("UPDATE subscriptions SET status = 'EXPIRED'").await;
    app.state.caches.sync(&app.state.pool).await.unwrap();
    let body = app.invoke(ada, &catalogue.tool, json!({}), None).await;
    assert!(!succeeded(&body), "{body}");
    assert_eq!(error_code(&body), "SUBSCRIPTION_REQUIRED", "{body}");
}
