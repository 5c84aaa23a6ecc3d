//! Every security event of an account is in the audit trail, with the client address and user agent of
//! the request that caused it.

use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp};

const AGENT: &str = "SecurityAudit/1.0 (test)";

/// Posts a GraphQL request as a browser behind the trusted proxy at `from` would.
async fn post(app: &TestApp, token: Option<&str>, query: &str, variables: Value) -> Value {
    let mut request = app
        .client
        .post(app.url("/graphql"))
        .header("user-agent", AGENT)
        .header("x-forwarded-for", "198.51.100.23")
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn logins_logouts_keys_password_and_email_changes_are_audited_with_their_origin() {
    let app = TestApp::spawn_with(|c| {
        c.trusted_proxies = vec![joyfull_hub::config::Cidr::parse("127.0.0.1").unwrap()];
    })
    .await;
    let user = app.register("Ada", "ada@example.com").await;

    let login = post(
        &app,
        None,
        "mutation($i: LoginInput!) { login(input: $i) { accessToken refreshToken } }",
        json!({ "i": { "email": "ada@example.com", "password": PASSWORD } }),
    )
    .await;
    let token = login["data"]["login"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let refresh = login["data"]["login"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = post(
        &app,
        Some(&token),
        "mutation { createApiKey(input: {name: \"ci\"}) { apiKey { id } } }",
        json!({}),
    )
    .await;
    let key_id = key["data"]["createApiKey"]["apiKey"]["id"]
        .as_str()
        .unwrap();
    post(
        &app,
        Some(&token),
        "mutation($id: ID!) { revokeApiKey(id: $id) { id } }",
        json!({ "id": key_id }),
    )
    .await;
    post(
        &app,
        Some(&token),
        "mutation($e: String!, $p: String) { updateProfile(input: {email: $e, currentPassword: $p}) { email } }",
        json!({ "e": "ada.new@example.com", "p": PASSWORD }),
    )
    .await;
    post(
        &app,
        None,
        "mutation($t: String!) { logout(refreshToken: $t) }",
        json!({ "t": refresh }),
    )
    .await;
    post(
        &app,
        Some(&user.access_token),
        "mutation($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: $n) }",
        json!({ "c": PASSWORD, "n": "An0ther-long-passphrase" }),
    )
    .await;
    for n in 0..11 {
        post(
            &app,
            None,
            "mutation($i: LoginInput!) { login(input: $i) { accessToken } }",
            json!({ "i": { "email": "ada@example.com", "password": format!("wrong-{n}") } }),
        )
        .await;
    }

    let events = app
        .sql_text(&format!(
            "SELECT string_agg(action || '|' || coalesce(client_ip, '-') || '|' || coalesce(user_agent, '-'), ',' ORDER BY created_at, id) AS t \
             FROM audit_log WHERE actor_id = '{}'",
            user.id
        ))
        .await;
    let events: Vec<&str> = events.split(',').collect();
    let origin = format!("|198.51.100.23|{AGENT}");
    for action in [
        "user.login",
        "api_key.create",
        "api_key.revoke",
        "user.email_change_requested",
        "user.logout",
        "user.password_changed",
        "user.login_throttled",
    ] {
        assert!(
            events.contains(&format!("{action}{origin}").as_str()),
            "no {action} from the client in {events:?}"
        );
    }
    assert_eq!(
        events
            .iter()
            .filter(|e| e.starts_with("user.login_throttled"))
            .count(),
        1,
        "a burst is recorded once: {events:?}"
    );
}
