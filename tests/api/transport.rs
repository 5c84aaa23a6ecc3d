//! GraphQL over WebSocket (`graphql-transport-ws`).

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::TestApp;
use crate::helpers::ws::{next_frame, next_json};

#[tokio::test]
async fn the_websocket_endpoint_speaks_graphql_transport_ws() {
    let app = TestApp::spawn().await;
    let mut request = format!("ws://{}/graphql/ws", app.address)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );

    let (mut socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "graphql-transport-ws"
    );
    assert!(response.headers().contains_key("x-request-id"));

    socket
        .send(Message::text(
            json!({ "type": "connection_init", "payload": {} }).to_string(),
        ))
        .await
        .unwrap();
    assert_eq!(next_json(&mut socket).await["type"], "connection_ack");

    socket
        .send(Message::text(
            json!({ "id": "1", "type": "subscribe", "payload": { "query": "{ __typename }" } })
                .to_string(),
        ))
        .await
        .unwrap();
    let next = next_json(&mut socket).await;
    assert_eq!(next["type"], "next");
    assert_eq!(next["id"], "1");
    assert_eq!(next["payload"]["data"]["__typename"], "Query");
    assert_eq!(next_json(&mut socket).await["type"], "complete");
}

mod protocol_rules {
    use super::*;
    use crate::helpers::ws::{Socket, connect as open};

    async fn send(socket: &mut Socket, text: &str) {
        socket.send(Message::text(text.to_owned())).await.unwrap();
    }

    async fn close_code(socket: &mut Socket) -> u16 {
        loop {
            if let Message::Close(frame) = next_frame(socket, Duration::from_secs(5)).await {
                return frame.map_or(0, |f| u16::from(f.code));
            }
        }
    }

    const INIT: &str = r#"{"type":"connection_init","payload":{}}"#;

    #[tokio::test]
    async fn messages_that_break_the_protocol_close_the_socket_with_its_codes() {
        let app = TestApp::spawn().await;
        let subscribe = r#"{"id":"1","type":"subscribe","payload":{"query":"subscription { usageEvents { id } }"}}"#;

        let mut early = open(&app).await;
        send(&mut early, subscribe).await;
        let mut garbled = open(&app).await;
        send(&mut garbled, "{ not json").await;
        let mut unknown = open(&app).await;
        send(&mut unknown, r#"{"type":"hello"}"#).await;
        let mut twice = open(&app).await;
        send(&mut twice, INIT).await;
        assert_eq!(next_json(&mut twice).await["type"], "connection_ack");
        send(&mut twice, INIT).await;
        let user = app.register("Ada", "ada@example.com").await;
        let mut duplicate = open(&app).await;
        let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", user.access_token) } });
        send(&mut duplicate, &init.to_string()).await;
        assert_eq!(next_json(&mut duplicate).await["type"], "connection_ack");
        let long_running = r#"{"id":"7","type":"subscribe","payload":{"query":"subscription { usageEvents { id } }"}}"#;
        send(&mut duplicate, long_running).await;
        send(&mut duplicate, long_running).await;

        assert_eq!(close_code(&mut early).await, 4401);
        assert_eq!(close_code(&mut garbled).await, 4400);
        assert_eq!(close_code(&mut unknown).await, 4400);
        assert_eq!(close_code(&mut twice).await, 4429);
        assert_eq!(close_code(&mut duplicate).await, 4409);
    }

    #[tokio::test]
    async fn an_operation_that_fails_validation_is_answered_with_error_and_no_complete() {
        let app = TestApp::spawn().await;
        let mut socket = open(&app).await;
        send(&mut socket, INIT).await;
        assert_eq!(next_json(&mut socket).await["type"], "connection_ack");

        send(
            &mut socket,
            r#"{"id":"1","type":"subscribe","payload":{"query":"{ noSuchField }"}}"#,
        )
        .await;
        let answer = next_json(&mut socket).await;
        send(
            &mut socket,
            r#"{"id":"2","type":"subscribe","payload":{"query":"{ __typename }"}}"#,
        )
        .await;
        let next = next_json(&mut socket).await;

        assert_eq!(answer["type"], "error", "{answer}");
        assert_eq!(answer["id"], "1");
        assert!(answer["payload"][0]["message"].is_string(), "{answer}");
        assert_eq!(
            next["type"], "next",
            "no complete for the failed one: {next}"
        );
        assert_eq!(next["id"], "2");
    }

    #[tokio::test]
    async fn ping_is_answered_with_pong_and_complete_works_both_ways() {
        let app = TestApp::spawn().await;
        let mut socket = open(&app).await;
        send(&mut socket, INIT).await;
        assert_eq!(next_json(&mut socket).await["type"], "connection_ack");

        send(&mut socket, r#"{"type":"ping"}"#).await;
        let pong = next_json(&mut socket).await;
        send(
            &mut socket,
            r#"{"id":"q","type":"subscribe","payload":{"query":"{ __typename }"}}"#,
        )
        .await;
        let next = next_json(&mut socket).await;
        let done = next_json(&mut socket).await;
        // The client may complete an id the server has finished; the id can then be used again.
        send(&mut socket, r#"{"id":"q","type":"complete"}"#).await;
        send(
            &mut socket,
            r#"{"id":"q","type":"subscribe","payload":{"query":"{ __typename }"}}"#,
        )
        .await;
        let again = next_json(&mut socket).await;

        assert_eq!(pong["type"], "pong", "{pong}");
        assert_eq!(next["type"], "next", "{next}");
        assert_eq!(done["type"], "complete", "{done}");
        assert_eq!(done["id"], "q");
        assert_eq!(again["type"], "next", "{again}");
    }
}
