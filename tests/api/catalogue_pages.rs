//! Catalogue pages kept as answered (`tools::rendered`): the next request for the same page, selection
//! and caller is answered from the kept page, byte for byte what resolving it gives; anything else that
//! changes the answer (the selection as executed, the arguments, who asks, the catalogue) gets its own.
//! Over HTTP a kept page is written into the answer as it was serialised (`verbatim`); over the
//! WebSocket its value is.

use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{TestApp, TestUser};

/// The answer to `query`, byte for byte.
async fn answer(app: &TestApp, user: &TestUser, query: &str, variables: Value) -> String {
    app.graphql_text_as(&user.access_token, query, variables)
        .await
}

/// How many pages are kept for the current catalogue snapshot.
fn kept(app: &TestApp) -> usize {
    match app.state.caches.catalogue.get(&()) {
        Some(snapshot) => app.state.rendered_pages.kept(&snapshot),
        None => 0,
    }
}

/// An application with the catalogue Alpha, Bravo (disabled) and Charlie, a user and an administrator.
async fn catalogue() -> (TestApp, TestUser, TestUser) {
    let app = TestApp::spawn().await;
    app.state.live.wait_listening().await;
    let admin = app.admin("root@example.com").await;
    let user = app.register("Ada", "ada@example.com").await;
    for (name, enabled) in [("Alpha", true), ("Bravo", false), ("Charlie", true)] {
        app.create_tool(
            &admin,
            json!({ "name": name, "endpoint": "http://127.0.0.1:9/x", "enabled": enabled }),
        )
        .await;
    }
    // The creations' own notifications arrive later and drop the snapshot again: let them land first.
    app.state.caches.sync(&app.state.pool).await.unwrap();
    (app, user, admin)
}

#[tokio::test]
async fn a_kept_page_answers_only_the_same_selection_arguments_and_caller() {
    let (app, user, admin) = catalogue().await;
    let full = "query($full: Boolean!) { tools { nodes { n: name ...More @include(if: $full) } } } \
                fragment More on Tool { slug }";
    // Each case differs from the others in one thing that changes the answer; each is asked twice.
    let cases: Vec<(&TestUser, &str, Value, Value)> = vec![
        (
            &user,
            "{ tools { nodes { name } } }",
            json!({}),
            json!({ "nodes": [{ "name": "Alpha" }, { "name": "Charlie" }] }),
        ),
        (
            &admin,
            "{ tools { nodes { name } } }",
            json!({}),
            json!({ "nodes": [{ "name": "Alpha" }, { "name": "Bravo" }, { "name": "Charlie" }] }),
        ),
        (
            &user,
            "{ tools { nodes { slug } } }",
            json!({}),
            json!({ "nodes": [{ "slug": "alpha" }, { "slug": "charlie" }] }),
        ),
        (
            &user,
            "{ tools { nodes { title: name } } }",
            json!({}),
            json!({ "nodes": [{ "title": "Alpha" }, { "title": "Charlie" }] }),
        ),
        (
            &user,
            full,
            json!({ "full": true }),
            json!({ "nodes": [{ "n": "Alpha", "slug": "alpha" }, { "n": "Charlie", "slug": "charlie" }] }),
        ),
        (
            &user,
            full,
            json!({ "full": false }),
            json!({ "nodes": [{ "n": "Alpha" }, { "n": "Charlie" }] }),
        ),
        (
            &user,
            "{ tools(first: 1) { totalCount nodes { name } pageInfo { hasNextPage } } }",
            json!({}),
            json!({ "totalCount": 2, "nodes": [{ "name": "Alpha" }], "pageInfo": { "hasNextPage": true } }),
        ),
        (
            &user,
            "{ tools(search: \"char\") { totalCount nodes { name } } }",
            json!({}),
            json!({ "totalCount": 1, "nodes": [{ "name": "Charlie" }] }),
        ),
    ];
    for (round, expected_kept) in [(0, cases.len()), (1, cases.len())] {
        for (who, query, variables, expected) in &cases {
            let served = app.state.rendered_pages.served();
            let first = answer(&app, who, query, variables.clone()).await;
            let second = answer(&app, who, query, variables.clone()).await;
            assert_eq!(
                first, second,
                "{query} {variables}: kept differs from resolved"
            );
            let body: Value = serde_json::from_str(&first).unwrap();
            assert_eq!(&body["data"]["tools"], expected, "{query} {variables}");
            assert_eq!(
                app.state.rendered_pages.served() - served,
                2 - u64::from(round == 0),
                "{query} {variables}: served from the kept page"
            );
        }
        assert_eq!(kept(&app), expected_kept);
    }

    // Another text with the same selection as executed is the same page.
    let served = app.state.rendered_pages.served();
    let spread = "{ tools { nodes { ...N } } } fragment N on Tool { name }";
    assert_eq!(
        answer(&app, &user, spread, json!({})).await,
        answer(&app, &user, cases[0].1, json!({})).await
    );
    assert_eq!(app.state.rendered_pages.served() - served, 2);

    // The order of the selection is the order of the answer.
    let ordered = answer(&app, &user, "{ tools { nodes { slug name } } }", json!({})).await;
    assert!(
        ordered.contains(r#"{"slug":"alpha","name":"Alpha"}"#),
        "{ordered}"
    );
    let ordered = answer(&app, &user, "{ tools { nodes { slug name } } }", json!({})).await;
    assert!(
        ordered.contains(r#"{"slug":"alpha","name":"Alpha"}"#),
        "{ordered}"
    );

    // Cursors from a kept page lead on.
    let page = "query($after: String) { tools(first: 1, after: $after) { nodes { name } pageInfo { endCursor } } }";
    let first: Value = serde_json::from_str(&answer(&app, &user, page, json!({})).await).unwrap();
    let cursor = first["data"]["tools"]["pageInfo"]["endCursor"].clone();
    for _ in 0..2 {
        let next: Value =
            serde_json::from_str(&answer(&app, &user, page, json!({ "after": cursor })).await)
                .unwrap();
        assert_eq!(
            next["data"]["tools"]["nodes"],
            json!([{ "name": "Charlie" }])
        );
    }
}

#[tokio::test]
async fn administrators_fields_are_resolved_every_time_and_refused_to_users_every_time() {
    let (app, user, admin) = catalogue().await;
    let query = "{ tools { nodes { name endpoint } } }";
    let served = app.state.rendered_pages.served();
    for _ in 0..2 {
        let body: Value =
            serde_json::from_str(&answer(&app, &user, query, json!({})).await).unwrap();
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "FORBIDDEN",
            "{body}"
        );
        let body: Value =
            serde_json::from_str(&answer(&app, &admin, query, json!({})).await).unwrap();
        assert_eq!(
            body["data"]["tools"]["nodes"][1]["endpoint"], "http://127.0.0.1:9/x",
            "{body}"
        );
    }
    assert_eq!(app.state.rendered_pages.served(), served);
    assert_eq!(kept(&app), 0);
}

#[tokio::test]
async fn a_change_here_shows_at_once_and_a_change_elsewhere_within_a_second() {
    let (app, user, admin) = catalogue().await;
    let query = "{ tools { nodes { id name } } }";
    let names = |body: &str| -> Vec<String> {
        let body: Value = serde_json::from_str(body).unwrap();
        body["data"]["tools"]["nodes"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .map(|node| node["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let first = answer(&app, &user, query, json!({})).await;
    let kept_again = answer(&app, &user, query, json!({})).await;
    assert_eq!(first, kept_again);
    assert_eq!(kept(&app), 1);
    let body: Value = serde_json::from_str(&first).unwrap();
    let alpha = body["data"]["tools"]["nodes"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Through this instance: the very next read.
    let renamed = app
        .graphql_as(
            &admin.access_token,
            "mutation($id: ID!, $i: ToolInput!) { updateTool(id: $id, input: $i) { id } }",
            json!({ "id": alpha, "i": { "name": "Able" } }),
        )
        .await;
    assert_eq!(
        renamed["data"]["updateTool"]["id"],
        alpha.as_str(),
        "{renamed}"
    );
    assert_eq!(
        names(&answer(&app, &user, query, json!({})).await),
        ["Able", "Charlie"]
    );

    // Elsewhere: another instance enables Bravo; seen here within a second.
    let mut conn = AsyncPgConnection::establish(&app.db.url).await.unwrap();
    conn.batch_execute("UPDATE tools SET enabled = true WHERE name = 'Bravo'")
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let now = names(&answer(&app, &user, query, json!({})).await);
        if now == ["Able", "Bravo", "Charlie"] {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "stale page: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Once the notifications have landed, one page is kept for the snapshot in use: the old snapshot's
    // pages went with it.
    app.state.caches.sync(&app.state.pool).await.unwrap();
    answer(&app, &user, query, json!({})).await;
    assert_eq!(kept(&app), 1);
}

/// One query over `/graphql/ws` (`graphql-transport-ws`) as `user`: its `next` payload.
async fn over_websocket(app: &TestApp, user: &TestUser, query: &str) -> Value {
    let mut socket = crate::helpers::ws::connect(app).await;
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", user.access_token) } });
    socket.send(Message::text(init.to_string())).await.unwrap();
    let subscribe = json!({ "id": "1", "type": "subscribe", "payload": { "query": query } });
    socket
        .send(Message::text(subscribe.to_string()))
        .await
        .unwrap();
    loop {
        let value = crate::helpers::ws::next_json(&mut socket).await;
        if value["id"] == "1" && value["type"] == "next" {
            return value["payload"].clone();
        }
        assert_ne!(value["type"], "error", "{value}");
    }
}

#[tokio::test]
async fn kept_pages_are_written_into_every_answer_as_resolving_them_writes_them() {
    let (app, user, _) = catalogue().await;
    let one = "{ tools { nodes { name slug } } }";
    let two = "{ a: tools(first: 1) { nodes { name } } b: tools { nodes { slug } } me { name } }";
    let expected_two = json!({
        "a": { "nodes": [{ "name": "Alpha" }] },
        "b": { "nodes": [{ "slug": "alpha" }, { "slug": "charlie" }] },
        "me": { "name": "Ada" },
    });

    // Over HTTP: resolved, then from the kept pages (two in one answer), byte for byte the same. The
    // first request loads the catalogue's snapshot, which the two pages are then cut from.
    answer(&app, &user, one, json!({})).await;
    let served = app.state.rendered_pages.served();
    let resolved = answer(&app, &user, two, json!({})).await;
    let kept_answer = answer(&app, &user, two, json!({})).await;
    assert_eq!(app.state.rendered_pages.served() - served, 2);
    assert_eq!(kept_answer, resolved);
    let body: Value = serde_json::from_str(&kept_answer).unwrap();
    assert_eq!(body["data"], expected_two, "{kept_answer}");
    assert!(!kept_answer.contains("verbatim"), "{kept_answer}");

    // A batch: every request's kept page lands in its own answer.
    let served = app.state.rendered_pages.served();
    let batch = app
        .post_text_as(
            "/graphql",
            &user.access_token,
            &json!([{ "query": two }, { "query": one }, { "query": two }]),
        )
        .await;
    assert_eq!(app.state.rendered_pages.served() - served, 5);
    assert!(!batch.contains("verbatim"), "{batch}");
    let answers: Value = serde_json::from_str(&batch).unwrap();
    assert_eq!(answers[0]["data"], expected_two, "{batch}");
    assert_eq!(
        answers[1]["data"]["tools"],
        json!({ "nodes": [{ "name": "Alpha", "slug": "alpha" }, { "name": "Charlie", "slug": "charlie" }] }),
        "{batch}"
    );
    assert_eq!(answers[2]["data"], expected_two, "{batch}");

    // Over the WebSocket, which writes its answers itself: the kept page's value.
    let served = app.state.rendered_pages.served();
    let payload = over_websocket(&app, &user, two).await;
    assert_eq!(app.state.rendered_pages.served() - served, 2);
    assert_eq!(payload["data"], expected_two, "{payload}");
}
