//! API keys: created once, used by scripts, revoked at once.

use serde_json::json;

use crate::helpers::{TestApp, error_code, error_message};

const CREATE: &str = "mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { key apiKey { id name prefix active expiresAt lastUsedAt } } }";
const REVOKE: &str = "mutation($id: ID!) { revokeApiKey(id: $id) { id active } }";
const ME: &str = "{ me { email } }";

async fn me_with_header(app: &TestApp, name: &str, value: &str) -> reqwest::Response {
    app.client
        .post(app.url("/graphql"))
        .header(name, value)
        .json(&json!({ "query": ME }))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_key_is_shown_once_works_in_both_headers_and_stops_working_when_revoked() {
    let app = TestApp::spawn().await;
    let user = app.register("Ada", "ada@example.com").await;

    let created = app
        .graphql_as(
            &user.access_token,
            CREATE,
            json!({ "input": { "name": "CI pipeline" } }),
        )
        .await;
    let key = created["data"]["createApiKey"]["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let api_key = &created["data"]["createApiKey"]["apiKey"];
    assert!(key.starts_with("jhk_") && key.len() >= 4 + 64, "{key}");
    assert!(key.starts_with(api_key["prefix"].as_str().unwrap()));
    assert_eq!(api_key["active"], true);

    let bearer = app.graphql_as(&key, ME, json!({})).await;
    let header = me_with_header(&app, "x-api-key", &key)
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(bearer["data"]["me"]["email"], "ada@example.com");
    assert_eq!(header["data"]["me"]["email"], "ada@example.com");

    let listed = app
        .graphql_as(
            &user.access_token,
            "{ apiKeys { name prefix active lastUsedAt } me { apiKeys { name } } }",
            json!({}),
        )
        .await;
    assert_eq!(listed["data"]["apiKeys"][0]["name"], "CI pipeline");
    assert!(
        listed["data"]["apiKeys"][0]["lastUsedAt"].is_string(),
        "{listed}"
    );
    assert_eq!(listed["data"]["me"]["apiKeys"][0]["name"], "CI pipeline");
    assert!(
        !listed.to_string().contains(&key),
        "the secret is never listed"
    );

    let id = api_key["id"].as_str().unwrap();
    let revoked = app
        .graphql_as(&user.access_token, REVOKE, json!({ "id": id }))
        .await;
    assert_eq!(revoked["data"]["revokeApiKey"]["active"], false);

    let refused = me_with_header(&app, "x-api-key", &key).await;
    assert_eq!(refused.status(), 401);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
    assert!(error_message(&body).contains("revoked"));
}

#[tokio::test]
async fn only_hashes_of_keys_are_stored() {
    let app = TestApp::spawn().await;
    let user = app.register("Ada", "ada@example.com").await;
    let created = app
        .graphql_as(
            &user.access_token,
            CREATE,
            json!({ "input": { "name": "k" } }),
        )
        .await;
    let key = created["data"]["createApiKey"]["key"].as_str().unwrap();

    let mut conn =
        <diesel_async::AsyncPgConnection as diesel_async::AsyncConnection>::establish(&app.db.url)
            .await
            .unwrap();
    #[derive(diesel::QueryableByName)]
    struct Dump {
        #[diesel(sql_type = diesel::sql_types::Text)]
        dump: String,
    }
    let dump: Dump = diesel_async::RunQueryDsl::get_result(
        diesel::sql_query("SELECT (SELECT string_agg(t::text, ' ') FROM api_keys t) || (SELECT string_agg(r::text, ' ') FROM refresh_tokens r) AS dump"),
        &mut conn,
    )
    .await
    .unwrap();
    assert!(!dump.dump.contains(&key[4..]), "the key is stored in clear");
    assert!(
        !dump.dump.contains(&user.refresh_token[4..]),
        "the refresh token is stored in clear"
    );
}

#[tokio::test]
async fn an_expired_key_is_refused_and_past_expiries_cannot_be_set() {
    let app = TestApp::spawn().await;
    let user = app.register("Ada", "ada@example.com").await;
    let created = app
        .graphql_as(
            &user.access_token,
            CREATE,
            json!({ "input": { "name": "short-lived", "expiresAt": "2099-01-01T00:00:00Z" } }),
        )
        .await;
    let key = created["data"]["createApiKey"]["key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.graphql_as(&key, ME, json!({})).await["data"]["me"]["email"],
        "ada@example.com"
    );
    app.sql("UPDATE api_keys SET expires_at = now() - interval '1 second'")
        .await;

    let refused = app.graphql_as(&key, ME, json!({})).await;
    let past = app
        .graphql_as(
            &user.access_token,
            CREATE,
            json!({ "input": { "name": "past", "expiresAt": "2000-01-01T00:00:00Z" } }),
        )
        .await;
    let listed = app
        .graphql_as(&user.access_token, "{ apiKeys { active } }", json!({}))
        .await;

    assert_eq!(error_code(&refused), "UNAUTHENTICATED");
    assert!(error_message(&refused).contains("expired"));
    assert_eq!(error_code(&past), "BAD_USER_INPUT");
    assert_eq!(past["errors"][0]["extensions"]["field"], "expiresAt");
    assert_eq!(listed["data"]["apiKeys"][0]["active"], false);
}

#[tokio::test]
async fn an_unknown_key_is_refused_and_nobody_revokes_someone_elses_key() {
    let app = TestApp::spawn().await;
    let ada = app.register("Ada", "ada@example.com").await;
    let bob = app.register("Bob", "bob@example.com").await;
    let created = app
        .graphql_as(
            &ada.access_token,
            CREATE,
            json!({ "input": { "name": "ada's" } }),
        )
        .await;
    let id = created["data"]["createApiKey"]["apiKey"]["id"]
        .as_str()
        .unwrap();

    let unknown = me_with_header(&app, "x-api-key", &format!("jhk_{}", "0".repeat(64))).await;
    let foreign = app
        .graphql_as(&bob.access_token, REVOKE, json!({ "id": id }))
        .await;
    let anonymous = app
        .graphql(&format!(
            "mutation {{ revokeApiKey(id: \"{id}\") {{ id }} }}"
        ))
        .await;

    assert_eq!(unknown.status(), 401);
    assert_eq!(error_code(&foreign), "NOT_FOUND");
    assert_eq!(error_code(&anonymous), "UNAUTHENTICATED");
}

#[tokio::test]
async fn a_key_authenticates_over_the_websocket_connection_init() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let app = TestApp::spawn().await;
    let user = app.register("Ada", "ada@example.com").await;
    let mut socket = crate::helpers::ws::connect(&app).await;

    socket
        .send(Message::text(
            json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", user.access_token) } })
                .to_string(),
        ))
        .await
        .unwrap();
    socket
        .send(Message::text(
            json!({ "id": "1", "type": "subscribe", "payload": { "query": ME } }).to_string(),
        ))
        .await
        .unwrap();

    let mut email = None;
    while let Some(Ok(message)) = socket.next().await {
        if let Message::Text(text) = message {
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            if value["type"] == "next" {
                email = value["payload"]["data"]["me"]["email"]
                    .as_str()
                    .map(str::to_owned);
                break;
            }
        }
    }
    assert_eq!(email.as_deref(), Some("ada@example.com"));
}
