//! Live usage across server processes: every usage row is announced by a PostgreSQL notification
//! once its transaction has committed (see `gateway::meter`); each instance's `db::listener` hands
//! them to [`LiveUsage`], which fans them out to its WebSocket subscribers through a broadcast channel.

use std::sync::Arc;

use tokio::sync::{broadcast, watch};

use super::model::UsageEvent;
use crate::db::listener::Subscriber;

/// The channel live usage notifications travel on.
pub const CHANNEL: &str = "hub_usage";

/// The in-process side of the live feed.
pub struct LiveUsage {
    sender: broadcast::Sender<Arc<UsageEvent>>,
    listening: watch::Sender<bool>,
}

impl Default for LiveUsage {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(1024).0,
            listening: watch::channel(false).0,
        }
    }
}

impl LiveUsage {
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<UsageEvent>> {
        self.sender.subscribe()
    }

    /// Resolves once this instance is listening for notifications.
    pub async fn wait_listening(&self) {
        let mut listening = self.listening.subscribe();
        let _ = listening.wait_for(|on| *on).await;
    }
}

impl Subscriber for LiveUsage {
    fn channel(&self) -> &'static str {
        CHANNEL
    }

    fn connected(&self, up: bool) {
        self.listening.send_replace(up);
    }

    fn notify(&self, payload: &str) {
        match serde_json::from_str::<UsageEvent>(payload) {
            // No subscriber is fine: the event is in the log anyway.
            Ok(event) => drop(self.sender.send(Arc::new(event))),
            Err(e) => tracing::warn!(error = %e, "ignoring a malformed usage notification"),
        }
    }
}
