//! Paid plans through Stripe, against a local fake of its API and webhooks signed as Stripe signs
//! them: no paid plan without payment, signed webhooks applied once and in order, the life of a paid
//! subscription through grace to expiry, changes set at the provider, grants, and revenue.

use joyfull_hub::config::PaymentProviderChoice;
use serde_json::{Value, json};

use crate::helpers::fake_stripe::{self, FakeStripe, PRICE_ENTERPRISE, PRICE_PRO, WEBHOOK_SECRET};
use crate::helpers::upstream::Upstream;
use crate::helpers::{TestApp, TestUser, error_code};

const SUBSCRIPTION: &str = "{ me { subscription { plan { tier } status paidBy graceEndsAt currentPeriodEnd cancelAtPeriodEnd scheduledTier } subscriptionHistory { kind fromTier toTier } } }";
const SUBSCRIBE: &str =
    "mutation($t: PlanTier!) { subscribe(tier: $t) { plan { tier } status paidBy checkoutUrl } }";

async fn with_stripe() -> (TestApp, FakeStripe) {
    let stripe = FakeStripe::start().await;
    let provider = stripe.provider();
    let app = TestApp::spawn_with(move |config| {
        config.payments.provider = provider;
        config.payments.grace = std::time::Duration::from_secs(3 * 24 * 3600);
    })
    .await;
    (app, stripe)
}

async fn subscribe(app: &TestApp, user: &TestUser, tier: &str) -> Value {
    app.graphql_as(&user.access_token, SUBSCRIBE, json!({ "t": tier }))
        .await
}

async fn state(app: &TestApp, user: &TestUser) -> Value {
    app.graphql_as(&user.access_token, SUBSCRIPTION, json!({}))
        .await["data"]["me"]
        .clone()
}

/// Posts `body` to the webhook endpoint with `signature` (none when `None`): the status and body.
async fn deliver(app: &TestApp, body: &str, signature: Option<String>) -> (u16, Value) {
    let mut request = app
        .client
        .post(app.url("/webhooks/payments"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(signature) = signature {
        request = request.header("Stripe-Signature", signature);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Delivers `body` signed now with the endpoint's secret.
async fn signed(app: &TestApp, body: &str) -> (u16, Value) {
    let now = chrono::Utc::now().timestamp();
    deliver(
        app,
        body,
        Some(fake_stripe::signature(WEBHOOK_SECRET, now, body)),
    )
    .await
}

fn checkout_completed(
    id: &str,
    created: i64,
    user: &TestUser,
    tier: &str,
    subscription: &str,
) -> String {
    fake_stripe::event(
        id,
        "checkout.session.completed",
        created,
        json!({ "id": format!("cs_{id}"), "object": "checkout.session", "mode": "subscription",
                "status": "complete", "payment_status": "paid", "client_reference_id": user.id,
                "metadata": { "user_id": user.id, "tier": tier },
                "customer": "cus_ada", "subscription": subscription }),
    )
}

fn invoice(
    id: &str,
    kind: &str,
    created: i64,
    subscription: &str,
    period: Option<(i64, i64)>,
) -> String {
    let lines = period.map_or_else(Vec::new, |(start, end)| {
        vec![json!({ "object": "line_item", "period": { "start": start, "end": end } })]
    });
    fake_stripe::event(
        id,
        kind,
        created,
        json!({ "id": format!("in_{id}"), "object": "invoice",
                "parent": { "type": "subscription_details", "subscription_details": { "subscription": subscription } },
                "lines": { "object": "list", "data": lines } }),
    )
}

/// Delivers Stripe's `invoice.payment_failed` for `subscription`.
async fn payment_failed(app: &TestApp, id: &str, created: i64, subscription: &str) -> (u16, Value) {
    signed(
        app,
        &invoice(id, "invoice.payment_failed", created, subscription, None),
    )
    .await
}

/// Ada on Pro, paid through the provider's subscription `sub_ada`.
async fn paying_ada(app: &TestApp, stripe: &FakeStripe) -> TestUser {
    let ada = app.register("Ada", "ada@example.com").await;
    app.subscribe_free(&ada).await;
    let asked = subscribe(app, &ada, "PRO").await;
    assert!(
        asked["data"]["subscribe"]["checkoutUrl"].is_string(),
        "{asked}"
    );
    stripe.create_subscription("sub_ada", PRICE_PRO);
    let now = chrono::Utc::now().timestamp();
    let (status, _) = signed(
        app,
        &checkout_completed("evt_checkout", now - 100, &ada, "PRO", "sub_ada"),
    )
    .await;
    assert_eq!(status, 200);
    ada
}

fn kinds(state: &Value) -> Vec<String> {
    state["subscriptionHistory"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["kind"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_paid_plan_waits_for_payment_and_starts_when_the_signed_webhook_confirms_it_once() {
    let (app, stripe) = with_stripe().await;
    let ada = app.register("Ada", "ada@example.com").await;
    let newcomer = app.register("Bob", "bob@example.com").await;
    app.subscribe_free(&ada).await;

    let asked = subscribe(&app, &ada, "PRO").await;
    let newcomer_asked = subscribe(&app, &newcomer, "ENTERPRISE").await;
    let waiting = state(&app, &ada).await;
    let newcomer_waiting = state(&app, &newcomer).await;

    let answer = &asked["data"]["subscribe"];
    assert_eq!(
        answer["plan"]["tier"], "FREE",
        "nothing changed yet: {asked}"
    );
    assert!(
        answer["checkoutUrl"]
            .as_str()
            .unwrap()
            .starts_with("https://checkout.stripe.com/")
    );
    assert_eq!(waiting["subscription"]["plan"]["tier"], "FREE");
    assert_eq!(
        newcomer_asked["data"]["subscribe"]["status"], "INCOMPLETE",
        "{newcomer_asked}"
    );
    assert!(
        newcomer_waiting["subscription"].is_null(),
        "{newcomer_waiting}"
    );
    let checkout = stripe
        .calls()
        .into_iter()
        .find(|call| call.route == "POST /v1/checkout/sessions")
        .unwrap();
    assert_eq!(checkout.form["mode"], "subscription");
    assert_eq!(checkout.form["line_items[0][price]"], PRICE_PRO);
    assert_eq!(checkout.form["client_reference_id"], ada.id);
    assert_eq!(checkout.form["customer_email"], "ada@example.com");

    stripe.create_subscription("sub_ada", PRICE_PRO);
    let now = chrono::Utc::now().timestamp();
    let completed = checkout_completed("evt_1", now, &ada, "PRO", "sub_ada");
    let (status, first) = signed(&app, &completed).await;
    let paid = state(&app, &ada).await;
    let (replay_status, replay) = signed(&app, &completed).await;
    let after_replay = state(&app, &ada).await;

    assert_eq!(
        (status, &first["outcome"]),
        (200, &json!("applied")),
        "{first}"
    );
    assert_eq!(paid["subscription"]["plan"]["tier"], "PRO");
    assert_eq!(paid["subscription"]["status"], "ACTIVE");
    assert_eq!(paid["subscription"]["paidBy"], "PROVIDER");
    assert_eq!(kinds(&paid), ["CREATED", "UPGRADED"]);
    assert_eq!(
        (replay_status, &replay["outcome"]),
        (200, &json!("duplicate"))
    );
    assert_eq!(after_replay, paid, "a redelivery changes nothing");
    assert_eq!(
        app.sql_number("SELECT count(*) AS n FROM audit_log WHERE action = 'subscription.upgraded' AND actor_id IS NULL").await,
        1
    );
}

#[tokio::test]
async fn a_webhook_without_a_valid_fresh_signature_is_refused_and_changes_nothing() {
    let (app, _stripe) = with_stripe().await;
    let ada = app.register("Ada", "ada@example.com").await;
    app.subscribe_free(&ada).await;
    let now = chrono::Utc::now().timestamp();
    let body = checkout_completed("evt_forged", now, &ada, "ENTERPRISE", "sub_forged");

    let attempts = [
        None,
        Some(fake_stripe::signature("whsec_attacker", now, &body)),
        Some(fake_stripe::signature(WEBHOOK_SECRET, now - 3600, &body)),
        Some(format!("t={now},v1=00")),
        Some(fake_stripe::signature(
            WEBHOOK_SECRET,
            now,
            &body.replace("ENTERPRISE", "PRO"),
        )),
    ];
    for signature in attempts {
        let (status, answer) = deliver(&app, &body, signature.clone()).await;
        assert_eq!(status, 400, "{signature:?}: {answer}");
        assert_eq!(error_code(&answer), "BAD_USER_INPUT");
    }
    let (unknown_status, unknown) = signed(
        &app,
        &fake_stripe::event(
            "evt_other",
            "customer.created",
            now,
            json!({ "id": "cus_1" }),
        ),
    )
    .await;

    assert_eq!(
        state(&app, &ada).await["subscription"]["plan"]["tier"],
        "FREE"
    );
    assert_eq!(
        app.sql_number("SELECT count(*) AS n FROM payment_events WHERE id = 'evt_forged'")
            .await,
        0
    );
    assert_eq!(
        (unknown_status, &unknown["outcome"]),
        (200, &json!("ignored")),
        "unknown types are acknowledged"
    );
}

#[tokio::test]
async fn an_older_event_never_undoes_a_newer_state() {
    let (app, stripe) = with_stripe().await;
    let ada = paying_ada(&app, &stripe).await;
    let now = chrono::Utc::now().timestamp();

    let (_, failed) = payment_failed(&app, "evt_fail", now - 10, "sub_ada").await;
    let (_, late_paid) = signed(
        &app,
        &invoice("evt_old_paid", "invoice.paid", now - 50, "sub_ada", None),
    )
    .await;
    let still_past_due = state(&app, &ada).await;
    let (_, paid) = signed(
        &app,
        &invoice("evt_paid", "invoice.paid", now - 5, "sub_ada", None),
    )
    .await;
    let (_, late_failure) = payment_failed(&app, "evt_old_fail", now - 8, "sub_ada").await;
    let recovered = state(&app, &ada).await;

    assert_eq!(failed["outcome"], "applied");
    assert_eq!(late_paid["outcome"], "stale");
    assert_eq!(still_past_due["subscription"]["status"], "PAST_DUE");
    assert_eq!(paid["outcome"], "applied");
    assert_eq!(late_failure["outcome"], "stale");
    assert_eq!(recovered["subscription"]["status"], "ACTIVE");
    assert!(recovered["subscription"]["graceEndsAt"].is_null());
    assert_eq!(
        kinds(&recovered)[2..],
        ["PAYMENT_FAILED", "PAYMENT_RECOVERED"]
    );
}

#[tokio::test]
async fn a_failed_renewal_keeps_access_through_the_grace_period_then_expires() {
    let (app, stripe) = with_stripe().await;
    let upstream = Upstream::start().await;
    let root = app.admin("root@example.com").await;
    let tool = app
        .create_tool(
            &root,
            json!({ "name": "Echo", "endpoint": upstream.url("/ten") }),
        )
        .await;
    let ada = paying_ada(&app, &stripe).await;
    let now = chrono::Utc::now().timestamp();
    let period = (now + 30 * 86_400, now + 60 * 86_400);

    let (_, renewed) = signed(
        &app,
        &invoice(
            "evt_renew",
            "invoice.paid",
            now - 20,
            "sub_ada",
            Some(period),
        ),
    )
    .await;
    let extended = state(&app, &ada).await;
    payment_failed(&app, "evt_fail", now - 10, "sub_ada").await;
    let past_due = state(&app, &ada).await;
    let during_grace = app.invoke(&ada.access_token, &tool, json!({}), None).await;
    app.clock
        .advance(chrono::Duration::days(3) + chrono::Duration::minutes(1));
    let after_grace = app.invoke(&ada.access_token, &tool, json!({}), None).await;
    let expired = state(&app, &ada).await;

    assert_eq!(renewed["outcome"], "applied");
    let period_end: chrono::DateTime<chrono::Utc> = extended["subscription"]["currentPeriodEnd"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        period_end.timestamp(),
        period.1,
        "the paid invoice's period is the subscription's"
    );
    assert_eq!(past_due["subscription"]["status"], "PAST_DUE");
    let grace: chrono::DateTime<chrono::Utc> = past_due["subscription"]["graceEndsAt"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        grace,
        app.clock_now() - chrono::Duration::days(3) - chrono::Duration::minutes(1)
            + chrono::Duration::days(3)
    );
    assert_eq!(
        during_grace["data"]["invokeTool"]["status"], "SUCCESS",
        "{during_grace}"
    );
    assert_eq!(
        error_code(&after_grace),
        "SUBSCRIPTION_REQUIRED",
        "{after_grace}"
    );
    assert!(expired["subscription"].is_null(), "{expired}");
    assert_eq!(kinds(&expired).last().unwrap(), "EXPIRED");
}

#[tokio::test]
async fn provider_errors_answer_clear_codes_and_change_nothing() {
    let (app, stripe) = with_stripe().await;
    let ada = paying_ada(&app, &stripe).await;

    stripe.fail_next(500, "api_error");
    let unavailable = subscribe(&app, &ada, "ENTERPRISE").await;
    stripe.fail_next(402, "card_error");
    let declined = subscribe(&app, &ada, "ENTERPRISE").await;
    let unchanged = state(&app, &ada).await;
    let upgraded = subscribe(&app, &ada, "ENTERPRISE").await;

    assert_eq!(
        error_code(&unavailable),
        "SERVICE_UNAVAILABLE",
        "{unavailable}"
    );
    assert!(unavailable["errors"][0]["extensions"]["retryAfter"].as_u64() > Some(0));
    assert_eq!(error_code(&declined), "PAYMENT_REQUIRED", "{declined}");
    assert_eq!(unchanged["subscription"]["plan"]["tier"], "PRO");
    assert_eq!(
        upgraded["data"]["subscribe"]["plan"]["tier"], "ENTERPRISE",
        "{upgraded}"
    );
    assert!(upgraded["data"]["subscribe"]["checkoutUrl"].is_null());
    let update = stripe
        .calls()
        .into_iter()
        .rfind(|call| call.route == "POST /v1/subscriptions/sub_ada")
        .unwrap();
    assert_eq!(update.form["items[0][price]"], PRICE_ENTERPRISE);
    assert_eq!(update.form["proration_behavior"], "always_invoice");
    assert_eq!(update.form["payment_behavior"], "error_if_incomplete");
}

#[tokio::test]
async fn cancellations_and_downgrades_are_set_at_the_provider_and_mirrored() {
    let (app, stripe) = with_stripe().await;
    let ada = paying_ada(&app, &stripe).await;

    let cancelled = app
        .graphql_as(
            &ada.access_token,
            "mutation { cancelSubscription { status } }",
            json!({}),
        )
        .await;
    let resumed = app
        .graphql_as(
            &ada.access_token,
            "mutation { resumeSubscription { status } }",
            json!({}),
        )
        .await;
    let to_free = subscribe(&app, &ada, "FREE").await;
    let portal = app
        .graphql_as(
            &ada.access_token,
            "mutation { billingPortalUrl }",
            json!({}),
        )
        .await;
    let updates: Vec<String> = stripe
        .calls()
        .into_iter()
        .filter(|call| call.route == "POST /v1/subscriptions/sub_ada")
        .map(|call| call.form["cancel_at_period_end"].clone())
        .collect();
    let now = chrono::Utc::now().timestamp();
    let (_, ended) = signed(
        &app,
        &fake_stripe::event(
            "evt_deleted",
            "customer.subscription.deleted",
            now,
            json!({ "id": "sub_ada", "object": "subscription", "status": "canceled" }),
        ),
    )
    .await;
    let on_free = state(&app, &ada).await;

    assert_eq!(
        cancelled["data"]["cancelSubscription"]["status"], "CANCELLED",
        "{cancelled}"
    );
    assert_eq!(resumed["data"]["resumeSubscription"]["status"], "ACTIVE");
    assert_eq!(
        to_free["data"]["subscribe"]["plan"]["tier"], "PRO",
        "{to_free}"
    );
    assert_eq!(updates, ["true", "false", "true"]);
    assert!(
        portal["data"]["billingPortalUrl"]
            .as_str()
            .unwrap()
            .starts_with("https://billing.stripe.com/"),
        "{portal}"
    );
    assert_eq!(ended["outcome"], "applied");
    assert_eq!(on_free["subscription"]["plan"]["tier"], "FREE");
    assert_eq!(on_free["subscription"]["paidBy"], "NONE");
}

#[tokio::test]
async fn a_plan_changed_in_the_providers_portal_is_mirrored() {
    let (app, stripe) = with_stripe().await;
    let ada = paying_ada(&app, &stripe).await;
    let now = chrono::Utc::now().timestamp();
    let updated = |id: &str, price: &str, cancel: bool| {
        fake_stripe::event(
            id,
            "customer.subscription.updated",
            now,
            json!({
            "id": "sub_ada", "object": "subscription", "status": "active", "cancel_at_period_end": cancel,
            "items": { "data": [{ "id": "si_sub_ada", "price": { "id": price },
                "current_period_start": now - 100, "current_period_end": now + 30 * 86_400 }] } }),
        )
    };

    signed(&app, &updated("evt_up", PRICE_ENTERPRISE, false)).await;
    let upgraded = state(&app, &ada).await;
    signed(&app, &updated("evt_cancel", PRICE_ENTERPRISE, true)).await;
    let cancelled = state(&app, &ada).await;

    assert_eq!(
        upgraded["subscription"]["plan"]["tier"], "ENTERPRISE",
        "{upgraded}"
    );
    assert_eq!(cancelled["subscription"]["status"], "CANCELLED");
    assert!(
        cancelled["subscription"]["cancelAtPeriodEnd"]
            .as_bool()
            .unwrap()
    );
}

#[tokio::test]
async fn production_without_a_provider_refuses_paid_plans_but_not_free_ones() {
    let app = TestApp::spawn_with(|config| {
        config.payments.provider = PaymentProviderChoice::Unconfigured;
    })
    .await;
    let ada = app.register("Ada", "ada@example.com").await;

    let paid = subscribe(&app, &ada, "PRO").await;
    let free = subscribe(&app, &ada, "FREE").await;
    let upgrade = subscribe(&app, &ada, "ENTERPRISE").await;
    let webhook = deliver(&app, "{}", None).await;

    assert_eq!(error_code(&paid), "PAYMENT_REQUIRED", "{paid}");
    assert_eq!(free["data"]["subscribe"]["plan"]["tier"], "FREE");
    assert_eq!(error_code(&upgrade), "PAYMENT_REQUIRED");
    assert_eq!(
        state(&app, &ada).await["subscription"]["plan"]["tier"],
        "FREE"
    );
    assert_eq!(webhook.0, 404);
}

#[tokio::test]
async fn production_defaults_to_no_provider_and_takes_the_manual_one_only_when_named() {
    let production = |extra: &[(&str, &str)]| {
        let mut map: std::collections::HashMap<String, String> = [
            ("HUB_ENV", "production"),
            ("HUB_JWT_SECRET", "0123456789abcdef0123456789abcdef0123"),
            (
                "HUB_ENCRYPTION_KEY",
                "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
            ),
        ]
        .into_iter()
        .chain(extra.iter().copied())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        map.insert("HUB_PUBLIC_URL".into(), "https://hub.example.com".into());
        joyfull_hub::config::Config::from_lookup(|key| map.get(key).cloned())
    };

    let default = production(&[]).unwrap();
    let manual = production(&[("HUB_PAYMENT_PROVIDER", "manual")]).unwrap();
    let incomplete = production(&[("HUB_PAYMENT_PROVIDER", "stripe")])
        .unwrap_err()
        .to_string();
    let plain_http = production(&[
        ("HUB_PAYMENT_PROVIDER", "stripe"),
        ("HUB_STRIPE_SECRET_KEY", "sk_live_1"),
        ("HUB_STRIPE_WEBHOOK_SECRETS", "whsec_1,whsec_2"),
        ("HUB_STRIPE_PRICE_PRO", "price_1"),
        ("HUB_STRIPE_PRICE_ENTERPRISE", "price_2"),
        ("HUB_STRIPE_API_URL", "http://stripe.internal"),
    ])
    .unwrap_err()
    .to_string();

    assert!(matches!(
        default.payments.provider,
        PaymentProviderChoice::Unconfigured
    ));
    assert!(matches!(
        manual.payments.provider,
        PaymentProviderChoice::Manual
    ));
    for key in [
        "HUB_STRIPE_SECRET_KEY",
        "HUB_STRIPE_WEBHOOK_SECRETS",
        "HUB_STRIPE_PRICE_PRO",
        "HUB_STRIPE_PRICE_ENTERPRISE",
    ] {
        assert!(incomplete.contains(key), "{incomplete}");
    }
    assert!(plain_http.contains("HUB_STRIPE_API_URL"), "{plain_http}");
}

#[tokio::test]
async fn administrators_grant_a_plan_until_a_date_with_or_without_a_provider() {
    for provider in [true, false] {
        let (app, _stripe) = if provider {
            let (app, stripe) = with_stripe().await;
            (app, Some(stripe))
        } else {
            (TestApp::spawn().await, None)
        };
        let root = app.admin("root@example.com").await;
        let ada = app.register("Ada", "ada@example.com").await;
        let until = app.clock_now() + chrono::Duration::days(45);
        let grant = "mutation($u: ID!, $t: PlanTier!, $until: DateTime!) { grantPlan(userId: $u, tier: $t, until: $until) { plan { tier } paidBy currentPeriodEnd scheduledTier } }";
        let vars = |until: chrono::DateTime<chrono::Utc>| json!({ "u": ada.id, "t": "ENTERPRISE", "until": until.to_rfc3339() });

        let refused = app.graphql_as(&ada.access_token, grant, vars(until)).await;
        let past = app
            .graphql_as(
                &root.access_token,
                grant,
                vars(app.clock_now() - chrono::Duration::days(1)),
            )
            .await;
        let granted = app.graphql_as(&root.access_token, grant, vars(until)).await;
        let stats = app
            .graphql_as(
                &root.access_token,
                "{ admin { stats { monthlyRecurringRevenue { amountCents } } } }",
                json!({}),
            )
            .await;
        app.clock.advance(chrono::Duration::days(46));
        // The first read rolls the period forward; the history is read alongside, so read again.
        state(&app, &ada).await;
        let after = state(&app, &ada).await;

        assert_eq!(error_code(&refused), "FORBIDDEN", "{refused}");
        assert_eq!(error_code(&past), "BAD_USER_INPUT");
        assert_eq!(past["errors"][0]["extensions"]["field"], "until");
        let answer = &granted["data"]["grantPlan"];
        assert_eq!(answer["plan"]["tier"], "ENTERPRISE", "{granted}");
        assert_eq!(answer["paidBy"], "GRANT");
        assert_eq!(answer["scheduledTier"], "FREE");
        assert_eq!(
            stats["data"]["admin"]["stats"]["monthlyRecurringRevenue"],
            json!([{ "amountCents": 0 }]),
            "a grant pays nothing: {stats}"
        );
        assert_eq!(after["subscription"]["plan"]["tier"], "FREE", "{after}");
        assert_eq!(after["subscription"]["paidBy"], "NONE");
        assert_eq!(kinds(&after), ["GRANTED", "RENEWED"], "{after}");
        assert_eq!(
            app.sql_number(
                "SELECT count(*) AS n FROM audit_log WHERE action = 'subscription.granted'"
            )
            .await,
            1
        );
    }
}

#[tokio::test]
async fn monthly_recurring_revenue_counts_what_paying_subscriptions_pay() {
    let (app, stripe) = with_stripe().await;
    let root = app.admin("root@example.com").await;
    paying_ada(&app, &stripe).await;
    let bob = app.register("Bob", "bob@example.com").await;
    app.subscribe_free(&bob).await;
    stripe.create_subscription("sub_bob", PRICE_PRO);
    let now = chrono::Utc::now().timestamp();
    signed(
        &app,
        &checkout_completed("evt_bob", now - 50, &bob, "PRO", "sub_bob"),
    )
    .await;
    payment_failed(&app, "evt_bob_fail", now - 10, "sub_bob").await;

    let stats = app
        .graphql_as(&root.access_token, "{ admin { stats { monthlyRecurringRevenue { currency amountCents } subscriptions { tier active } } } }", json!({}))
        .await;

    assert_eq!(
        stats["data"]["admin"]["stats"]["monthlyRecurringRevenue"],
        json!([{ "currency": "USD", "amountCents": 1900 }]),
        "Ada's Pro pays; Bob's is past due: {stats}"
    );
}
