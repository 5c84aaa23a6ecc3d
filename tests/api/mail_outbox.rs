//! Mail through the outbox, against a real SMTP server: a message survives the mail server being down and
//! the instance that queued it dying mid-send, two instances send each message once, a permanent refusal
//! is not retried, and administrators read the log.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use joyfull_hub::config::Secret;
use serde_json::{Value, json};

use crate::helpers::smtp::{BlackHole, SmtpSink};
use crate::helpers::{TestApp, TestUser, token_in};

const REQUEST_RESET: &str = "mutation($e: String!) { requestPasswordReset(email: $e) }";
const RESET: &str =
    "mutation($t: String!, $p: String!) { resetPassword(token: $t, newPassword: $p) }";
const MAIL_LOG: &str = "{ admin { mailLog(first: 100) { edges { node { kind to subject status attempts lastError nextAttemptAt sentAt } } } } }";

async fn with_smtp(url: String) -> TestApp {
    TestApp::spawn_with(move |config| config.mail.smtp_url = Some(Secret::new(url))).await
}

/// The log's entries of `kind` to `to`.
async fn logged(app: &TestApp, admin: &TestUser, kind: &str, to: &str) -> Vec<Value> {
    let log = app
        .graphql_as(&admin.access_token, MAIL_LOG, json!({}))
        .await;
    log["data"]["admin"]["mailLog"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("no mail log: {log}"))
        .iter()
        .map(|edge| edge["node"].clone())
        .filter(|node| node["kind"] == kind && node["to"] == to)
        .collect()
}

/// Waits until the log's entry of `kind` to `to` satisfies `done`, and returns it.
async fn wait_logged(
    app: &TestApp,
    admin: &TestUser,
    kind: &str,
    to: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let entries = logged(app, admin, kind, to).await;
        if let Some(entry) = entries.iter().find(|e| done(e)) {
            return entry.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the log never showed it: {entries:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_reset_asked_while_the_mail_server_is_down_arrives_once_it_is_back() {
    let mut sink = SmtpSink::start().await;
    let app = with_smtp(sink.url()).await;
    let admin = app.admin("root@example.com").await;
    app.register("Ada", "ada@example.com").await;
    sink.wait_for("ada@example.com", "Confirm your email").await;

    sink.stop();
    let asked = app
        .graphql_with(REQUEST_RESET, json!({ "e": "ada@example.com" }))
        .await;
    assert_eq!(asked["data"]["requestPasswordReset"], true);
    let failed = wait_logged(&app, &admin, "RESET_PASSWORD", "ada@example.com", |e| {
        e["attempts"] == 1 && e["lastError"].is_string()
    })
    .await;
    assert_eq!(failed["status"], "PENDING");
    assert!(failed["nextAttemptAt"].is_string());

    // Back up, the message waits for its retry (15 s after the failure), then goes.
    sink.restart().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(sink.find("ada@example.com", "Reset your").is_empty());
    app.clock.advance(chrono::Duration::seconds(16));
    let mail = sink.wait_for("ada@example.com", "Reset your").await;

    let reset = app
        .graphql_with(RESET, json!({ "t": token_in(&mail), "p": "N3w-Passw0rd!" }))
        .await;
    assert_eq!(reset["data"]["resetPassword"], true, "{reset}");
    assert!(app.login("ada@example.com", "N3w-Passw0rd!").await["data"]["login"].is_object());
    let sent = wait_logged(&app, &admin, "RESET_PASSWORD", "ada@example.com", |e| {
        e["status"] == "SENT"
    })
    .await;
    assert_eq!(sent["attempts"], 2);
    assert!(sent["lastError"].is_null() && sent["nextAttemptAt"].is_null());
    assert!(sent["sentAt"].is_string());
    // Sent messages keep no body: their links carried single-use tokens.
    assert_eq!(
        app.sql_number("SELECT count(*) AS n FROM mail_outbox WHERE text_body IS NOT NULL OR html_body IS NOT NULL")
            .await,
        0
    );
    // Only administrators read the log.
    let user = app.login("ada@example.com", "N3w-Passw0rd!").await;
    let token = user["data"]["login"]["accessToken"].as_str().unwrap();
    let refused = app.graphql_as(token, MAIL_LOG, json!({})).await;
    assert_eq!(crate::helpers::error_code(&refused), "FORBIDDEN");
}

#[tokio::test]
async fn a_message_whose_instance_died_mid_send_is_sent_by_another_once_its_claim_expires() {
    // The first instance's mail server takes the connection and never answers: its worker has claimed
    // the message and is stuck sending it when the instance dies.
    let hole = BlackHole::start().await;
    let mut first = with_smtp(hole.url()).await;
    let url = first.db.url.clone();
    first.register("Ada", "ada@example.com").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while first
        .sql_number(
            "SELECT count(*) AS n FROM mail_outbox WHERE attempts = 1 AND status = 'PENDING'",
        )
        .await
        == 0
    {
        assert!(Instant::now() < deadline, "the message was never claimed");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let sink = SmtpSink::start().await;
    let sink_url = sink.url();
    let second = TestApp::spawn_with(move |config| {
        config.database_url = Some(Secret::new(url));
        config.mail.smtp_url = Some(Secret::new(sink_url));
    })
    .await;
    first.crash();

    // The dead worker's claim holds the message for two minutes; then the second instance sends it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(sink.messages().is_empty());
    second.clock.advance(chrono::Duration::seconds(121));
    let mail = sink.wait_for("ada@example.com", "Confirm your email").await;
    assert_eq!(token_in(&mail).len(), 64);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(sink.messages().len(), 1);
    assert_eq!(
        first
            .sql_text("SELECT status || ' ' || attempts AS t FROM mail_outbox")
            .await,
        "SENT 2"
    );
}

#[tokio::test]
async fn two_instances_send_each_message_exactly_once() {
    let sink = SmtpSink::start().await;
    let first = with_smtp(sink.url()).await;
    let (url, sink_url) = (first.db.url.clone(), sink.url());
    let _second = TestApp::spawn_with(move |config| {
        config.database_url = Some(Secret::new(url));
        config.mail.smtp_url = Some(Secret::new(sink_url));
    })
    .await;
    // 200 messages due at once: both workers find them on their next look and claim batches of them.
    first
        .sql(
            "INSERT INTO mail_outbox (id, kind, to_address, subject, text_body, html_body, next_attempt_at, created_at) \
             SELECT gen_random_uuid(), 'TEST', 'n' || n || '@example.com', 'Message ' || n, 'text', '<p>html</p>', \
                    now() - interval '1 minute', now() - interval '1 minute' \
             FROM generate_series(1, 200) AS n",
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while first
        .sql_number("SELECT count(*) AS n FROM mail_outbox WHERE status <> 'SENT'")
        .await
        > 0
    {
        assert!(Instant::now() < deadline, "not every message was sent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let messages = sink.messages();
    let ids: BTreeSet<String> = messages
        .iter()
        .filter_map(|m| {
            m.lines()
                .find(|l| l.starts_with("Message-ID:"))
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(messages.len(), 200);
    assert_eq!(ids.len(), 200);
    // A message claimed twice would count two attempts.
    assert_eq!(
        first
            .sql_number("SELECT count(*) AS n FROM mail_outbox WHERE attempts <> 1")
            .await,
        0
    );
}

#[tokio::test]
async fn a_permanent_refusal_is_given_up_at_once_and_other_mail_still_flows() {
    let sink = SmtpSink::start().await;
    let app = with_smtp(sink.url()).await;
    let admin = app.admin("root@example.com").await;
    app.register("Bo", "bo@bounce.example").await;
    app.register("Ada", "ada@example.com").await;

    let given_up = wait_logged(&app, &admin, "VERIFY_EMAIL", "bo@bounce.example", |e| {
        e["status"] == "FAILED"
    })
    .await;
    assert_eq!(given_up["attempts"], 1);
    assert!(given_up["lastError"].as_str().unwrap().contains("550"));
    assert!(given_up["nextAttemptAt"].is_null());
    sink.wait_for("ada@example.com", "Confirm your email").await;
    assert!(sink.find("bo@bounce.example", "").is_empty());
}
