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

const CATALOGUE: &str = "query($after: String) { tools(first: 2, after: $after) { totalCount nodes { name } pageInfo { endCursor } } }";

/// The catalogue's names as a user sees them, page after page, and the total.
async fn catalogue_names(app: &TestApp, token: &str) -> (Vec<String>, i64) {
    let (mut names, mut after) = (Vec::new(), serde_json::Value::Null);
    loop {
        let page = app
            .graphql_as(token, CATALOGUE, json!({ "after": after }))
            .await;
        let tools = &page["data"]["tools"];
        let nodes = tools["nodes"]
            .as_array()
            .unwrap_or_else(|| panic!("{page}"));
        let total = tools["totalCount"].as_i64().unwrap();
        names.extend(nodes.iter().map(|n| n["name"].as_str().unwrap().to_owned()));
        if nodes.len() < 2 {
            return (names, total);
        }
        after = tools["pageInfo"]["endCursor"].clone();
    }
}

#[tokio::test]
async fn the_catalogue_is_served_from_memory_and_a_change_anywhere_shows_within_a_second() {
    let app = TestApp::spawn().await;
    ready(&app).await;
    let admin = app.admin("root@example.com").await;
    let user = app.register("Ada", "ada@example.com").await;
    for name in ["Delta", "alpha", "Charlie", "bravo", "Echo"] {
        app.create_tool(
            &admin,
            json!({ "name": name, "endpoint": "http://127.0.0.1:9/x" }),
        )
        .await;
    }
    let (names, total) = catalogue_names(&app, &user.access_token).await;
    // The database's order, page after page, from the snapshot.
    let expected = app
        .sql_text("SELECT string_agg(name, ',' ORDER BY name, id) AS t FROM tools WHERE deleted_at IS NULL")
        .await;
    assert_eq!(names.join(","), expected);
    assert_eq!(total, 5);
    assert!(app.state.caches.catalogue.get(&()).is_some());

    // Another instance adds a tool and disables one: seen here within a second.
    elsewhere(
        &app,
        "INSERT INTO tools (id, slug, name, endpoint) \
         VALUES (gen_random_uuid(), 'foxtrot', 'Foxtrot', 'http://127.0.0.1:9/x'); \
         UPDATE tools SET enabled = false WHERE name = 'Echo';",
    )
    .await;
    let started = Instant::now();
    loop {
        let (names, total) = catalogue_names(&app, &user.access_token).await;
        if names.contains(&"Foxtrot".to_owned()) && !names.contains(&"Echo".to_owned()) {
            assert_eq!(total, 5);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "stale catalogue: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Administrators still see the disabled tool; a search filters the snapshot like the database does.
    let (all, total) = catalogue_names(&app, &admin.access_token).await;
    assert_eq!((all.len(), total), (6, 6));
    let found = app
        .graphql_as(
            &user.access_token,
            "{ tools(search: \"ALP\") { totalCount nodes { name } } }",
            json!({}),
        )
        .await;
    assert_eq!(found["data"]["tools"]["totalCount"], 1, "{found}");
    assert_eq!(found["data"]["tools"]["nodes"][0]["name"], "alpha");
}

#[tokio::test]
async fn me_is_served_from_memory_and_follows_a_rename_here_at_once_and_elsewhere_promptly() {
    const PROFILE: &str = "{ me { name email } }";
    let app = TestApp::spawn().await;
    ready(&app).await;
    let user = app.register("Ada", "ada@example.com").await;
    let id = user.user_id().0;
    let me = app.graphql_as(&user.access_token, PROFILE, json!({})).await;
    assert_eq!(me["data"]["me"]["name"], "Ada", "{me}");
    assert!(app.state.caches.profiles.get(&id).is_some(), "cached");

    // Renamed through this instance: the next read shows it.
    let renamed = app
        .graphql_as(
            &user.access_token,
            "mutation($input: UpdateProfileInput!) { updateProfile(input: $input) { name } }",
            json!({ "input": { "name": "Ada L." } }),
        )
        .await;
    assert_eq!(
        renamed["data"]["updateProfile"]["name"], "Ada L.",
        "{renamed}"
    );
    let me = app.graphql_as(&user.access_token, PROFILE, json!({})).await;
    assert_eq!(me["data"]["me"]["name"], "Ada L.", "{me}");

    // Renamed and readdressed by another instance: seen here within a second.
    elsewhere(
        &app,
        &format!(
            "UPDATE users SET name = 'Ada Lovelace', email = 'countess@example.com' WHERE id = '{id}'"
        ),
    )
    .await;
    let started = Instant::now();
    loop {
        let me = app.graphql_as(&user.access_token, PROFILE, json!({})).await;
        if me["data"]["me"] == json!({ "name": "Ada Lovelace", "email": "countess@example.com" }) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "stale profile: {me}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
