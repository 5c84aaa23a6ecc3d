//! An open WebSocket keeps only the access its credentials still grant: the caller is checked again
//! while the socket is open, and the socket closes (`4401` for an expired token, `4403` otherwise) as
//! soon as they no longer hold.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::ws::{Socket, connect};
use crate::helpers::{PASSWORD, TestApp, TestUser};

/// A socket past `connection_init`, with a live usage subscription running.
async fn subscribed(app: &TestApp, credentials: Value) -> Socket {
    let mut socket = connect(app).await;
    let init = json!({ "type": "connection_init", "payload": credentials });
    socket.send(Message::text(init.to_string())).await.unwrap();
    let ack = next_message(&mut socket).await;
    assert!(
        matches!(&ack, Message::Text(t) if t.contains("connection_ack")),
        "{ack:?}"
    );
    let subscribe = json!({ "id": "1", "type": "subscribe", "payload": { "query": "subscription { usageEvents { id } }" } });
    socket
        .send(Message::text(subscribe.to_string()))
        .await
        .unwrap();
    socket
}

async fn next_message(socket: &mut Socket) -> Message {
    tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .expect("a message within 10 s")
        .expect("an open socket")
        .expect("a valid frame")
}

/// The close code the server sends, and how long after `since` it came.
async fn closed_with(socket: &mut Socket, since: Instant) -> (u16, Duration) {
    loop {
        match next_message(socket).await {
            Message::Close(Some(frame)) => return (frame.code.into(), since.elapsed()),
            Message::Close(None) => panic!("closed without a code"),
            Message::Text(text) => {
                let value: Value = serde_json::from_str(&text).unwrap();
                assert_ne!(value["type"], "error", "{value}");
            }
            _ => {}
        }
    }
}

fn bearer(token: &str) -> Value {
    json!({ "Authorization": format!("Bearer {token}") })
}

async fn key_of(app: &TestApp, user: &TestUser) -> (String, String) {
    let created = app
        .graphql_as(
            &user.access_token,
            "mutation { createApiKey(input: {name: \"live\"}) { key apiKey { id } } }",
            json!({}),
        )
        .await;
    (
        created["data"]["createApiKey"]["key"]
            .as_str()
            .unwrap()
            .to_owned(),
        created["data"]["createApiKey"]["apiKey"]["id"]
            .as_str()
            .unwrap()
            .to_owned(),
    )
}

#[tokio::test]
async fn revoking_a_key_closes_the_sockets_it_opened_within_a_second() {
    let app = TestApp::spawn().await;
    let user = app.register("Ada", "ada@example.com").await;
    let (key, key_id) = key_of(&app, &user).await;
    let mut socket = subscribed(&app, json!({ "X-API-Key": key })).await;

    let revoked_at = Instant::now();
    app.graphql_as(
        &user.access_token,
        "mutation($id: ID!) { revokeApiKey(id: $id) { id } }",
        json!({ "id": key_id }),
    )
    .await;
    let (code, after) = closed_with(&mut socket, revoked_at).await;

    assert_eq!(code, 4403);
    assert!(after < Duration::from_secs(1), "closed after {after:?}");
}

#[tokio::test]
async fn suspending_the_account_or_changing_its_password_closes_its_sockets() {
    let app = TestApp::spawn().await;
    let admin = app.admin("root@example.com").await;
    let ada = app.register("Ada", "ada@example.com").await;
    let bob = app.register("Bob", "bob@example.com").await;
    let mut suspended = subscribed(&app, bearer(&ada.access_token)).await;
    let mut changed = subscribed(&app, bearer(&bob.access_token)).await;

    let at = Instant::now();
    app.graphql_as(
        &admin.access_token,
        "mutation($id: ID!) { updateUser(id: $id, input: {status: SUSPENDED}) { status } }",
        json!({ "id": ada.id }),
    )
    .await;
    let (suspended_code, suspended_after) = closed_with(&mut suspended, at).await;
    let at = Instant::now();
    let password = app
        .graphql_as(
            &bob.access_token,
            "mutation($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: $n) }",
            json!({ "c": PASSWORD, "n": "An0ther-long-passphrase" }),
        )
        .await;
    let (changed_code, changed_after) = closed_with(&mut changed, at).await;

    assert_eq!(password["data"]["changePassword"], true, "{password}");
    assert_eq!(suspended_code, 4403);
    assert_eq!(changed_code, 4403);
    assert!(
        suspended_after < Duration::from_secs(1),
        "{suspended_after:?}"
    );
    assert!(changed_after < Duration::from_secs(1), "{changed_after:?}");
}

#[tokio::test]
async fn a_socket_closes_with_4401_when_its_access_token_expires() {
    let app = TestApp::spawn_with(|c| c.auth.access_token_ttl = Duration::from_secs(2)).await;
    let user = app.register("Ada", "ada@example.com").await;
    let issued = Instant::now();
    let mut socket = subscribed(&app, bearer(&user.access_token)).await;

    let (code, after) = closed_with(&mut socket, issued).await;

    assert_eq!(code, 4401);
    assert!(
        after >= Duration::from_secs(1) && after < Duration::from_secs(4),
        "closed {after:?} after the token was issued"
    );
}

#[tokio::test]
async fn a_demoted_administrator_loses_the_socket_opened_as_one() {
    let app = TestApp::spawn().await;
    let root = app.admin("root@example.com").await;
    let other = app.admin("other@example.com").await;
    let mut socket = subscribed(&app, bearer(&other.access_token)).await;

    let at = Instant::now();
    let demoted = app
        .graphql_as(
            &root.access_token,
            "mutation($id: ID!) { updateUser(id: $id, input: {role: USER}) { role } }",
            json!({ "id": other.id }),
        )
        .await;
    let (code, after) = closed_with(&mut socket, at).await;

    assert_eq!(demoted["data"]["updateUser"]["role"], "USER", "{demoted}");
    assert_eq!(code, 4403);
    assert!(after < Duration::from_secs(1), "{after:?}");
}

#[tokio::test]
async fn a_socket_that_never_initialises_closes_with_4408() {
    let app = TestApp::spawn_with(|c| c.connections.ws_init_timeout = Duration::from_secs(1)).await;
    let opened = Instant::now();
    let mut socket = connect(&app).await;

    let (code, after) = closed_with(&mut socket, opened).await;

    assert_eq!(code, 4408);
    assert!(after < Duration::from_secs(3), "{after:?}");
}

#[tokio::test]
async fn a_socket_starts_only_so_many_operations() {
    let app = TestApp::spawn_with(|c| c.connections.ws_max_operations = 2).await;
    let user = app.register("Ada", "ada@example.com").await;
    let mut socket = subscribed(&app, bearer(&user.access_token)).await;

    let at = Instant::now();
    for id in ["2", "3"] {
        let subscribe =
            json!({ "id": id, "type": "subscribe", "payload": { "query": "{ __typename }" } });
        socket
            .send(Message::text(subscribe.to_string()))
            .await
            .unwrap();
    }
    let (code, _) = closed_with(&mut socket, at).await;

    assert_eq!(code, 4429);
}

#[tokio::test]
async fn a_websocket_message_is_no_larger_than_a_request_body() {
    let app = TestApp::spawn_with(|c| c.max_body_bytes = 64 * 1024).await;
    let mut socket = connect(&app).await;

    let huge = json!({ "type": "connection_init", "payload": { "pad": "x".repeat(100 * 1024) } });
    let _ = socket.send(Message::text(huge.to_string())).await;
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match socket.next().await {
                None | Some(Err(_)) => return None,
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .expect("the server ends the socket");

    assert!(matches!(ended, None | Some(1009)), "{ended:?}");
}

#[tokio::test]
async fn open_sockets_are_counted_in_the_metrics() {
    let app = TestApp::spawn().await;
    let user = app.register("Ada", "ada@example.com").await;
    let _socket = subscribed(&app, bearer(&user.access_token)).await;

    let text = app.get("/metrics").await.text().await.unwrap();

    let open: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("websocket_connections_open "))
        .unwrap_or_else(|| panic!("no gauge in {text}"))
        .trim()
        .parse()
        .unwrap();
    assert!(open >= 1.0, "{open}");
}
