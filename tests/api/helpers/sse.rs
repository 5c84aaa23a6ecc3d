//! A GraphQL-over-SSE client for the tests (`POST /graphql/stream`), read event by event.

use std::time::Duration;

use serde_json::Value;

use super::TestApp;

/// An open event stream, read event by event.
pub struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

impl EventStream {
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            response,
            buffer: String::new(),
        }
    }

    pub async fn open(app: &TestApp, credential: Option<&str>, body: Value) -> reqwest::Response {
        let mut request = app
            .client
            .post(app.url("/graphql/stream"))
            .header("accept", "text/event-stream")
            .json(&body);
        if let Some(credential) = credential {
            request = request.bearer_auth(credential);
        }
        request.send().await.unwrap()
    }

    /// The next event as (event type, data), or `None` when the stream ended.
    pub async fn next(&mut self) -> Option<(String, String)> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut kind = String::new();
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event:") {
                        kind = value.trim().to_owned();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push(value.trim_start().to_owned());
                    }
                }
                if kind.is_empty() && data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some((kind, data.join("\n")));
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.response.chunk())
                .await
                .expect("an event within 10 s")
                .unwrap()?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    pub async fn next_json(&mut self) -> (String, Value) {
        let (kind, data) = self.next().await.expect("another event");
        let value = if data.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&data).unwrap()
        };
        (kind, value)
    }
}
