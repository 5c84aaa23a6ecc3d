//! Events people hear about: recorded in the transaction of their change, dispatched once into in-app
//! notifications (with a live feed), mail and webhooks, as each user's preferences say.

use std::time::{Duration, Instant};

use joyfull_hub::config::Secret;
use serde_json::{Value, json};

use crate::helpers::smtp::SmtpSink;
use crate::helpers::sse::EventStream;
use crate::helpers::upstream::Upstream;
use crate::helpers::{Catalogue, PASSWORD, TestApp, TestUser, error_code};

const NOTIFICATIONS: &str = "query($unread: Boolean) { notifications(first: 50, unreadOnly: $unread) { edges { node { id event title body data readAt } } } unreadNotificationCount }";
const CHANGE_PASSWORD: &str =
    "mutation($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: $n) }";
const UPDATE: &str = "mutation($input: PreferencesInput!) { updatePreferences(input: $input) { theme language timeZone notices { event inApp email webhook locked } } }";

async fn notifications(app: &TestApp, user: &TestUser, unread: bool) -> (Vec<Value>, i64) {
    let body = app
        .graphql_as(
            &user.access_token,
            NOTIFICATIONS,
            json!({ "unread": unread }),
        )
        .await;
    let nodes = body["data"]["notifications"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|edge| edge["node"].clone())
        .collect();
    (
        nodes,
        body["data"]["unreadNotificationCount"].as_i64().unwrap(),
    )
}

/// Waits until the user has a notification of `event`, and returns it.
async fn wait_notified(app: &TestApp, user: &TestUser, event: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (nodes, _) = notifications(app, user, false).await;
        if let Some(found) = nodes.iter().find(|n| n["event"] == event) {
            return found.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no {event} notification: {nodes:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn security_events_reach_the_app_the_live_feed_and_the_mailbox_and_are_marked_read() {
    let sink = SmtpSink::start().await;
    let url = sink.url();
    let app =
        TestApp::spawn_with(move |config| config.mail.smtp_url = Some(Secret::new(url))).await;
    let user = app.register("Ada", "ada@example.com").await;
    app.state.notices.wait_listening().await;
    let response = EventStream::open(
        &app,
        Some(&user.access_token),
        json!({ "query": "subscription { notificationEvents { event title } }" }),
    )
    .await;
    let mut live = EventStream::new(response);
    tokio::time::sleep(Duration::from_millis(200)).await;

    app.api_key(&user.access_token).await;
    let (kind, event) = live.next_json().await;
    assert_eq!(kind, "next");
    assert_eq!(
        event["data"]["notificationEvents"]["event"], "API_KEY_CREATED",
        "{event}"
    );
    assert_eq!(
        event["data"]["notificationEvents"]["title"],
        "A new API key was created"
    );
    sink.wait_for("ada@example.com", "A new API key was created")
        .await;

    let changed = app
        .graphql_as(
            &user.access_token,
            CHANGE_PASSWORD,
            json!({ "c": PASSWORD, "n": "An0ther-Passw0rd!" }),
        )
        .await;
    assert_eq!(changed["data"]["changePassword"], true, "{changed}");
    let mail = sink
        .wait_for("ada@example.com", "Your password was changed")
        .await;
    assert!(mail.contains("Every session was signed out"));

    let session = app.login("ada@example.com", "An0ther-Passw0rd!").await;
    let user = TestUser {
        access_token: session["data"]["login"]["accessToken"]
            .as_str()
            .unwrap()
            .to_owned(),
        ..user
    };
    let notice = wait_notified(&app, &user, "PASSWORD_CHANGED").await;
    assert!(notice["readAt"].is_null());
    let (_, unread) = notifications(&app, &user, true).await;
    assert_eq!(unread, 2);
    let marked = app
        .graphql_as(
            &user.access_token,
            "mutation($ids: [ID!]!) { markNotificationsRead(ids: $ids) }",
            json!({ "ids": [notice["id"]] }),
        )
        .await;
    assert_eq!(marked["data"]["markNotificationsRead"], 1, "{marked}");
    let (unread_nodes, unread) = notifications(&app, &user, true).await;
    assert_eq!(unread, 1);
    assert_eq!(unread_nodes.len(), 1);
    assert_eq!(unread_nodes[0]["event"], "API_KEY_CREATED");
    let all = app
        .graphql_as(
            &user.access_token,
            "mutation { markAllNotificationsRead }",
            json!({}),
        )
        .await;
    assert_eq!(all["data"]["markAllNotificationsRead"], 1);

    // Someone else's notifications are neither listed nor marked; a caller must sign in.
    let other = app.register("Bob", "bob@example.com").await;
    let (theirs, _) = notifications(&app, &other, false).await;
    assert!(theirs.is_empty(), "{theirs:?}");
    let anonymous = app.graphql("{ unreadNotificationCount }").await;
    assert_eq!(error_code(&anonymous), "UNAUTHENTICATED");
}

#[tokio::test]
async fn preferences_are_checked_field_by_field_and_security_notices_cannot_be_silenced() {
    let app = TestApp::spawn().await;
    let user = app.register("Ada", "ada@example.com").await;
    let update = |input: Value| {
        let token = user.access_token.clone();
        let app = &app;
        async move {
            app.graphql_as(&token, UPDATE, json!({ "input": input }))
                .await
        }
    };

    for (input, field) in [
        (json!({ "language": "english" }), "language"),
        (json!({ "timeZone": "Mars/Olympus" }), "timeZone"),
        (
            json!({ "notices": [{ "event": "QUOTA_WARNING", "email": true }, { "event": "PASSWORD_CHANGED", "email": false }] }),
            "notices[1].email",
        ),
        (
            json!({ "notices": [{ "event": "NEW_LOGIN_ADDRESS", "inApp": false }] }),
            "notices[0].inApp",
        ),
    ] {
        let refused = update(input).await;
        assert_eq!(error_code(&refused), "BAD_USER_INPUT", "{refused}");
        assert_eq!(
            refused["errors"][0]["extensions"]["field"], field,
            "{refused}"
        );
    }

    let saved = update(json!({
        "theme": "DARK", "language": "pt-br", "timeZone": "Europe/Paris",
        "notices": [{ "event": "API_KEY_REVOKED", "inApp": false }, { "event": "QUOTA_WARNING", "email": true }]
    }))
    .await;
    let preferences = &saved["data"]["updatePreferences"];
    assert_eq!(preferences["theme"], "DARK", "{saved}");
    assert_eq!(preferences["language"], "pt-BR");
    assert_eq!(preferences["timeZone"], "Europe/Paris");
    let notice = |event: &str| {
        preferences["notices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["event"] == event)
            .cloned()
            .unwrap()
    };
    assert_eq!(notice("API_KEY_REVOKED")["inApp"], false);
    assert_eq!(notice("QUOTA_WARNING")["email"], true);
    assert_eq!(notice("PASSWORD_CHANGED")["locked"], true);
    assert_eq!(notice("PASSWORD_CHANGED")["email"], true);
    // A failed update changed nothing: the earlier refused one named QUOTA_WARNING too.
    let read = app
        .graphql_as(
            &user.access_token,
            "{ preferences { theme language } }",
            json!({}),
        )
        .await;
    assert_eq!(read["data"]["preferences"]["language"], "pt-BR");

    // The choice applies: a revoked key makes no notification, a created one (a security notice) does.
    let (key, id) = app.api_key_with_id(&user.access_token).await;
    app.graphql_as(
        &user.access_token,
        "mutation($id: ID!) { revokeApiKey(id: $id) { id } }",
        json!({ "id": id }),
    )
    .await;
    let created = wait_notified(&app, &user, "API_KEY_CREATED").await;
    assert_eq!(
        created["data"]["prefix"],
        key.chars().take(12).collect::<String>()
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (nodes, _) = notifications(&app, &user, false).await;
    assert!(
        nodes.iter().all(|n| n["event"] != "API_KEY_REVOKED"),
        "{nodes:?}"
    );
    assert_eq!(
        app.sql_number("SELECT count(*) AS n FROM outbox_events WHERE kind = 'api_key.revoked' AND dispatched_at IS NOT NULL")
            .await,
        1
    );
}

#[tokio::test]
async fn plan_changes_and_quota_thresholds_become_notifications_from_billings_own_transaction() {
    let upstream = Upstream::start().await;
    let app = TestApp::spawn().await;
    let Catalogue { tool, user, .. } = app.catalogue(upstream.url("/ten")).await;
    app.sql("UPDATE plans SET token_limit = 20 WHERE tier = 'FREE'")
        .await;
    app.set_estimate(&tool, 1).await;

    let started = wait_notified(&app, &user, "SUBSCRIPTION_STARTED").await;
    assert_eq!(started["title"], "Your Free plan has started");
    app.invoke(&user.access_token, &tool, json!({}), None).await;
    app.invoke(&user.access_token, &tool, json!({}), None).await;

    let warning = wait_notified(&app, &user, "QUOTA_WARNING").await;
    assert_eq!(warning["data"]["percent"], 80);
    let exhausted = wait_notified(&app, &user, "QUOTA_EXHAUSTED").await;
    assert_eq!(exhausted["data"]["tokenLimit"], 20);
    // The quota notices are mailed by default (`.eml` files here).
    app.wait_for_mail("ada@example.com", "all of this period's tokens")
        .await;
}

#[tokio::test]
async fn two_instances_dispatch_each_event_exactly_once() {
    let first = TestApp::spawn().await;
    let url = first.db.url.clone();
    let _second = TestApp::spawn_with(move |config| {
        config.database_url = Some(Secret::new(url));
    })
    .await;
    let user = first.register("Ada", "ada@example.com").await;
    first
        .sql(&format!(
            "INSERT INTO outbox_events (kind, user_id, payload) \
             SELECT 'quota.exhausted', '{}', jsonb_build_object('n', n) FROM generate_series(1, 300) AS n",
            user.id
        ))
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while first
        .sql_number("SELECT count(*) AS n FROM outbox_events WHERE dispatched_at IS NULL")
        .await
        > 0
    {
        assert!(Instant::now() < deadline, "events left undispatched");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Each event made one notification and one mail: a second dispatch would have queued a second mail.
    assert_eq!(
        first
            .sql_number("SELECT count(*) AS n FROM notifications WHERE kind = 'quota.exhausted'")
            .await,
        300
    );
    assert_eq!(
        first
            .sql_number("SELECT count(*) AS n FROM mail_outbox WHERE kind = 'quota.exhausted'")
            .await,
        300
    );
}

#[tokio::test]
async fn an_event_committed_while_no_instance_runs_is_dispatched_by_the_next_one() {
    let mut first = TestApp::spawn().await;
    let user = first.register("Ada", "ada@example.com").await;
    first.crash();
    // Recorded in a transaction of its own, as a change would, while no dispatcher runs.
    first
        .sql(&format!(
            "INSERT INTO outbox_events (kind, user_id, payload) VALUES ('password.reset', '{}', '{{}}')",
            user.id
        ))
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        first
            .sql_number("SELECT count(*) AS n FROM outbox_events WHERE dispatched_at IS NULL")
            .await,
        1
    );
    let url = first.db.url.clone();
    let second = TestApp::spawn_with(move |config| {
        config.database_url = Some(Secret::new(url));
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while first
        .sql_number("SELECT count(*) AS n FROM notifications WHERE kind = 'password.reset'")
        .await
        == 0
    {
        assert!(
            Instant::now() < deadline,
            "the next instance never dispatched it"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(second);
}

#[tokio::test]
async fn renewals_and_expiring_keys_are_announced_once_ahead_of_time() {
    let app = TestApp::spawn().await;
    let user = app.register("Ada", "ada@example.com").await;
    app.subscribe_free(&user).await;
    let now = app.clock_now();
    // A Pro period ending in two days, and a key expiring in three (the sweep looks 3 and 7 days ahead).
    app.sql(&format!(
        "UPDATE subscriptions SET tier = 'PRO', current_period_end = '{}' WHERE user_id = '{}'",
        (now + chrono::Duration::days(2)).to_rfc3339(),
        user.id
    ))
    .await;
    let created = app
        .graphql_as(
            &user.access_token,
            "mutation($at: DateTime!) { createApiKey(input: {name: \"ci\", expiresAt: $at}) { apiKey { id } } }",
            json!({ "at": (chrono::Utc::now() + chrono::Duration::days(3)).to_rfc3339() }),
        )
        .await;
    assert!(
        created["data"]["createApiKey"]["apiKey"]["id"].is_string(),
        "{created}"
    );

    for _ in 0..2 {
        joyfull_hub::notifications::upcoming::sweep(&app.state, now)
            .await
            .unwrap();
    }
    let renewing = wait_notified(&app, &user, "SUBSCRIPTION_RENEWING").await;
    assert_eq!(renewing["title"], "Your Pro plan renews soon");
    let expiring = wait_notified(&app, &user, "API_KEY_EXPIRING").await;
    assert_eq!(expiring["data"]["name"], "ci");
    assert_eq!(
        app.sql_number("SELECT count(*) AS n FROM outbox_events WHERE kind IN ('subscription.renewing', 'api_key.expiring')")
            .await,
        2
    );
}

#[tokio::test]
async fn a_sign_in_from_a_new_address_is_a_security_notice_and_the_first_one_is_not() {
    let app = TestApp::spawn_with(|config| {
        config.trusted_proxies = vec![joyfull_hub::config::Cidr::parse("127.0.0.1").unwrap()];
    })
    .await;
    let user = app.register("Ada", "ada@example.com").await;
    let login_from = |address: &'static str| {
        let app = &app;
        async move {
            app.client
                .post(app.url("/graphql"))
                .header("x-forwarded-for", address)
                .json(&json!({
                    "query": "mutation($input: LoginInput!) { login(input: $input) { accessToken } }",
                    "variables": { "input": { "email": "ada@example.com", "password": PASSWORD } }
                }))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    login_from("203.0.113.5").await;
    login_from("203.0.113.5").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (nodes, _) = notifications(&app, &user, false).await;
    assert!(
        nodes.iter().all(|n| n["event"] != "NEW_LOGIN_ADDRESS"),
        "{nodes:?}"
    );

    login_from("198.51.100.7").await;
    let notice = wait_notified(&app, &user, "NEW_LOGIN_ADDRESS").await;
    assert_eq!(notice["data"]["clientIp"], "198.51.100.7");
    assert_eq!(notice["title"], "New sign-in from 198.51.100.7");
}

#[tokio::test]
async fn a_burst_of_upstream_failures_is_told_to_administrators_once() {
    let upstream = Upstream::start().await;
    let app = TestApp::spawn().await;
    let Catalogue { root, tool, user } = app.catalogue(upstream.url("/fail")).await;
    // One caller's failures never open the circuit, but twenty within a minute are a burst.
    for _ in 0..25 {
        let failed = app.invoke(&user.access_token, &tool, json!({}), None).await;
        assert_eq!(error_code(&failed), "UPSTREAM_UNAVAILABLE", "{failed}");
    }
    let told = wait_notified(&app, &root, "TOOL_UPSTREAM_FAILURES").await;
    assert_eq!(told["data"]["toolId"], tool.as_str());
    assert_eq!(told["data"]["failures"], 20);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        app.sql_number(
            "SELECT count(*) AS n FROM outbox_events WHERE kind = 'tool.upstream_failures'"
        )
        .await,
        1
    );
    let (theirs, _) = notifications(&app, &user, false).await;
    assert!(
        theirs
            .iter()
            .all(|n| n["event"] != "TOOL_UPSTREAM_FAILURES")
    );
}

#[tokio::test]
async fn no_one_reads_marks_or_follows_another_users_notifications() {
    let app = TestApp::spawn().await;
    let ada = app.register("Ada", "ada@example.com").await;
    let mallory = app.register("Mallory", "mallory@example.com").await;
    app.state.notices.wait_listening().await;
    let response = EventStream::open(
        &app,
        Some(&mallory.access_token),
        json!({ "query": "subscription { notificationEvents { event data } }" }),
    )
    .await;
    let mut mallorys_feed = EventStream::new(response);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (_, adas_key) = app.api_key_with_id(&ada.access_token).await;
    let adas = wait_notified(&app, &ada, "API_KEY_CREATED").await;
    let (_, mallorys_key) = app.api_key_with_id(&mallory.access_token).await;
    // Mallory's feed carries her own notice first: Ada's never reached it.
    let (_, event) = mallorys_feed.next_json().await;
    assert_eq!(
        event["data"]["notificationEvents"]["data"]["keyId"],
        mallorys_key.as_str(),
        "{event}"
    );
    assert_ne!(adas_key, mallorys_key);

    let marked = app
        .graphql_as(
            &mallory.access_token,
            "mutation($ids: [ID!]!) { markNotificationsRead(ids: $ids) }",
            json!({ "ids": [adas["id"]] }),
        )
        .await;
    assert_eq!(marked["data"]["markNotificationsRead"], 0, "{marked}");
    let (unread, count) = notifications(&app, &ada, true).await;
    assert_eq!(count, 1);
    assert_eq!(unread[0]["id"], adas["id"]);
    let (mallorys, _) = notifications(&app, &mallory, false).await;
    assert!(mallorys.iter().all(|n| n["id"] != adas["id"]));
}
