//! Anonymous queries are paced per client address (IPv6 by /64), as one rate for every instance on
//! the database; mutations (registration, login) are left to their own throttles; signed-in callers are
//! not counted here.

use std::net::IpAddr;

use joyfull_hub::config::{Cidr, Secret};
use serde_json::{Value, json};

use crate::helpers::TestApp;

/// 60 queries a minute: a burst of 10, then one a second. Forwarded addresses are trusted from
/// loopback, so each test request can say where it comes from.
fn configure(config: &mut joyfull_hub::config::Config) {
    config.graphql.anonymous_queries_per_minute = 60;
    config.trusted_proxies = vec![Cidr::parse("127.0.0.1/32").unwrap()];
}

async fn query_from(app: &TestApp, address: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url("/graphql"))
        .header("x-forwarded-for", address)
        .json(&body)
        .send()
        .await
        .expect("POST /graphql")
}

fn plans() -> Value {
    json!({ "query": "{ plans { tier } }" })
}

#[tokio::test]
async fn an_address_gets_its_burst_of_queries_then_429_with_retry_after() {
    let app = TestApp::spawn_with(configure).await;

    let mut remaining = Vec::new();
    for _ in 0..10 {
        let response = query_from(&app, "203.0.113.7", plans()).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-ratelimit-limit"], "60");
        remaining.push(
            response.headers()["x-ratelimit-remaining"]
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap(),
        );
    }
    let refused = query_from(&app, "203.0.113.7", plans()).await;
    let status = refused.status().as_u16();
    let retry_header = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = refused.json().await.unwrap();
    let elsewhere = query_from(&app, "198.51.100.9", plans()).await.status();
    let mutation = query_from(
        &app,
        "203.0.113.7",
        json!({ "query": "mutation { login(input: {email: \"nobody@example.com\", password: \"wrong-password\"}) { accessToken } }" }),
    )
    .await;
    let mutation: Value = mutation.json().await.unwrap();

    assert_eq!(remaining.first(), Some(&9));
    assert_eq!(remaining.last(), Some(&0));
    assert_eq!(status, 429);
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "RATE_LIMITED",
        "{body}"
    );
    assert_eq!(body["errors"][0]["extensions"]["retryAfter"], 1);
    assert_eq!(retry_header, "1");
    assert_eq!(elsewhere, 200, "another address has its own pace");
    assert_ne!(
        mutation["errors"][0]["extensions"]["code"], "RATE_LIMITED",
        "mutations are not paced here: {mutation}"
    );
}

#[tokio::test]
async fn an_ipv6_client_counts_by_its_64_and_two_instances_share_one_pace() {
    let first = TestApp::spawn_with(configure).await;
    let url = first.db.url.clone();
    let second = TestApp::spawn_with(move |config| {
        configure(config);
        config.database_url = Some(Secret::new(url));
    })
    .await;

    let mut admitted = 0;
    for n in 0..20u16 {
        // Different addresses of one /64, alternating between the instances.
        let address: IpAddr = format!("2001:db8:7:7::{n:x}").parse().unwrap();
        let app = if n % 2 == 0 { &first } else { &second };
        if query_from(app, &address.to_string(), plans())
            .await
            .status()
            == 200
        {
            admitted += 1;
        }
    }

    assert!(
        (10..=11).contains(&admitted),
        "one burst of 10 (and at most one earned meanwhile) for the /64 across both: {admitted}"
    );
}

#[tokio::test]
async fn signed_in_callers_are_not_paced_as_anonymous() {
    let app = TestApp::spawn_with(configure).await;
    let ada = app.register("Ada", "ada@example.com").await;
    for _ in 0..15 {
        let response = app
            .client
            .post(app.url("/graphql"))
            .header("x-forwarded-for", "203.0.113.8")
            .bearer_auth(&ada.access_token)
            .json(&plans())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers().get("x-ratelimit-limit").is_none());
    }
}
