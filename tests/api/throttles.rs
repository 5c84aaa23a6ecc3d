//! Login throttles that hold under bursts, cannot be turned into a lockout by strangers, and see the
//! client behind a trusted proxy (and only behind one).

use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, error_code};

const LOGIN: &str = "mutation($input: LoginInput!) { login(input: $input) { accessToken } }";

async fn login_from(app: &TestApp, forwarded_for: Option<&str>, password: &str) -> Value {
    let mut request = app.client.post(app.url("/graphql")).json(&json!({
        "query": LOGIN,
        "variables": { "input": { "email": "ada@example.com", "password": password } }
    }));
    if let Some(address) = forwarded_for {
        request = request.header("x-forwarded-for", address);
    }
    request.send().await.unwrap().json().await.unwrap()
}

fn code(body: &Value) -> String {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("OK")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_concurrent_guesses_gets_no_more_tries_than_the_rule_allows() {
    let app = TestApp::spawn().await;
    app.register("Ada", "ada@example.com").await;

    let guesses: Vec<_> = (0..60)
        .map(|n| {
            let (client, url) = (app.client.clone(), app.url("/graphql"));
            tokio::spawn(async move {
                let body: Value = client
                    .post(url)
                    .json(&json!({
                        "query": LOGIN,
                        "variables": { "input": { "email": "ada@example.com", "password": format!("wrong-guess-{n}") } }
                    }))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                code(&body)
            })
        })
        .collect();
    let mut checked = 0;
    for guess in guesses {
        match guess.await.unwrap().as_str() {
            "UNAUTHENTICATED" => checked += 1,
            "RATE_LIMITED" => {}
            other => panic!("unexpected {other}"),
        }
    }

    assert!(
        checked <= 10,
        "{checked} guesses were checked; the rule allows 10"
    );
    let aliases: String = (0..14)
        .map(|n| {
            format!("a{n}: login(input: {{email: \"ada@example.com\", password: \"alias-guess-{n}\"}}) {{ accessToken }} ")
        })
        .collect();
    let batched = app.graphql(&format!("mutation {{ {aliases} }}")).await;
    let batched_checked = batched["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["extensions"]["code"] == "UNAUTHENTICATED")
        .count();
    assert_eq!(batched_checked, 0, "the budget was spent: {batched}");
}

#[tokio::test]
async fn failures_from_elsewhere_slow_but_never_lock_out_the_owner() {
    let app = TestApp::spawn_with(|c| {
        c.trusted_proxies = vec![joyfull_hub::config::Cidr::parse("127.0.0.1").unwrap()];
    })
    .await;
    app.register("Ada", "ada@example.com").await;

    let mut attacker = Vec::new();
    for n in 0..12 {
        attacker.push(code(
            &login_from(&app, Some("203.0.113.5"), &format!("wrong-{n}")).await,
        ));
    }
    let owner = login_from(&app, Some("198.51.100.9"), PASSWORD).await;
    let attacker_again = login_from(&app, Some("203.0.113.5"), PASSWORD).await;

    assert_eq!(attacker[..10], vec!["UNAUTHENTICATED"; 10]);
    assert_eq!(attacker[10..], vec!["RATE_LIMITED"; 2]);
    assert!(owner["data"]["login"]["accessToken"].is_string(), "{owner}");
    assert_eq!(
        error_code(&attacker_again),
        "RATE_LIMITED",
        "the guessing address stays refused, even with the right password"
    );
}

#[tokio::test]
async fn without_a_trusted_proxy_a_forwarded_address_changes_nothing() {
    let app = TestApp::spawn().await;
    app.register("Ada", "ada@example.com").await;

    let mut answers = Vec::new();
    for n in 0..11 {
        let spoofed = format!("203.0.113.{n}");
        answers.push(code(
            &login_from(&app, Some(&spoofed), &format!("wrong-{n}")).await,
        ));
    }

    assert_eq!(answers[10], "RATE_LIMITED", "{answers:?}");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("rate_limited_total{reason=\"throttle\"} ")),
        "{metrics}"
    );
}

#[tokio::test]
async fn guesses_batched_as_aliases_in_one_request_get_no_more_tries() {
    let app = TestApp::spawn().await;
    app.register("Ada", "ada@example.com").await;
    let aliases: String = (0..13)
        .map(|n| {
            format!("a{n}: login(input: {{email: \"ada@example.com\", password: \"alias-guess-{n}\"}}) {{ accessToken }} ")
        })
        .collect();

    let batched = app.graphql(&format!("mutation {{ {aliases} }}")).await;

    let codes: Vec<&str> = batched["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("{batched}"))
        .iter()
        .map(|e| e["extensions"]["code"].as_str().unwrap_or("?"))
        .collect();
    let checked = codes.iter().filter(|c| **c == "UNAUTHENTICATED").count();
    let refused = codes.iter().filter(|c| **c == "RATE_LIMITED").count();
    assert_eq!((checked, refused), (10, 3), "{codes:?}");
}
