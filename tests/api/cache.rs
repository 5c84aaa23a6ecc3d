//! The caches of API keys, callers and tools: used while the invalidation listener is connected, and
//! never serving a row after a change to it has been committed and announced, whoever made it.

use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use serde_json::json;

use crate::helpers::TestApp;
use crate::helpers::upstream::Upstream;

const CREATE_KEY: &str =
    "mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { key } }";
const ME: &str = "{ me { email } }";

async fn ready(app: &TestApp) {
    app.state.live.wait_listening().await;
    assert!(app.state.caches.is_live());
}

/// Runs SQL as another server instance or an operator would: nothing tells this instance but the
/// database's own notifications.
async fn elsewhere(app: &TestApp, statements: &str) {
    let mut conn = AsyncPgConnection::establish(&app.db.url).await.unwrap();
    conn.batch_execute(statements).await.unwrap();
}

/// Asks `ME` with `credential` until it is refused; how long that took.
async fn refused_within(app: &TestApp, credential: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let body = app.graphql_as(credential, ME, json!({})).await;
        if body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED" {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "still accepted after {limit:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_cached_api_key_stops_working_when_another_instance_revokes_it() {
    let app = TestApp::spawn().await;
    ready(&app).await;
    let user = app.register("Ada", "ada@example.com").await;
    let created = app
        .graphql_as(
            &user.access_token,
            CREATE_KEY,
            json!({ "input": { "name": "script" } }),
        )
        .await;
    let key = created["data"]["createApiKey"]["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let cache_key = joyfull_hub::cache::key_of(&joyfull_hub::auth::tokens::hash_token(&key));

    let first = app.graphql_as(&key, ME, json!({})).await;
    assert_eq!(first["data"]["me"]["email"], "ada@example.com", "{first}");
    assert!(
        app.state.caches.api_keys.get(&cache_key).is_some(),
        "the key is cached after its first use"
    );
    // Using the key again is served from the cache: its row is not read (nor touched) again.
    elsewhere(&app, "UPDATE api_keys SET name = 'renamed elsewhere'").await;
    let second = app.graphql_as(&key, ME, json!({})).await;
    assert_eq!(second["data"]["me"]["email"], "ada@example.com");
    assert_eq!(
        app.state.caches.api_keys.get(&cache_key).map(|k| k.name),
        Some("script".to_owned()),
        "a change that cannot matter to authentication leaves the entry alone"
    );

    elsewhere(&app, "UPDATE api_keys SET revoked_at = now()").await;
    let took = refused_within(&app, &key, Duration::from_secs(3)).await;
    assert!(
        app.state
            .caches
            .api_keys
            .get(&cache_key)
            .is_none_or(|k| k.revoked_at.is_some()),
        "the cache holds no active copy of the revoked key"
    );
    eprintln!("revocation elsewhere reached this instance in {took:?}");
}

#[tokio::test]
async fn a_suspension_or_password_change_elsewhere_ends_cached_sessions() {
    let app = TestApp::spawn().await;
    ready(&app).await;
    let ada = app.register("Ada", "ada@example.com").await;
    let bob = app.register("Bob", "bob@example.com").await;
    for user in [&ada, &bob] {
        let body = app.graphql_as(&user.access_token, ME, json!({})).await;
        assert!(body["data"]["me"]["email"].is_string(), "{body}");
        assert!(
            app.state
                .caches
                .users
                .get(&user.id.parse().unwrap())
                .is_some()
        );
    }

    elsewhere(
        &app,
        "UPDATE users SET status = 'SUSPENDED' WHERE email = 'ada@example.com'",
    )
    .await;
    refused_within(&app, &ada.access_token, Duration::from_secs(3)).await;
    elsewhere(
        &app,
        "UPDATE users SET session_version = session_version + 1 WHERE email = 'bob@example.com'",
    )
    .await;
    refused_within(&app, &bob.access_token, Duration::from_secs(3)).await;
}

#[tokio::test]
async fn a_cached_tool_follows_changes_made_here_at_once_and_elsewhere_promptly() {
    let app = TestApp::spawn().await;
    ready(&app).await;
    let upstream = Upstream::start().await;
    let admin = app.admin("root@example.com").await;
    let user = app.register("Ada", "ada@example.com").await;
    app.subscribe_free(&user).await;
    let tool = app
        .create_tool(
            &admin,
            json!({ "name": "Cached", "endpoint": upstream.url("/ok") }),
        )
        .await;
    let id: uuid::Uuid = tool.parse().unwrap();

    let ok = app.invoke(&user.access_token, &tool, json!({}), None).await;
    assert_eq!(ok["data"]["invokeTool"]["tokensUsed"], 42, "{ok}");
    assert!(app.state.caches.tools.get(&id).is_some());

    // Through this instance: the very next call sees the new endpoint.
    let updated = app
        .graphql_as(
            &admin.access_token,
            "mutation($id: ID!, $i: ToolInput!) { updateTool(id: $id, input: $i) { id } }",
            json!({ "id": tool, "i": { "endpoint": upstream.url("/no-usage") } }),
        )
        .await;
    assert_eq!(
        updated["data"]["updateTool"]["id"],
        tool.as_str(),
        "{updated}"
    );
    let moved = app.invoke(&user.access_token, &tool, json!({}), None).await;
    assert_eq!(
        moved["data"]["invokeTool"]["tokensEstimated"], true,
        "{moved}"
    );

    // Elsewhere: disabled by another instance, refused here once the notification arrives.
    elsewhere(
        &app,
        &format!("UPDATE tools SET enabled = false WHERE id = '{tool}'"),
    )
    .await;
    let started = Instant::now();
    loop {
        let body = app.invoke(&user.access_token, &tool, json!({}), None).await;
        if body["errors"][0]["extensions"]["code"] == "NOT_FOUND" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "still served: {body}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_session_ended_by_another_instance_is_refused_here_within_moments() {
    let app = TestApp::spawn().await;
    ready(&app).await;
    let user = app.register("Ada", "ada@example.com").await;
    let first = app.graphql_as(&user.access_token, ME, json!({})).await;
    assert_eq!(first["data"]["me"]["email"], "ada@example.com", "{first}");

    // Another instance logs the session out: it writes the ended session, nothing else tells this one.
    elsewhere(
        &app,
        &format!(
            "INSERT INTO ended_sessions (family_id, user_id, ended_at, forget_after) \
             SELECT family_id, user_id, now(), now() + interval '1 hour' FROM refresh_tokens WHERE user_id = '{}'",
            user.id
        ),
    )
    .await;
    let took = refused_within(&app, &user.access_token, Duration::from_secs(1)).await;
    eprintln!("a logout elsewhere reached this instance in {took:?}");
}
