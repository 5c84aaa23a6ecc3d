//! Live usage across server processes: every usage row sends a PostgreSQL notification when its
//! transaction commits (see `repo::record`); each instance listens on one dedicated connection and fans
//! the events out to its WebSocket subscribers through a broadcast channel.

use std::sync::Arc;
use std::time::Duration;

use async_graphql::futures_util::StreamExt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tokio::sync::{broadcast, watch};
use tracing::Instrument;

use super::model::UsageEvent;
use super::repo::CHANNEL;

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

/// Listens for usage notifications until the task is dropped, reconnecting after failures.
pub fn spawn_listener(live: Arc<LiveUsage>, url: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(
        async move {
            loop {
                match listen(&live, &url).await {
                    Ok(()) => tracing::warn!("the usage notification stream ended; reconnecting"),
                    Err(e) => tracing::warn!(error = %e, "usage notifications unavailable; retrying in 1 s"),
                }
                live.listening.send_replace(false);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        .instrument(tracing::info_span!("usage_listener")),
    )
}

async fn listen(live: &LiveUsage, url: &str) -> anyhow::Result<()> {
    let mut conn = AsyncPgConnection::establish(url).await?;
    diesel::sql_query(format!("LISTEN {CHANNEL}"))
        .execute(&mut conn)
        .await?;
    live.listening.send_replace(true);
    let mut notifications = std::pin::pin!(conn.notifications_stream());
    while let Some(notification) = notifications.next().await {
        let notification = notification?;
        match serde_json::from_str::<UsageEvent>(&notification.payload) {
            // No subscriber is fine: the event is in the log anyway.
            Ok(event) => drop(live.sender.send(Arc::new(event))),
            Err(e) => tracing::warn!(error = %e, "ignoring a malformed usage notification"),
        }
    }
    Ok(())
}
