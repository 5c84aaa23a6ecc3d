//! A live feed across server processes: rows announced by a PostgreSQL notification once their
//! transaction has committed reach this instance through `db::listener`, and a [`Feed`] fans them out to
//! its subscribers (WebSocket and SSE subscriptions) through a broadcast channel. The payload is the
//! row as JSON.

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
        match serde_json::from_str::<T>(payload) {
            // No subscriber is fine: the row is stored anyway.
            Ok(item) => drop(self.sender.send(Arc::new(item))),
            Err(e) => {
                tracing::warn!(channel = self.channel, error = %e, "ignoring a malformed notification");
            }
        }
    }
}
