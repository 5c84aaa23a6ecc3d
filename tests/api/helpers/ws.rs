//! A GraphQL-over-WebSocket client for the tests (`graphql-transport-ws`).

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::TestApp;

/// A client socket.
pub type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `/graphql/ws` speaking `graphql-transport-ws`; nothing is sent yet.
pub async fn connect(app: &TestApp) -> Socket {
    let mut request = format!("ws://{}/graphql/ws", app.address)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

/// A socket's stream of frames.
pub trait Frames:
    StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin
{
}

impl<S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin> Frames
    for S
{
}

/// The next frame on `socket`; fails after `wait` without one, or when the socket is closed or broken.
pub async fn next_frame(socket: &mut impl Frames, wait: Duration) -> Message {
    tokio::time::timeout(wait, socket.next())
        .await
        .unwrap_or_else(|_| panic!("a message within {wait:?}"))
        .expect("an open socket")
        .expect("a valid frame")
}

/// The next text message on `socket`, as JSON; other frames are skipped. Fails after 10 s without one.
pub async fn next_json(socket: &mut impl Frames) -> Value {
    loop {
        if let Message::Text(text) = next_frame(socket, Duration::from_secs(10)).await {
            return serde_json::from_str(&text).expect("JSON");
        }
    }
}
