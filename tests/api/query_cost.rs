//! Query cost: list fields count by the page they ask for, a request over the maximum is refused before
//! it runs, and each credential (a session's user, an API key) has a budget of points a minute, shared
//! by every instance and by HTTP and the WebSocket, spent by queries and mutations (not invocations,
//! which keep to their call rate), reported by `rateLimit`, `extensions.cost` and the `X-RateLimit-*`
//! headers.

use std::time::Duration;

use futures_util::SinkExt;
use joyfull_hub::config::Secret;
use joyfull_hub::pacing::slices;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::upstream::Upstream;
use crate::helpers::{Catalogue, TestApp, error_code};

const TOOLS: &str = "query($first: Int) { tools(first: $first) { nodes { id name slug description } } rateLimit { cost remaining limit resetAt } }";

async fn post(app: &TestApp, credential: &str, body: Value) -> (reqwest::header::HeaderMap, Value) {
    let response = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(credential)
        .json(&body)
        .send()
        .await
        .expect("POST /graphql");
    let headers = response.headers().clone();
    (headers, response.json().await.expect("a JSON body"))
}

fn cost(body: &Value) -> u64 {
    body["data"]["rateLimit"]["cost"]
        .as_u64()
        .unwrap_or_else(|| panic!("a cost: {body}"))
}

#[tokio::test]
async fn a_list_field_costs_its_selection_once_per_item_of_the_page() {
    let app = TestApp::spawn_with(|config| config.graphql.points_per_minute = 60_000).await;
    let ada = app.register("Ada", "ada@example.com").await;

    let (_, one) = post(
        &app,
        &ada.access_token,
        json!({ "query": TOOLS, "variables": { "first": 1 } }),
    )
    .await;
    let (_, ten) = post(
        &app,
        &ada.access_token,
        json!({ "query": TOOLS, "variables": { "first": 10 } }),
    )
    .await;
    let (_, default) = post(&app, &ada.access_token, json!({ "query": TOOLS })).await;

    // Per item: nodes' 4 fields and `nodes` itself; plus the field, plus rateLimit's 4 and itself.
    assert_eq!(cost(&ten) - cost(&one), 9 * 5, "{one} {ten}");
    assert_eq!(cost(&default) - cost(&one), 19 * 5);
    assert!(
        ten["data"]["rateLimit"]["remaining"].as_u64()
            < one["data"]["rateLimit"]["remaining"].as_u64(),
        "points are spent: {one} {ten}"
    );
    assert_eq!(ten["data"]["rateLimit"]["limit"], 60_000);
}

#[tokio::test]
async fn a_request_over_the_maximum_is_refused_before_it_runs() {
    let app = TestApp::spawn_with(|config| {
        config.graphql.points_per_minute = 60_000;
        config.graphql.max_complexity = 200;
    })
    .await;
    let ada = app.register("Ada", "ada@example.com").await;
    // 100 tools of 5 points each is 500: over 200, however few tools exist.
    let (_, body) = post(
        &app,
        &ada.access_token,
        json!({ "query": TOOLS, "variables": { "first": 100 } }),
    )
    .await;

    assert_eq!(error_code(&body), "QUERY_TOO_COMPLEX", "{body}");
    assert!(body["data"].is_null());
}

#[tokio::test]
async fn a_credentials_budget_refuses_what_does_not_fit_and_says_so_everywhere() {
    // 600 points a minute: a burst of 100, then 10 a second.
    let app = TestApp::spawn_with(|config| config.graphql.points_per_minute = 600).await;
    let ada = app.register("Ada", "ada@example.com").await;
    let key = app.api_key(&ada.access_token).await;
    // The key's creation spent from Ada's budget too; a new minute's burst starts the test.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let asked =
        json!({ "query": TOOLS, "variables": { "first": 10 }, "extensions": { "cost": true } });

    let (headers, first) = post(&app, &ada.access_token, asked.clone()).await;
    let mut refused = None;
    for _ in 0..10 {
        let (headers, body) = post(&app, &ada.access_token, asked.clone()).await;
        if body["errors"].is_array() {
            refused = Some((headers, body));
            break;
        }
    }
    let (refused_headers, refused) = refused.expect("the budget runs out");
    let (_, by_key) = post(&app, &key, asked.clone()).await;

    let spent = cost(&first);
    assert_eq!(first["extensions"]["cost"]["cost"], spent, "{first}");
    assert_eq!(headers["x-ratelimit-limit"], "600");
    assert_eq!(
        headers["x-ratelimit-remaining"].to_str().unwrap(),
        (100 - spent).to_string(),
        "{first}"
    );
    assert_eq!(first["extensions"]["cost"]["remaining"], 100 - spent);
    assert_eq!(error_code(&refused), "RATE_LIMITED", "{refused}");
    assert!(
        refused["data"].is_null(),
        "refused before it ran: {refused}"
    );
    let retry = refused["errors"][0]["extensions"]["retryAfter"]
        .as_u64()
        .unwrap();
    assert!((1..=10).contains(&retry), "{refused}");
    assert_eq!(
        refused_headers["retry-after"].to_str().unwrap(),
        retry.to_string()
    );
    assert!(
        by_key["errors"].is_null(),
        "the key has a budget of its own: {by_key}"
    );
}

/// Two instances on one database, each credential with 600 points a minute (a burst of 100).
async fn two_instances_at_600_points() -> (TestApp, TestApp) {
    let first = TestApp::spawn_with(|config| config.graphql.points_per_minute = 600).await;
    let url = first.db.url.clone();
    let second = TestApp::spawn_with(move |config| {
        config.graphql.points_per_minute = 600;
        config.database_url = Some(Secret::new(url));
    })
    .await;
    (first, second)
}

/// At 600 points a minute, `spent` since `started` (the database's clock, which paces the points) is
/// at most a burst and what the time earned.
async fn assert_within_one_budget(app: &TestApp, spent: u64, started: i64) {
    let elapsed_ms = app.database_clock_ms().await - started;
    let earned = u64::try_from(elapsed_ms).unwrap().div_ceil(100);
    assert!(
        spent <= 100 + earned,
        "one burst of 100 points and what {earned} points' time earned ({elapsed_ms} ms), across both instances: {spent}"
    );
}

#[tokio::test]
async fn two_instances_spend_one_budget() {
    let (first, second) = two_instances_at_600_points().await;
    let ada = first.register("Ada", "ada@example.com").await;
    let key = first.api_key(&ada.access_token).await;
    // About 31 points a request: three fit the burst of 100.
    let asked = json!({ "query": TOOLS, "variables": { "first": 5 } });

    let started = first.database_clock_ms().await;
    let mut spent = 0;
    let mut answered = 0;
    for n in 0..20 {
        let app = if n % 2 == 0 { &first } else { &second };
        let (_, body) = post(app, &key, asked.clone()).await;
        if body["errors"].is_null() {
            spent += cost(&body);
            answered += 1;
        }
    }

    assert!(answered >= 2, "{answered}");
    assert_within_one_budget(&first, spent, started).await;
}

#[tokio::test]
async fn parallel_requests_on_two_instances_spend_no_more_than_the_budget() {
    let (first, second) = two_instances_at_600_points().await;
    let ada = first.register("Ada", "ada@example.com").await;
    let key = first.api_key(&ada.access_token).await;
    let asked = json!({ "query": "{ __typename }", "extensions": { "cost": true } });

    let started = first.database_clock_ms().await;
    // Waves of parallel requests, so slices are leased, spent and leased again on both instances.
    let mut spent = 0;
    for _ in 0..4 {
        let wave = (0..60).map(|n| {
            let app = if n % 2 == 0 { &first } else { &second };
            post(app, &key, asked.clone())
        });
        for (_, body) in futures_util::future::join_all(wave).await {
            if body["errors"].is_null() {
                spent += body["extensions"]["cost"]["cost"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("a cost: {body}"));
            } else {
                assert_eq!(error_code(&body), "RATE_LIMITED", "{body}");
            }
        }
    }

    assert!(spent >= 50, "most of the burst is spent: {spent}");
    assert_within_one_budget(&first, spent, started).await;
}

#[tokio::test]
async fn a_busy_credentials_unspent_slice_is_given_back_once_idle() {
    // One point every 100 ms, a burst of 100.
    let app = TestApp::spawn_with(|config| config.graphql.points_per_minute = 600).await;
    let ada = app.register("Ada", "ada@example.com").await;
    let asked = json!({ "query": "{ __typename }", "extensions": { "cost": true } });
    let (_, body) = post(&app, &ada.access_token, asked.clone()).await;
    assert_eq!(body["extensions"]["cost"]["cost"], 1, "{body}");
    let after_one = points_tat(&app).await;

    // In quick succession, so the instance leases slices beyond each request's cost.
    for _ in 1..30 {
        let (_, body) = post(&app, &ada.access_token, asked.clone()).await;
        assert!(body["errors"].is_null(), "{body}");
    }
    let spent_only = after_one + 29 * 100_000;
    let held = points_tat(&app).await;
    assert!(
        held >= spent_only + 100_000,
        "the pace counts a slice leased beyond the 30 points spent: {} µs ahead of them",
        held - spent_only
    );

    tokio::time::sleep(slices::IDLE + Duration::from_millis(800)).await;
    assert_eq!(
        points_tat(&app).await,
        spent_only,
        "once idle, the unspent slice is given back: the pace counts exactly the 30 points spent"
    );
}

/// Where Ada's points budget stands: its theoretical arrival time, in microseconds.
async fn points_tat(app: &TestApp) -> i64 {
    app.sql_number(
        "SELECT (extract(epoch FROM p.tat) * 1000000)::bigint AS n FROM request_pacing p \
         JOIN users u ON p.subject = 'points:user:' || u.id WHERE u.email = 'ada@example.com'",
    )
    .await
}

#[tokio::test]
async fn a_mutation_spends_points_and_an_invocation_keeps_to_its_call_rate() {
    let app = TestApp::spawn_with(|config| {
        config.graphql.points_per_minute = 600;
        config.gateway.enforce_request_rates = true;
    })
    .await;
    let upstream = Upstream::start().await;
    let Catalogue {
        tool, user: ada, ..
    } = app.catalogue(upstream.url("/ten")).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (created_headers, created) = post(
        &app,
        &ada.access_token,
        json!({ "query": "mutation { createApiKey(input: {name: \"ci\"}) { key apiKey { id name } } }" }),
    )
    .await;
    let after_mutation = points_tat(&app).await;
    let (invoked_headers, invoked) = post(
        &app,
        &ada.access_token,
        json!({
            "query": "mutation($t: ID!) { invokeTool(toolId: $t, input: {}) { status } }",
            "variables": { "t": tool }
        }),
    )
    .await;
    let after_invocation = points_tat(&app).await;

    assert!(created["errors"].is_null(), "{created}");
    assert_eq!(created_headers["x-ratelimit-limit"], "600");
    let remaining: u64 = created_headers["x-ratelimit-remaining"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        remaining < 100,
        "the mutation spent points: {remaining} of a burst of 100"
    );
    assert_eq!(
        invoked["data"]["invokeTool"]["status"], "SUCCESS",
        "{invoked}"
    );
    assert_eq!(
        invoked_headers["x-ratelimit-limit"], "10",
        "an invocation reports the Free plan's call rate"
    );
    assert_eq!(
        after_invocation, after_mutation,
        "an invocation spends no points"
    );
}

#[tokio::test]
async fn queries_over_the_websocket_spend_the_same_budget() {
    let app = TestApp::spawn_with(|config| config.graphql.points_per_minute = 600).await;
    let ada = app.register("Ada", "ada@example.com").await;
    let mut socket = crate::helpers::ws::connect(&app).await;
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", ada.access_token) } });
    socket.send(Message::text(init.to_string())).await.unwrap();

    let mut refused = None;
    for n in 0..10 {
        let id = n.to_string();
        let subscribe = json!({ "id": id, "type": "subscribe", "payload": { "query": TOOLS, "variables": { "first": 10 } } });
        socket
            .send(Message::text(subscribe.to_string()))
            .await
            .unwrap();
        let answer = loop {
            let value = crate::helpers::ws::next_json(&mut socket).await;
            if value["id"] == id.as_str() && value["type"] != "complete" {
                break value;
            }
        };
        let errors = &answer["payload"]["errors"];
        if errors.is_array() || answer["type"] == "error" {
            refused = Some(answer);
            break;
        }
        assert!(
            answer["payload"]["data"]["rateLimit"]["cost"].as_u64() > Some(0),
            "{answer}"
        );
    }
    let (_, over_http) = post(
        &app,
        &ada.access_token,
        json!({ "query": TOOLS, "variables": { "first": 10 } }),
    )
    .await;

    let refused = refused.expect("the budget runs out over the socket");
    assert!(refused.to_string().contains("RATE_LIMITED"), "{refused}");
    assert_eq!(
        error_code(&over_http),
        "RATE_LIMITED",
        "the socket spent the budget HTTP requests share: {over_http}"
    );
}
