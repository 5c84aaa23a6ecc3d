//! Plans' request rates, enforced on invocations (GCRA: a burst of ceil(r/6) calls, then one every
//! 60/r s): across all of a user's credentials, before any upstream work, with `RATE_LIMITED`,
//! `retryAfter`, `Retry-After` and the `X-RateLimit-*` headers, and as one limit for every instance on
//! the database.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use joyfull_hub::config::Secret;
use serde_json::{Value, json};

use crate::helpers::upstream::Upstream;
use crate::helpers::{Catalogue, TestApp, error_code};

const INVOKE: &str =
    "mutation($t: ID!) { invokeTool(toolId: $t, input: {}) { status tokensUsed } }";

/// An app that enforces request rates (the test default leaves them off).
async fn enforcing() -> TestApp {
    TestApp::spawn_with(|config| config.gateway.enforce_request_rates = true).await
}

/// Invokes `tool` as `credential` over HTTP: the status, the rate headers and the body.
async fn invoke(app: &TestApp, credential: &str, tool: &str) -> (Vec<(String, String)>, Value) {
    let response = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(credential)
        .json(&json!({ "query": INVOKE, "variables": { "t": tool } }))
        .send()
        .await
        .expect("POST /graphql");
    let headers = response
        .headers()
        .iter()
        .filter(|(name, _)| {
            name.as_str().starts_with("x-ratelimit-") || name.as_str() == "retry-after"
        })
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                value.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    (headers, response.json().await.expect("a JSON body"))
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn the_free_plan_admits_its_burst_then_refuses_every_credential_before_the_upstream() {
    let app = enforcing().await;
    let upstream = Upstream::start().await;
    let Catalogue {
        tool, user: ada, ..
    } = app.catalogue(upstream.url("/ten")).await;
    let key = app.api_key(&ada.access_token).await;

    // Free: 10 a minute, so a burst of 2 and then one call every 6 s.
    let (first_headers, first) = invoke(&app, &ada.access_token, &tool).await;
    let (second_headers, second) = invoke(&app, &key, &tool).await;
    let (refused_headers, refused) = invoke(&app, &ada.access_token, &tool).await;
    let (_, refused_key) = invoke(&app, &key, &tool).await;

    assert_eq!(first["data"]["invokeTool"]["status"], "SUCCESS", "{first}");
    assert_eq!(
        second["data"]["invokeTool"]["status"], "SUCCESS",
        "{second}"
    );
    assert_eq!(header(&first_headers, "x-ratelimit-limit"), Some("10"));
    assert_eq!(header(&first_headers, "x-ratelimit-remaining"), Some("1"));
    assert_eq!(header(&second_headers, "x-ratelimit-remaining"), Some("0"));
    let reset: u64 = header(&second_headers, "x-ratelimit-reset")
        .expect("a reset")
        .parse()
        .unwrap();
    assert!((7..=12).contains(&reset), "two calls' worth: {reset}");
    assert!(header(&first_headers, "retry-after").is_none());

    for body in [&refused, &refused_key] {
        assert_eq!(error_code(body), "RATE_LIMITED", "{body}");
        let retry = body["errors"][0]["extensions"]["retryAfter"]
            .as_u64()
            .expect("retryAfter");
        assert!((1..=6).contains(&retry), "{body}");
        assert!(body["data"]["invokeTool"].is_null());
    }
    let retry = refused["errors"][0]["extensions"]["retryAfter"].as_u64();
    assert_eq!(
        header(&refused_headers, "retry-after").map(|v| v.parse::<u64>().unwrap()),
        retry
    );
    assert_eq!(header(&refused_headers, "x-ratelimit-remaining"), Some("0"));
    assert_eq!(
        upstream.calls(),
        2,
        "refused calls never reach the upstream"
    );
    assert_eq!(
        app.sql_number("SELECT tokens_used + tokens_reserved AS n FROM subscriptions")
            .await,
        20,
        "refused calls reserve and charge nothing"
    );
    assert_eq!(
        app.sql_number("SELECT count(*) AS n FROM usage_events WHERE error_code = 'RATE_LIMITED'")
            .await,
        2,
        "refusals are in the usage log"
    );
}

#[tokio::test]
async fn a_plan_without_a_rate_and_a_hub_that_does_not_enforce_admit_everything() {
    let app = enforcing().await;
    let upstream = Upstream::start().await;
    let Catalogue {
        tool, user: ada, ..
    } = app.catalogue(upstream.url("/ten")).await;
    app.sql("UPDATE plans SET requests_per_minute = NULL WHERE tier = 'FREE'")
        .await;
    for _ in 0..5 {
        let (headers, body) = invoke(&app, &ada.access_token, &tool).await;
        assert_eq!(body["data"]["invokeTool"]["status"], "SUCCESS", "{body}");
        assert!(headers.is_empty(), "no rate, no rate headers: {headers:?}");
    }

    let relaxed = TestApp::spawn().await;
    let upstream = Upstream::start().await;
    let Catalogue {
        tool, user: bob, ..
    } = relaxed.catalogue(upstream.url("/ten")).await;
    for _ in 0..5 {
        let (_, body) = invoke(&relaxed, &bob.access_token, &tool).await;
        assert_eq!(body["data"]["invokeTool"]["status"], "SUCCESS", "{body}");
    }
}

/// Two hub processes on one database: calls spread over both get one plan's rate, not two. At 600 a
/// minute (a burst of 100, then one every 100 ms), callers hammering both until each has refused
/// some (two seconds at least) get at most the burst plus what the rate earned meanwhile. The rate is
/// paced by the database's clock, so the time it earned is read from that clock too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_database_enforce_one_rate() {
    let first = enforcing().await;
    let url = first.db.url.clone();
    let second = TestApp::spawn_with(move |config| {
        config.gateway.enforce_request_rates = true;
        config.database_url = Some(Secret::new(url));
    })
    .await;
    let upstream = Upstream::start().await;
    let Catalogue {
        tool, user: ada, ..
    } = first.catalogue(upstream.url("/ten")).await;
    first
        .sql("UPDATE plans SET requests_per_minute = 600, token_limit = NULL WHERE tier = 'FREE'")
        .await;
    // An API key, since each instance signs its own access tokens here.
    let key = first.api_key(&ada.access_token).await;

    let apps = Arc::new([first, second]);
    let admitted = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let refused = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let database_started = apps[0].database_clock_ms().await;
    let started = Instant::now();
    // However slow the machine, the callers go on until both instances have refused a call.
    let (at_least, at_most) = (Duration::from_secs(2), Duration::from_secs(20));
    let mut callers = Vec::new();
    for caller in 0..8 {
        let (apps, admitted, refused) = (apps.clone(), admitted.clone(), refused.clone());
        let (key, tool) = (key.clone(), tool.clone());
        callers.push(tokio::spawn(async move {
            let mut call = caller;
            loop {
                let both_refused = refused.iter().all(|r| r.load(Ordering::SeqCst) > 0);
                let elapsed = started.elapsed();
                if elapsed >= at_most || (elapsed >= at_least && both_refused) {
                    break;
                }
                let instance = call % 2;
                call += 1;
                let (_, body) = invoke(&apps[instance], &key, &tool).await;
                if body["data"]["invokeTool"]["status"] == "SUCCESS" {
                    admitted[instance].fetch_add(1, Ordering::SeqCst);
                } else {
                    assert_eq!(error_code(&body), "RATE_LIMITED", "{body}");
                    refused[instance].fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    for caller in callers {
        caller.await.unwrap();
    }
    let elapsed = started.elapsed();
    let database_elapsed_ms = apps[0].database_clock_ms().await - database_started;

    let total: usize = admitted.iter().map(|a| a.load(Ordering::SeqCst)).sum();
    let earned = usize::try_from(database_elapsed_ms / 100).unwrap() + 1;
    let counts = |c: &[AtomicUsize; 2]| [c[0].load(Ordering::SeqCst), c[1].load(Ordering::SeqCst)];
    let (admitted, refused) = (counts(&admitted), counts(&refused));
    assert!(
        refused.iter().all(|r| *r > 0),
        "the callers went over the rate on both instances: admitted {admitted:?}, refused {refused:?}"
    );
    assert!(
        admitted.iter().all(|a| *a > 0),
        "both instances served: {admitted:?}"
    );
    assert!(
        total >= 100,
        "the burst is admitted: {total} in {elapsed:?}"
    );
    assert!(
        total <= 100 + earned,
        "one rate for both: {total} admitted in {database_elapsed_ms} ms of the database's clock \
         ({elapsed:?} of the test's), at most {} allowed; admitted {admitted:?}, refused {refused:?}",
        100 + earned
    );
}

/// Requests of one batch count in order: the burst's worth is granted, the rest are over the rate,
/// reserve nothing and say when one more would be admitted.
#[tokio::test]
async fn one_batch_paces_its_requests_in_order() {
    use joyfull_hub::billing::repo::reserve_batch;

    let app = TestApp::spawn().await;
    let ada = app.register("Ada", "ada@example.com").await;
    app.subscribe_free(&ada).await;
    let now = app.clock_now();
    let request = |tokens: i64| batch_request(ada.user_id().0, now, tokens, 0, 0);
    let batch = [request(10), request(20), request(30), request(40)];
    let mut conn = app.state.pool.get().await.unwrap();

    let answers = reserve_batch(&mut conn, &batch, now, true).await.unwrap();
    drop(conn);

    let answer = |i: usize| answer_to(&answers, &batch[i]);
    assert!(answer(0).granted && answer(1).granted);
    assert_eq!(answer(0).burst_left, Some(1));
    assert_eq!(answer(1).burst_left, Some(0));
    assert_eq!(answer(0).requests_per_minute, Some(10));
    assert_eq!(answer(0).burst, Some(2));
    for over in [answer(2), answer(3)] {
        assert!(!over.granted);
        let retry = over.retry_in_ms.expect("a retry time");
        assert!(
            (5_900..=6_000).contains(&retry),
            "one call every 6 s: {over:?}"
        );
    }
    assert_eq!(
        app.sql_number("SELECT tokens_reserved AS n FROM subscriptions")
            .await,
        30
    );
}

/// A request asking for a slice (`billing::slices`) is granted at most a quarter of what is left after
/// its own cost, in tokens and in requests; its row holds the slice, and the later requests of the
/// batch count after it.
#[tokio::test]
async fn a_slice_takes_at_most_a_quarter_of_what_is_left_and_counts_first() {
    use joyfull_hub::billing::repo::reserve_batch;

    let app = TestApp::spawn().await;
    let ada = app.register("Ada", "ada@example.com").await;
    app.subscribe_free(&ada).await;
    // One request a second, a burst of ten; 1 000 tokens.
    app.sql("UPDATE plans SET requests_per_minute = 60, token_limit = 1000 WHERE tier = 'FREE'")
        .await;
    let now = app.clock_now();
    let request = |tokens: i64, slice_tokens: i64, slice_requests: i32| {
        batch_request(ada.user_id().0, now, tokens, slice_tokens, slice_requests)
    };
    let batch = [request(100, 10_000, 100), request(10, 0, 0)];
    let mut conn = app.state.pool.get().await.unwrap();
    let answers = reserve_batch(&mut conn, &batch, now, true).await.unwrap();
    drop(conn);
    let answer = |i: usize| answer_to(&answers, &batch[i]);

    assert!(answer(0).granted && answer(1).granted);
    // (1 000 - 100) / 4 tokens in whole requests of 100, and a quarter of the 9 requests the burst
    // has left after the first.
    assert_eq!((answer(0).slice_tokens, answer(0).slice_requests), (200, 2));
    assert_eq!((answer(1).slice_tokens, answer(1).slice_requests), (0, 0));
    assert_eq!(
        answer(1).burst_left,
        Some(6),
        "the second request counts after the slice's two"
    );
    assert_eq!(
        app.sql_number("SELECT tokens_reserved AS n FROM subscriptions")
            .await,
        310
    );
    assert_eq!(
        app.sql_number(&format!(
            "SELECT tokens AS n FROM quota_reservations WHERE id = '{}'",
            batch[0].id
        ))
        .await,
        300
    );
    let tat_ms = app
        .sql_number(
            "SELECT (extract(epoch FROM request_rate_tat - statement_timestamp()) * 1000)::bigint AS n \
             FROM subscriptions",
        )
        .await;
    assert!(
        (3_500..=4_000).contains(&tat_ms),
        "four requests at one a second move the pace on by 4 s: {tat_ms}"
    );
}

/// A Free-tier request of `user` for `tokens` (and a slice of `slice_tokens` and `slice_requests`),
/// leased for a minute from `now`.
fn batch_request(
    user: uuid::Uuid,
    now: chrono::DateTime<chrono::Utc>,
    tokens: i64,
    slice_tokens: i64,
    slice_requests: i32,
) -> joyfull_hub::billing::repo::BatchReservation {
    joyfull_hub::billing::repo::BatchReservation {
        id: uuid::Uuid::now_v7(),
        user,
        tokens,
        expires_at: now + chrono::Duration::seconds(60),
        min_tier: joyfull_hub::billing::model::PlanTier::Free,
        api_key: None,
        slice_tokens,
        slice_requests,
    }
}

/// What the batch answered `request`.
fn answer_to(
    answers: &[joyfull_hub::billing::repo::Reserved],
    request: &joyfull_hub::billing::repo::BatchReservation,
) -> joyfull_hub::billing::repo::Reserved {
    answers
        .iter()
        .find(|a| a.id == request.id)
        .copied()
        .expect("an answer for each request")
}
