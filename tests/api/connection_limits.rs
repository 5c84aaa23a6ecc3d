//! What one client connection may hold: slow headers are cut off, and past the connection limit a new
//! connection is answered 503 at once instead of waiting.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::TestApp;

/// Sends a whole request and reads the answer until the server closes the connection.
async fn request(app: &TestApp, path: &str) -> String {
    let mut stream = TcpStream::connect(app.address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: hub\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    answer
}

#[tokio::test]
async fn a_client_that_sends_its_headers_too_slowly_is_cut_off() {
    let app = TestApp::spawn_with(|c| {
        c.connections.header_read_timeout = Duration::from_secs(1);
    })
    .await;
    let mut stream = TcpStream::connect(app.address).await.unwrap();
    let started = Instant::now();
    // Headers that never end.
    stream
        .write_all(b"GET /health HTTP/1.1\r\nhost: hub\r\nx-slow: 1\r\n")
        .await
        .unwrap();

    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;

    assert!(closed.is_ok(), "the connection is still open after 5 s");
    let after = started.elapsed();
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(4),
        "closed after {after:?}"
    );
    assert!(
        !String::from_utf8_lossy(&rest).contains("200 OK"),
        "no answer to an unfinished request"
    );
}

#[tokio::test]
async fn past_the_connection_limit_a_new_connection_is_answered_503_at_once() {
    let app = TestApp::spawn_with(|c| c.connections.max_connections = 2).await;
    let first = TcpStream::connect(app.address).await.unwrap();
    let second = TcpStream::connect(app.address).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let refused = request(&app, "/health").await;
    drop(first);
    drop(second);
    let mut served = String::new();
    for _ in 0..50 {
        served = request(&app, "/health").await;
        if served.starts_with("HTTP/1.1 200") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(
        refused.to_ascii_lowercase().contains("retry-after: 1"),
        "{refused}"
    );
    assert!(refused.contains("RATE_LIMITED"), "{refused}");
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
}
