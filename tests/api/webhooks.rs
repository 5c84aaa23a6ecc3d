//! Signed webhooks against a real receiver that checks every signature with the documented algorithm:
//! test deliveries, event deliveries filtered by type, secret rotation with an overlap, retries with an
//! attempt log, redirects not followed, replays, disabling after a day of failures, and address rules.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::receiver::{Receiver, verify};
use crate::helpers::{TestApp, TestUser, error_code};

const CREATE: &str = "mutation($input: CreateWebhookEndpointInput!) { createWebhookEndpoint(input: $input) { secret endpoint { id url events enabled } } }";
const TEST: &str = "mutation($id: ID!) { sendTestWebhook(id: $id) { id messageId eventType status attemptCount nextAttemptAt lastStatusCode attempts { statusCode latencyMs excerpt } } }";
const DELIVERIES: &str = "query($id: ID!) { webhookDeliveries(endpointId: $id) { edges { node { id messageId eventType status attemptCount lastStatusCode lastError attempts { statusCode excerpt } } } } }";

async fn create(app: &TestApp, user: &TestUser, input: Value) -> Value {
    app.graphql_as(&user.access_token, CREATE, json!({ "input": input }))
        .await
}

async fn deliveries(app: &TestApp, user: &TestUser, endpoint: &str) -> Vec<Value> {
    let body = app
        .graphql_as(&user.access_token, DELIVERIES, json!({ "id": endpoint }))
        .await;
    body["data"]["webhookDeliveries"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|edge| edge["node"].clone())
        .collect()
}

#[tokio::test]
async fn deliveries_are_signed_filtered_by_type_and_signed_twice_while_a_rotated_secret_overlaps() {
    let receiver = Receiver::start().await;
    let app = TestApp::spawn().await;
    let user = app.register("Ada", "ada@example.com").await;
    let created = create(
        &app,
        &user,
        json!({ "url": receiver.url("/hooks"), "events": ["API_KEY_CREATED"], "description": "ops" }),
    )
    .await;
    let endpoint = &created["data"]["createWebhookEndpoint"];
    let secret = endpoint["secret"].as_str().unwrap().to_owned();
    let id = endpoint["endpoint"]["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{created}");
    assert_eq!(endpoint["endpoint"]["events"], json!(["API_KEY_CREATED"]));
    // The secret is shown once.
    let listed = app
        .graphql_as(
            &user.access_token,
            "{ webhookEndpoints { id url } }",
            json!({}),
        )
        .await;
    assert!(!listed.to_string().contains(&secret));
    assert_eq!(listed["data"]["webhookEndpoints"][0]["id"], id.as_str());

    let tested = app
        .graphql_as(&user.access_token, TEST, json!({ "id": id }))
        .await;
    let delivery = &tested["data"]["sendTestWebhook"];
    assert_eq!(delivery["status"], "DELIVERED", "{tested}");
    assert_eq!(delivery["attempts"][0]["statusCode"], 200);
    assert_eq!(delivery["attempts"][0]["excerpt"], "received");
    let received = receiver.wait_for(1).await;
    assert!(verify(&secret, &received[0]), "{:?}", received[0]);
    assert!(!verify(
        "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        &received[0]
    ));
    assert_eq!(received[0].id, delivery["messageId"].as_str().unwrap());
    assert_eq!(received[0].json()["type"], "webhook.test");

    // A key created is delivered; a key revoked is not (the endpoint takes API_KEY_CREATED only).
    let (_, key_id) = app.api_key_with_id(&user.access_token).await;
    let received = receiver.wait_for(2).await;
    let event = received[1].json();
    assert_eq!(event["type"], "api_key.created");
    assert_eq!(event["data"]["keyId"], key_id.as_str());
    assert!(event["timestamp"].is_string());
    assert!(verify(&secret, &received[1]));
    app.graphql_as(
        &user.access_token,
        "mutation($id: ID!) { revokeApiKey(id: $id) { id } }",
        json!({ "id": key_id }),
    )
    .await;

    // After a rotation both secrets sign, so a receiver that still has the old one keeps working.
    let rotated = app
        .graphql_as(
            &user.access_token,
            "mutation($id: ID!) { rotateWebhookSecret(id: $id) { secret endpoint { previousSecretUntil } } }",
            json!({ "id": id }),
        )
        .await;
    let new_secret = rotated["data"]["rotateWebhookSecret"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new_secret, secret);
    assert!(rotated["data"]["rotateWebhookSecret"]["endpoint"]["previousSecretUntil"].is_string());
    app.api_key(&user.access_token).await;
    let received = receiver.wait_for(3).await;
    assert_eq!(
        received.len(),
        3,
        "the revocation was delivered: {received:?}"
    );
    let last = &received[2];
    assert_eq!(last.signature.split(' ').count(), 2);
    assert!(verify(&new_secret, last) && verify(&secret, last));
    // Once the overlap ends, only the new secret signs.
    app.clock.advance(chrono::Duration::hours(25));
    app.graphql_as(&user.access_token, TEST, json!({ "id": id }))
        .await;
    let received = receiver.wait_for(4).await;
    assert!(verify(&new_secret, &received[3]) && !verify(&secret, &received[3]));
}

#[tokio::test]
async fn a_failing_endpoint_is_retried_with_a_log_then_disabled_after_a_day_and_its_owner_told() {
    let receiver = Receiver::start().await;
    receiver.answer(500);
    let app = TestApp::spawn().await;
    let user = app.register("Ada", "ada@example.com").await;
    let created = create(&app, &user, json!({ "url": receiver.url("/hooks") })).await;
    let id = created["data"]["createWebhookEndpoint"]["endpoint"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let tested = app
        .graphql_as(&user.access_token, TEST, json!({ "id": id }))
        .await;
    let first = &tested["data"]["sendTestWebhook"];
    assert_eq!(first["status"], "PENDING", "{tested}");
    assert_eq!(first["lastStatusCode"], 500);
    assert!(first["nextAttemptAt"].is_string());
    // The retry comes 5 s later, with the same webhook-id.
    app.clock.advance(chrono::Duration::seconds(6));
    let received = receiver.wait_for(2).await;
    assert_eq!(received[0].id, received[1].id);
    let deadline = Instant::now() + Duration::from_secs(10);
    let logged = loop {
        let logged = deliveries(&app, &user, &id).await;
        if logged[0]["attemptCount"] == 2 && logged[0]["attempts"].as_array().unwrap().len() == 2 {
            break logged;
        }
        assert!(Instant::now() < deadline, "{logged:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(logged[0]["attempts"][1]["statusCode"], 500);
    assert_eq!(logged[0]["lastError"], "HTTP 500");

    // A day later the next attempt fails again: the endpoint is disabled and its owner told.
    app.clock.advance(chrono::Duration::hours(24));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let endpoints = app
            .graphql_as(
                &user.access_token,
                "{ webhookEndpoints { enabled disabledReason failingSince } }",
                json!({}),
            )
            .await;
        if endpoints["data"]["webhookEndpoints"][0]["enabled"] == false {
            assert!(endpoints["data"]["webhookEndpoints"][0]["disabledReason"].is_string());
            break;
        }
        assert!(Instant::now() < deadline, "{endpoints}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while app
        .sql_number(
            "SELECT count(*) AS n FROM notifications WHERE kind = 'webhook.endpoint_disabled'",
        )
        .await
        == 0
    {
        assert!(Instant::now() < deadline, "the owner was not told");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(deliveries(&app, &user, &id).await[0]["status"], "FAILED");

    // Enabled again, it delivers; a replay sends the same message again under the same webhook-id.
    receiver.answer(200);
    app.graphql_as(
        &user.access_token,
        "mutation($id: ID!) { updateWebhookEndpoint(id: $id, input: {enabled: true}) { enabled failingSince } }",
        json!({ "id": id }),
    )
    .await;
    let original = deliveries(&app, &user, &id).await[0].clone();
    let replayed = app
        .graphql_as(
            &user.access_token,
            "mutation($id: ID!) { replayWebhookDelivery(id: $id) { id messageId status } }",
            json!({ "id": original["id"] }),
        )
        .await;
    let replay = &replayed["data"]["replayWebhookDelivery"];
    assert_eq!(replay["status"], "DELIVERED", "{replayed}");
    assert_eq!(replay["messageId"], original["messageId"]);
    assert_ne!(replay["id"], original["id"]);
}

#[tokio::test]
async fn redirects_are_not_followed_and_bad_endpoints_are_refused() {
    let receiver = Receiver::start().await;
    let app = TestApp::spawn().await;
    let user = app.register("Ada", "ada@example.com").await;
    let created = create(&app, &user, json!({ "url": receiver.url("/moved") })).await;
    let id = created["data"]["createWebhookEndpoint"]["endpoint"]["id"].clone();
    let tested = app
        .graphql_as(&user.access_token, TEST, json!({ "id": id }))
        .await;
    assert_eq!(
        tested["data"]["sendTestWebhook"]["lastStatusCode"], 307,
        "{tested}"
    );
    assert_eq!(tested["data"]["sendTestWebhook"]["status"], "PENDING");
    assert!(receiver.received().is_empty(), "the redirect was followed");

    for (input, field) in [
        (json!({ "url": "ftp://example.com/hook" }), "url"),
        (json!({ "url": "not a url" }), "url"),
        (json!({ "url": "https://user:pw@example.com/hook" }), "url"),
        (
            json!({ "url": "https://example.com/hook", "events": [] }),
            "events",
        ),
    ] {
        let refused = create(&app, &user, input).await;
        assert_eq!(error_code(&refused), "BAD_USER_INPUT", "{refused}");
        assert_eq!(refused["errors"][0]["extensions"]["field"], field);
    }
    // Another user's endpoint is not found, and anonymous callers are refused.
    let other = app.register("Bob", "bob@example.com").await;
    let foreign = app
        .graphql_as(&other.access_token, TEST, json!({ "id": id }))
        .await;
    assert_eq!(error_code(&foreign), "NOT_FOUND");
    let anonymous = app.graphql("{ webhookEndpoints { id } }").await;
    assert_eq!(error_code(&anonymous), "UNAUTHENTICATED");
}

#[tokio::test]
async fn in_production_private_and_link_local_endpoints_are_refused_before_any_packet() {
    let app = TestApp::spawn_with(|config| config.gateway.allow_private_upstreams = false).await;
    let user = app.register("Ada", "ada@example.com").await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://10.0.0.8/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
    ] {
        let refused = create(&app, &user, json!({ "url": url })).await;
        assert_eq!(error_code(&refused), "BAD_USER_INPUT", "{url}: {refused}");
        assert_eq!(refused["errors"][0]["extensions"]["field"], "url");
    }
}

#[tokio::test]
async fn platform_events_reach_administrators_endpoints() {
    let receiver = Receiver::start().await;
    let upstream = crate::helpers::upstream::Upstream::start().await;
    // One failing caller opens a circuit here.
    let app = TestApp::spawn_with(|config| config.gateway.breaker_threshold = 1).await;
    let crate::helpers::Catalogue { root, tool, user } = app.catalogue(upstream.url("/fail")).await;
    let created = create(
        &app,
        &root,
        json!({ "url": receiver.url("/hooks"), "events": ["TOOL_CIRCUIT_OPENED"] }),
    )
    .await;
    let secret = created["data"]["createWebhookEndpoint"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let failed = app.invoke(&user.access_token, &tool, json!({}), None).await;
    assert_eq!(error_code(&failed), "UPSTREAM_UNAVAILABLE", "{failed}");
    let received = receiver.wait_for(1).await;
    let event = received[0].json();
    assert_eq!(event["type"], "tool.circuit_opened");
    assert_eq!(event["data"]["toolId"], tool.as_str());
    assert!(verify(&secret, &received[0]));
    // Users hear nothing of it.
    assert_eq!(
        app.sql_number(&format!(
            "SELECT count(*) AS n FROM notifications WHERE user_id = '{}' AND kind = 'tool.circuit_opened'",
            user.id
        ))
        .await,
        0
    );
}

#[tokio::test]
async fn two_instances_deliver_each_message_once() {
    use joyfull_hub::config::Secret;
    // Instances of one deployment share their keys (the signing secrets are encrypted with them).
    fn shared_keys(config: &mut joyfull_hub::config::Config) {
        config.jwt_secret = Some(Secret::new("ab".repeat(32)));
        config.encryption_key = Some(Secret::new("cd".repeat(32)));
    }
    let receiver = Receiver::start().await;
    let first = TestApp::spawn_with(shared_keys).await;
    let url = first.db.url.clone();
    let _second = TestApp::spawn_with(move |config| {
        shared_keys(config);
        config.database_url = Some(Secret::new(url));
    })
    .await;
    let user = first.register("Ada", "ada@example.com").await;
    let created = create(
        &first,
        &user,
        json!({ "url": receiver.url("/hooks"), "events": ["QUOTA_WARNING"] }),
    )
    .await;
    let secret = created["data"]["createWebhookEndpoint"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    // 100 events at once: both dispatchers and both delivery workers race for them.
    first
        .sql(&format!(
            "INSERT INTO outbox_events (kind, user_id, payload) \
             SELECT 'quota.warning', '{}', jsonb_build_object('n', n) FROM generate_series(1, 100) AS n",
            user.id
        ))
        .await;
    let received = receiver.wait_for(100).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let received_after = receiver.received();
    assert_eq!(received_after.len(), 100, "a message was delivered twice");
    let ids: std::collections::BTreeSet<&str> = received.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), 100);
    assert!(received.iter().all(|r| verify(&secret, r)));
    assert_eq!(
        first
            .sql_number("SELECT count(*) AS n FROM webhook_deliveries WHERE status = 'DELIVERED' AND attempts = 1")
            .await,
        100
    );
}

#[tokio::test]
async fn an_endpoint_that_never_answers_holds_up_no_one_elses_deliveries() {
    let receiver = Receiver::start().await;
    let hole = crate::helpers::smtp::BlackHole::start().await;
    let app = TestApp::spawn().await;
    let ada = app.register("Ada", "ada@example.com").await;
    let mallory = app.register("Mallory", "mallory@example.com").await;
    for _ in 0..5 {
        create(
            &app,
            &mallory,
            json!({ "url": hole.http_url("/hooks"), "events": ["QUOTA_WARNING"] }),
        )
        .await;
    }
    create(
        &app,
        &ada,
        json!({ "url": receiver.url("/hooks"), "events": ["QUOTA_WARNING"] }),
    )
    .await;
    // Mallory's five deliveries are being sent (and never answered) when Ada's is queued.
    let event = |user: &TestUser| {
        format!(
            "INSERT INTO outbox_events (kind, user_id, payload) VALUES ('quota.warning', '{}', '{{}}')",
            user.id
        )
    };
    app.sql(&event(&mallory)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while app
        .sql_number("SELECT count(*) AS n FROM webhook_deliveries WHERE attempts = 1 AND status = 'PENDING'")
        .await
        < 5
    {
        assert!(Instant::now() < deadline, "Mallory's deliveries were never sent");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    app.sql(&event(&ada)).await;
    let started = Instant::now();
    receiver.wait_for(1).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "Ada's delivery waited {:?} behind endpoints that never answer",
        started.elapsed()
    );
}

#[tokio::test]
async fn another_users_endpoints_deliveries_and_quota_of_endpoints_are_out_of_reach() {
    let receiver = Receiver::start().await;
    let app = TestApp::spawn().await;
    let ada = app.register("Ada", "ada@example.com").await;
    let mallory = app.register("Mallory", "mallory@example.com").await;
    let created = create(&app, &ada, json!({ "url": receiver.url("/hooks") })).await;
    let endpoint = created["data"]["createWebhookEndpoint"]["endpoint"]["id"].clone();
    let tested = app
        .graphql_as(&ada.access_token, TEST, json!({ "id": endpoint }))
        .await;
    let delivery = tested["data"]["sendTestWebhook"]["id"].clone();

    for (query, variables) in [
        (DELIVERIES, json!({ "id": endpoint })),
        (
            "mutation($id: ID!) { replayWebhookDelivery(id: $id) { id } }",
            json!({ "id": delivery }),
        ),
        (
            "mutation($id: ID!) { rotateWebhookSecret(id: $id) { secret } }",
            json!({ "id": endpoint }),
        ),
        (
            "mutation($id: ID!) { updateWebhookEndpoint(id: $id, input: {url: \"https://example.com/mine\"}) { id } }",
            json!({ "id": endpoint }),
        ),
        (
            "mutation($id: ID!) { deleteWebhookEndpoint(id: $id) }",
            json!({ "id": endpoint }),
        ),
    ] {
        let refused = app
            .graphql_as(&mallory.access_token, query, variables)
            .await;
        assert_eq!(error_code(&refused), "NOT_FOUND", "{query}: {refused}");
    }
    assert_eq!(
        receiver.received().len(),
        1,
        "Mallory made Ada's endpoint receive something"
    );
    let listed = app
        .graphql_as(
            &mallory.access_token,
            "{ webhookEndpoints { id } }",
            json!({}),
        )
        .await;
    assert_eq!(listed["data"]["webhookEndpoints"], json!([]));

    // Endpoints are capped per user, so one account cannot make the hub send without limit.
    for _ in 0..9 {
        let made = create(&app, &mallory, json!({ "url": receiver.url("/hooks") })).await;
        assert!(
            made["data"]["createWebhookEndpoint"]["secret"].is_string(),
            "{made}"
        );
    }
    let made = create(&app, &mallory, json!({ "url": receiver.url("/hooks") })).await;
    assert!(
        made["data"]["createWebhookEndpoint"]["secret"].is_string(),
        "{made}"
    );
    let eleventh = create(&app, &mallory, json!({ "url": receiver.url("/hooks") })).await;
    assert_eq!(error_code(&eleventh), "CONFLICT", "{eleventh}");
}
