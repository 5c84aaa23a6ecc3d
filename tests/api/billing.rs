//! Plans, subscriptions, period rollover and the quota primitive.

use std::time::Duration;

use chrono::{Months, Utc};
use joyfull_hub::app::AppState;
use joyfull_hub::billing::model::{PlanTier, Reservation};
use joyfull_hub::billing::quota::{self, Refusal, Spend};
use joyfull_hub::billing::{renewal, service};
use joyfull_hub::error::AppError;
use joyfull_hub::users::model::UserId;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, error_code};

const SUBSCRIPTION: &str = "{ me { subscription { plan { tier name } status currentPeriodStart currentPeriodEnd cancelAtPeriodEnd scheduledTier tokensUsed tokensReserved tokenLimit tokensRemaining } } }";
const SUBSCRIBE: &str = "mutation($t: PlanTier!) { subscribe(tier: $t) { plan { tier } status scheduledTier tokenLimit currentPeriodStart currentPeriodEnd } }";
const LEASE: Duration = Duration::from_secs(60);

/// Asks billing to spend on a Free-tier tool, as an invocation does; a refusal as the caller sees it.
async fn reserve(
    state: &AppState,
    user: UserId,
    tokens: i64,
    lease: Duration,
) -> Result<Reservation, AppError> {
    let spend = Spend {
        user,
        min_tier: PlanTier::Free,
        tokens,
        lease,
        api_key: None,
    };
    quota::spend(state, spend)
        .await
        .expect("billing answers")
        .map(|grant| grant.reservation)
        .map_err(|refused| refused.into_error("The tool"))
}

async fn subscription(app: &TestApp, user: &TestUser) -> Value {
    let body = app
        .graphql_as(&user.access_token, SUBSCRIPTION, json!({}))
        .await;
    assert!(body.get("errors").is_none(), "{body}");
    body["data"]["me"]["subscription"].clone()
}

async fn subscribe(app: &TestApp, user: &TestUser, tier: &str) -> Value {
    app.graphql_as(&user.access_token, SUBSCRIBE, json!({ "t": tier }))
        .await
}

async fn event_kinds(app: &TestApp, user: &TestUser) -> Vec<String> {
    let mut conn =
        <diesel_async::AsyncPgConnection as diesel_async::AsyncConnection>::establish(&app.db.url)
            .await
            .unwrap();
    #[derive(diesel::QueryableByName)]
    struct Kind {
        #[diesel(sql_type = diesel::sql_types::Text)]
        kind: String,
    }
    let rows: Vec<Kind> = diesel_async::RunQueryDsl::load(
        diesel::sql_query(format!(
            "SELECT kind FROM subscription_events WHERE user_id = '{}' ORDER BY occurred_at, id",
            user.id
        )),
        &mut conn,
    )
    .await
    .unwrap();
    rows.into_iter().map(|k| k.kind).collect()
}

#[tokio::test]
async fn everyone_sees_the_seeded_plans_cheapest_first() {
    let app = TestApp::spawn().await;

    let body = app
        .graphql(
            "{ plans { tier name priceCents currency tokenLimit requestsPerMinute features } }",
        )
        .await;

    let plans = body["data"]["plans"].as_array().unwrap();
    let tiers: Vec<&str> = plans.iter().map(|p| p["tier"].as_str().unwrap()).collect();
    assert_eq!(tiers, ["FREE", "PRO", "ENTERPRISE"]);
    assert_eq!(plans[0]["priceCents"], 0);
    assert_eq!(plans[1]["tokenLimit"], 1_000_000);
    assert!(plans[2]["tokenLimit"].is_null(), "enterprise is unlimited");
    assert!(!plans[1]["features"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_user_without_a_plan_subscribes_for_one_month_starting_now() {
    let app = TestApp::spawn().await;
    let user = app.register("Ada", "ada@example.com").await;
    assert!(subscription(&app, &user).await.is_null());

    let body = subscribe(&app, &user, "FREE").await;

    let sub = &body["data"]["subscribe"];
    assert_eq!(sub["status"], "ACTIVE");
    assert_eq!(sub["tokenLimit"], 10_000);
    let start: chrono::DateTime<Utc> = sub["currentPeriodStart"].as_str().unwrap().parse().unwrap();
    let end: chrono::DateTime<Utc> = sub["currentPeriodEnd"].as_str().unwrap().parse().unwrap();
    assert_eq!(start, app.clock_now());
    assert_eq!(end, start.checked_add_months(Months::new(1)).unwrap());
    assert_eq!(subscription(&app, &user).await["tokensRemaining"], 10_000);
    assert_eq!(event_kinds(&app, &user).await, ["CREATED"]);
    let anonymous = app.graphql_with(SUBSCRIBE, json!({ "t": "FREE" })).await;
    assert_eq!(error_code(&anonymous), "UNAUTHENTICATED");
}

#[tokio::test]
async fn an_upgrade_applies_at_once_in_the_same_period() {
    let app = TestApp::spawn().await;
    let user = app.register("Ada", "ada@example.com").await;
    let free = subscribe(&app, &user, "FREE").await;
    app.clock.advance(chrono::Duration::days(3));

    let pro = subscribe(&app, &user, "PRO").await;

    assert_eq!(pro["data"]["subscribe"]["plan"]["tier"], "PRO");
    assert_eq!(pro["data"]["subscribe"]["tokenLimit"], 1_000_000);
    assert_eq!(
        pro["data"]["subscribe"]["currentPeriodEnd"],
        free["data"]["subscribe"]["currentPeriodEnd"]
    );
    assert_eq!(event_kinds(&app, &user).await, ["CREATED", "UPGRADED"]);
    let again = subscribe(&app, &user, "PRO").await;
    assert_eq!(error_code(&again), "CONFLICT");
}

#[tokio::test]
async fn a_downgrade_waits_for_the_period_end_then_renews_on_the_lower_plan() {
    let app = TestApp::spawn().await;
    let user = app.register("Ada", "ada@example.com").await;
    subscribe(&app, &user, "PRO").await;
    let reservation = reserve(&app.state, user.user_id(), 700, LEASE)
        .await
        .unwrap();
    app.settle(reservation, 500).await;

    let scheduled = subscribe(&app, &user, "FREE").await;
    assert_eq!(scheduled["data"]["subscribe"]["plan"]["tier"], "PRO");
    assert_eq!(scheduled["data"]["subscribe"]["scheduledTier"], "FREE");
    let before = subscription(&app, &user).await;
    assert_eq!(before["tokensUsed"], 500);

    app.clock.advance(chrono::Duration::days(32));
    let after = subscription(&app, &user).await;

    assert_eq!(after["plan"]["tier"], "FREE");
    assert!(after["scheduledTier"].is_null());
    assert_eq!(after["tokensUsed"], 0, "a new period starts from zero");
    assert_eq!(after["currentPeriodStart"], before["currentPeriodEnd"]);
    assert_eq!(
        event_kinds(&app, &user).await,
        ["CREATED", "DOWNGRADE_SCHEDULED", "RENEWED"]
    );
}

#[tokio::test]
async fn subscribing_to_the_current_tier_undoes_a_scheduled_downgrade() {
    let app = TestApp::spawn().await;
    let user = app.register("Ada", "ada@example.com").await;
    subscribe(&app, &user, "ENTERPRISE").await;
    subscribe(&app, &user, "PRO").await;

    let undone = subscribe(&app, &user, "ENTERPRISE").await;

    assert!(
        undone["data"]["subscribe"]["scheduledTier"].is_null(),
        "{undone}"
    );
    assert_eq!(
        event_kinds(&app, &user).await,
        ["CREATED", "DOWNGRADE_SCHEDULED", "DOWNGRADE_CANCELLED"]
    );
}

#[tokio::test]
async fn a_cancelled_subscription_keeps_access_until_the_period_end_then_expires() {
    let app = TestApp::spawn().await;
    let user = app.register("Ada", "ada@example.com").await;
    subscribe(&app, &user, "PRO").await;
    let cancel = "mutation { cancelSubscription { status cancelAtPeriodEnd } }";
    let resume = "mutation { resumeSubscription { status cancelAtPeriodEnd } }";

    let cancelled = app.graphql_as(&user.access_token, cancel, json!({})).await;
    assert_eq!(
        cancelled["data"]["cancelSubscription"]["status"],
        "CANCELLED"
    );
    assert_eq!(
        cancelled["data"]["cancelSubscription"]["cancelAtPeriodEnd"],
        true
    );
    assert!(
        reserve(&app.state, user.user_id(), 10, LEASE).await.is_ok(),
        "access continues"
    );

    let resumed = app.graphql_as(&user.access_token, resume, json!({})).await;
    assert_eq!(resumed["data"]["resumeSubscription"]["status"], "ACTIVE");
    let not_cancelled = app.graphql_as(&user.access_token, resume, json!({})).await;
    assert_eq!(error_code(&not_cancelled), "CONFLICT");

    app.graphql_as(&user.access_token, cancel, json!({})).await;
    app.clock.advance(chrono::Duration::days(31));

    assert!(
        subscription(&app, &user).await.is_null(),
        "expired at the period end"
    );
    let denied = reserve(&app.state, user.user_id(), 10, LEASE)
        .await
        .unwrap_err();
    assert_eq!(denied.code(), "SUBSCRIPTION_REQUIRED");
    let nothing = app.graphql_as(&user.access_token, cancel, json!({})).await;
    assert_eq!(error_code(&nothing), "SUBSCRIPTION_REQUIRED");
    assert_eq!(
        event_kinds(&app, &user).await,
        ["CREATED", "CANCELLED", "RESUMED", "CANCELLED", "EXPIRED"]
    );

    let again = subscribe(&app, &user, "FREE").await;
    assert_eq!(again["data"]["subscribe"]["status"], "ACTIVE");
}

#[tokio::test]
async fn periods_roll_over_even_when_nothing_ran_at_the_boundary() {
    let app = TestApp::spawn().await;
    let user = app.register("Ada", "ada@example.com").await;
    subscribe(&app, &user, "FREE").await;
    let reservation = reserve(&app.state, user.user_id(), 100, LEASE)
        .await
        .unwrap();
    app.settle(reservation, 80).await;
    let start = app.clock_now();

    // Three periods and a bit later, with no request in between; the sweeper makes it explicit.
    app.clock.advance(chrono::Duration::days(95));
    let report = renewal::sweep(&app.state, app.clock_now()).await.unwrap();

    assert_eq!(report.subscriptions_rolled, 1);
    let now = subscription(&app, &user).await;
    assert_eq!(now["tokensUsed"], 0);
    let period_start: chrono::DateTime<Utc> =
        now["currentPeriodStart"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        period_start,
        start.checked_add_months(Months::new(3)).unwrap()
    );
    assert_eq!(
        event_kinds(&app, &user).await,
        ["CREATED", "RENEWED", "RENEWED", "RENEWED"]
    );
    assert_eq!(
        renewal::sweep(&app.state, app.clock_now())
            .await
            .unwrap()
            .subscriptions_rolled,
        0
    );
}

#[tokio::test]
async fn reservations_refuse_what_would_pass_the_limit_and_settle_exactly() {
    let app = TestApp::spawn().await;
    let user = app.register("Ada", "ada@example.com").await;
    let id = user.user_id();
    assert_eq!(
        reserve(&app.state, id, 10, LEASE).await.unwrap_err().code(),
        "SUBSCRIPTION_REQUIRED"
    );
    subscribe(&app, &user, "FREE").await; // 10,000 tokens

    let big = reserve(&app.state, id, 9_000, LEASE).await.unwrap();
    let too_much = reserve(&app.state, id, 1_001, LEASE).await.unwrap_err();
    assert!(
        matches!(too_much, AppError::QuotaExceeded(_)),
        "{too_much:?}"
    );
    let fits = reserve(&app.state, id, 1_000, LEASE).await.unwrap();
    assert_eq!(subscription(&app, &user).await["tokensReserved"], 10_000);

    app.settle(big, 6_000).await;
    app.settle(fits, 0).await;
    app.settle(fits, 0).await; // a second release changes nothing

    let after = subscription(&app, &user).await;
    assert_eq!(after["tokensUsed"], 6_000);
    assert_eq!(after["tokensReserved"], 0);
    assert_eq!(after["tokensRemaining"], 4_000);
}

#[tokio::test]
async fn a_reservation_left_behind_by_a_crash_expires_and_its_tokens_return() {
    let app = TestApp::spawn().await;
    let user = app.register("Ada", "ada@example.com").await;
    subscribe(&app, &user, "FREE").await;
    let abandoned = reserve(&app.state, user.user_id(), 10_000, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(reserve(&app.state, user.user_id(), 1, LEASE).await.is_err());

    app.clock.advance(chrono::Duration::seconds(31));
    let report = renewal::sweep(&app.state, app.clock_now()).await.unwrap();

    assert_eq!(report.reservations_expired, 1);
    assert_eq!(subscription(&app, &user).await["tokensReserved"], 0);
    assert!(reserve(&app.state, user.user_id(), 1, LEASE).await.is_ok());
    // Settling late still charges what was used.
    app.settle(abandoned, 40).await;
    assert_eq!(subscription(&app, &user).await["tokensUsed"], 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_reservations_from_two_processes_never_pass_a_small_limit() {
    let app = TestApp::spawn().await;
    let user = app.register("Ada", "ada@example.com").await;
    subscribe(&app, &user, "FREE").await;
    app.sql("UPDATE plans SET token_limit = 100 WHERE tier = 'FREE'")
        .await;
    // A second application state with its own pool stands for another server process.
    let other = {
        let mut state = app.state.clone();
        state.pool = joyfull_hub::db::build_pool(&app.db.url, 8, Duration::from_secs(10)).unwrap();
        state
    };

    let attempts: Vec<_> = (0..50)
        .map(|i| {
            let state = if i % 2 == 0 {
                app.state.clone()
            } else {
                other.clone()
            };
            let id = user.user_id();
            tokio::spawn(async move { reserve(&state, id, 10, LEASE).await.map(|r| (r, state)) })
        })
        .collect();
    let mut granted = Vec::new();
    let mut refused = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(ok) => granted.push(ok),
            Err(AppError::QuotaExceeded(_)) => refused += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(granted.len(), 10, "exactly the limit is reserved");
    assert_eq!(refused, 40);

    let mut consumed = 0;
    for (n, (reservation, _instance)) in granted.into_iter().enumerate() {
        let used = (n % 10 + 1) as i64;
        consumed += used;
        app.settle(reservation, used).await;
    }
    let after = subscription(&app, &user).await;
    assert_eq!(after["tokensUsed"], consumed);
    assert_eq!(after["tokensReserved"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_never_ends_up_with_two_current_subscriptions() {
    let app = TestApp::spawn().await;
    let user = app.register("Ada", "ada@example.com").await;

    let attempts: Vec<_> = (0..8)
        .map(|_| {
            let state = app.state.clone();
            let id = user.user_id();
            tokio::spawn(async move {
                service::subscribe(
                    &state,
                    id,
                    "ada@example.com",
                    joyfull_hub::billing::model::PlanTier::Free,
                )
                .await
            })
        })
        .collect();
    let mut created = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(_) => created += 1,
            Err(e) => assert_eq!(e.code(), "CONFLICT", "{e:?}"),
        }
    }

    assert_eq!(created, 1);
    assert_eq!(event_kinds(&app, &user).await, ["CREATED"]);
}

#[tokio::test]
async fn only_admins_update_plans_and_new_limits_apply_at_once() {
    let app = TestApp::spawn().await;
    let user = app.register("Ada", "ada@example.com").await;
    let admin = app.admin("root@example.com").await;
    subscribe(&app, &user, "FREE").await;
    let update = "mutation($t: PlanTier!, $i: UpdatePlanInput!) { updatePlan(tier: $t, input: $i) { tier name priceCents tokenLimit features } }";

    let forbidden = app
        .graphql_as(
            &user.access_token,
            update,
            json!({ "t": "FREE", "i": { "priceCents": 1 } }),
        )
        .await;
    let bad_currency = app
        .graphql_as(
            &admin.access_token,
            update,
            json!({ "t": "FREE", "i": { "currency": "dollars" } }),
        )
        .await;
    let updated = app
        .graphql_as(
            &admin.access_token,
            update,
            json!({ "t": "FREE", "i": { "name": "Starter", "tokenLimit": null, "features": ["Everything free"] } }),
        )
        .await;

    assert_eq!(error_code(&forbidden), "FORBIDDEN");
    assert_eq!(bad_currency["errors"][0]["extensions"]["field"], "currency");
    assert_eq!(updated["data"]["updatePlan"]["name"], "Starter");
    assert!(updated["data"]["updatePlan"]["tokenLimit"].is_null());
    assert_eq!(
        updated["data"]["updatePlan"]["priceCents"], 0,
        "omitted fields stay"
    );
    assert!(
        subscription(&app, &user).await["tokensRemaining"].is_null(),
        "unlimited now"
    );
}

#[tokio::test]
async fn a_refused_reservation_still_returns_the_expired_leases_it_found() {
    let app = TestApp::spawn().await;
    let user = app.register("Ada", "ada@example.com").await;
    subscribe(&app, &user, "FREE").await; // 10,000 tokens
    let id = user.user_id();
    let used = reserve(&app.state, id, 9_500, LEASE).await.unwrap();
    app.settle(used, 9_500).await;
    reserve(&app.state, id, 500, Duration::from_secs(30))
        .await
        .unwrap();
    app.clock.advance(chrono::Duration::seconds(31));

    // 501 tokens do not fit even once the expired 500 are back.
    let single = reserve(&app.state, id, 501, LEASE).await;
    assert!(
        matches!(single, Err(AppError::QuotaExceeded(_))),
        "{single:?}"
    );
    assert_eq!(subscription(&app, &user).await["tokensReserved"], 0);
    assert!(
        reserve(&app.state, id, 500, LEASE).await.is_ok(),
        "the expired 500 are back"
    );
}

#[tokio::test]
async fn a_batch_of_reservations_grants_in_order_while_the_running_total_fits() {
    use joyfull_hub::billing::repo::{BatchReservation, reserve_batch};

    let app = TestApp::spawn().await;
    let ada = app.register("Ada", "ada@example.com").await;
    let bob = app.register("Bob", "bob@example.com").await;
    let eve = app.register("Eve", "eve@example.com").await; // no subscription
    subscribe(&app, &ada, "FREE").await;
    subscribe(&app, &bob, "FREE").await;
    app.sql("UPDATE plans SET token_limit = 100 WHERE tier = 'FREE'")
        .await;
    // Bob's earlier call left a lease behind that has expired by now: the batch returns it.
    reserve(&app.state, bob.user_id(), 80, Duration::from_secs(30))
        .await
        .unwrap();
    app.clock.advance(chrono::Duration::seconds(31));
    let now = app.clock_now();
    let request = |user: &TestUser, tokens: i64, min_tier: PlanTier| BatchReservation {
        id: uuid::Uuid::now_v7(),
        user: user.user_id().0,
        tokens,
        expires_at: now + chrono::Duration::seconds(60),
        min_tier,
        api_key: None,
        slice_tokens: 0,
        slice_requests: 0,
    };
    let batch = [
        request(&ada, 40, PlanTier::Free),
        request(&bob, 30, PlanTier::Free),
        request(&ada, 50, PlanTier::Free),
        request(&ada, 20, PlanTier::Free), // 40 + 50 + 20 > 100
        request(&ada, 5, PlanTier::Free),  // would fit alone, but comes after a refusal
        request(&bob, 10, PlanTier::Pro),  // below the tier
        request(&bob, 71, PlanTier::Free), // 30 + 71 > 100
        request(&eve, 1, PlanTier::Free),  // no subscription
    ];
    let mut conn = app.state.pool.get().await.unwrap();
    let granted: Vec<uuid::Uuid> = reserve_batch(&mut conn, &batch, now, false)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.granted)
        .map(|r| r.id)
        .collect();
    drop(conn);

    let mut expected = vec![batch[0].id, batch[1].id, batch[2].id];
    let mut got = granted.clone();
    expected.sort();
    got.sort();
    assert_eq!(got, expected);
    assert_eq!(subscription(&app, &ada).await["tokensReserved"], 90);
    assert_eq!(subscription(&app, &bob).await["tokensReserved"], 30);
    assert_eq!(
        app.sql_number("SELECT count(*) AS n FROM quota_reservations")
            .await,
        3
    );
}

#[tokio::test]
async fn billing_alone_decides_and_explains_each_refusal_with_its_type() {
    let app = TestApp::spawn().await;
    let user = app.register("Ada", "ada@example.com").await;
    let spend = |min_tier: PlanTier, tokens: i64| Spend {
        user: user.user_id(),
        min_tier,
        tokens,
        lease: LEASE,
        api_key: None,
    };
    let refusal = |outcome: Result<quota::Grant, quota::Refused>| match outcome {
        Ok(grant) => panic!("granted {grant:?}"),
        Err(refused) => refused,
    };

    let no_plan_pro = refusal(
        quota::spend(&app.state, spend(PlanTier::Pro, 1))
            .await
            .unwrap(),
    );
    let no_plan_free = refusal(
        quota::spend(&app.state, spend(PlanTier::Free, 1))
            .await
            .unwrap(),
    );
    subscribe(&app, &user, "FREE").await; // 10,000 tokens
    let free_plan_pro = refusal(
        quota::spend(&app.state, spend(PlanTier::Pro, 1))
            .await
            .unwrap(),
    );
    let too_many = refusal(
        quota::spend(&app.state, spend(PlanTier::Free, 10_001))
            .await
            .unwrap(),
    );
    let granted = quota::spend(&app.state, spend(PlanTier::Free, 10_000))
        .await
        .unwrap()
        .unwrap();

    assert_eq!(
        no_plan_pro.refusal,
        Refusal::PlanTooLow {
            needed: PlanTier::Pro
        }
    );
    assert_eq!(no_plan_pro.subscription, None);
    assert_eq!(no_plan_free.refusal, Refusal::NoSubscription);
    assert_eq!(
        free_plan_pro.refusal,
        Refusal::PlanTooLow {
            needed: PlanTier::Pro
        }
    );
    assert_eq!(free_plan_pro.tier, Some(PlanTier::Free));
    assert!(free_plan_pro.subscription.is_some());
    assert!(
        matches!(
            too_many.refusal,
            Refusal::QuotaExceeded {
                asked: 10_001,
                remaining: 10_000,
                ..
            }
        ),
        "{too_many:?}"
    );
    assert_eq!(granted.tier, PlanTier::Free);
    assert_eq!(granted.reservation.tokens, 10_000);
    assert_eq!(
        app.sql_number("SELECT count(*) AS n FROM quota_reservations")
            .await,
        1,
        "refusals reserve nothing"
    );
}

#[tokio::test]
async fn a_spend_after_the_period_ended_rolls_it_forward_and_is_granted_at_once() {
    let app = TestApp::spawn().await;
    let user = app.register("Ada", "ada@example.com").await;
    subscribe(&app, &user, "FREE").await; // 10,000 tokens
    let all = reserve(&app.state, user.user_id(), 10_000, LEASE)
        .await
        .unwrap();
    app.settle(all, 10_000).await;
    assert!(reserve(&app.state, user.user_id(), 1, LEASE).await.is_err());

    app.clock.advance(chrono::Duration::days(32));
    let renewed = reserve(&app.state, user.user_id(), 1, LEASE).await;

    assert!(renewed.is_ok(), "{renewed:?}");
    let now = subscription(&app, &user).await;
    assert_eq!(now["tokensUsed"], 0);
    assert_eq!(now["tokensReserved"], 1);
    assert_eq!(event_kinds(&app, &user).await, ["CREATED", "RENEWED"]);
}
