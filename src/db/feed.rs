//! A live feed across server processes: rows announced by a PostgreSQL notification once their
//! transaction has committed reach this instance through `db::listener`, and a [`Feed`] fans them out to
//! its subscribers (WebSocket and SSE subscriptions) through a broadcast channel. The payload is the
//! row as JSON, or several rows as a JSON array (a publisher's batch in one notification).

use std::sync::Arc;

use async_graphql::futures_util::{Stream, stream};
use serde::de::DeserializeOwned;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};

use super::listener::Subscriber;

/// The in-process side of a live feed on one notification channel.
pub struct Feed<T> {
    channel: &'static str,
    sender: broadcast::Sender<Arc<T>>,
    listening: watch::Sender<bool>,
}

impl<T: DeserializeOwned + Send + Sync + 'static> Feed<T> {
    pub fn new(channel: &'static str) -> Self {
        Self {
            channel,
            sender: broadcast::channel(1024).0,
            listening: watch::channel(false).0,
        }
    }

    /// Every item announced from now on; a subscriber that falls behind skips what it missed.
    pub fn stream(&self) -> impl Stream<Item = Arc<T>> + use<T> {
        stream::unfold(self.sender.subscribe(), |mut receiver| async move {
            loop {
                match receiver.recv().await {
                    Ok(item) => return Some((item, receiver)),
                    Err(RecvError::Lagged(skipped)) => {
                        tracing::warn!(skipped, "a live subscriber fell behind");
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        })
    }

    /// Resolves once this instance is listening for notifications.
    pub async fn wait_listening(&self) {
        let mut listening = self.listening.subscribe();
        let _ = listening.wait_for(|on| *on).await;
    }
}

impl<T: DeserializeOwned + Send + Sync + 'static> Subscriber for Feed<T> {
    fn channel(&self) -> &'static str {
        self.channel
    }

    fn connected(&self, up: bool) {
        self.listening.send_replace(up);
    }

    fn notify(&self, payload: &str) {
        // Nobody here follows the feed: the row is stored anyway, and reading it would be wasted.
        if self.sender.receiver_count() == 0 {
            return;
        }
        let items = if payload.trim_start().starts_with('[') {
            serde_json::from_str::<Vec<T>>(payload)
        } else {
            serde_json::from_str::<T>(payload).map(|item| vec![item])
        };
        match items {
            // Subscribers that left meanwhile are fine: the rows are stored anyway.
            Ok(items) => {
                for item in items {
                    drop(self.sender.send(Arc::new(item)));
                }
            }
            Err(e) => {
                tracing::warn!(channel = self.channel, error = %e, "ignoring a malformed notification");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::futures_util::StreamExt;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Row {
        n: u32,
    }

    #[tokio::test]
    async fn a_row_or_an_array_of_rows_reaches_subscribers_in_order() {
        let feed: Feed<Row> = Feed::new("test");
        let mut stream = std::pin::pin!(feed.stream());
        feed.notify(r#"{"n":1}"#);
        feed.notify(r#"[{"n":2},{"n":3}]"#);
        feed.notify("not json");
        feed.notify(r#"{"n":4}"#);
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(stream.next().await.map(|row| row.n));
        }
        assert_eq!(seen, [Some(1), Some(2), Some(3), Some(4)]);
    }
}
