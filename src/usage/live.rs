//! Live usage across server processes: every usage row is announced by a PostgreSQL notification
//! once its transaction has committed (see `gateway::meter`); each instance listens on one dedicated
//! connection and fans the events out to its WebSocket subscribers through a broadcast channel.
//!
//! The same connection listens on `cache::CHANNEL` and keeps this instance's caches fresh: they are
//! served only while it is connected (see `crate::cache`).
//!
//! A listening connection can die without its notification stream ending, so the listener pings itself
//! through the database every `PING_EVERY` and reconnects when its own ping does not come back.

use std::sync::Arc;
use std::time::Duration;

use async_graphql::futures_util::StreamExt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tokio::sync::{broadcast, watch};
use tracing::Instrument;

use super::model::UsageEvent;
use super::repo::CHANNEL;
use crate::cache::{self, Caches};

const PING_CHANNEL: &str = "hub_usage_ping";

/// How often the listener checks its connection, and how long its ping may take to come back.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    pub ping_every: Duration,
    pub ping_deadline: Duration,
}

impl Default for Liveness {
    fn default() -> Self {
        Self {
            ping_every: Duration::from_secs(30),
            ping_deadline: Duration::from_secs(10),
        }
    }
}

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
pub fn spawn_listener(
    live: Arc<LiveUsage>,
    caches: Arc<Caches>,
    url: String,
    liveness: Liveness,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(
        async move {
            loop {
                match listen(&live, &caches, &url, liveness).await {
                    Ok(()) => tracing::warn!("the usage notification stream ended; reconnecting"),
                    Err(e) => tracing::warn!(error = %e, "usage notifications unavailable; retrying in 1 s"),
                }
                live.listening.send_replace(false);
                caches.set_live(false);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        .instrument(tracing::info_span!("usage_listener")),
    )
}

async fn listen(
    live: &LiveUsage,
    caches: &Caches,
    url: &str,
    liveness: Liveness,
) -> anyhow::Result<()> {
    let mut conn = AsyncPgConnection::establish(url).await?;
    diesel::sql_query(format!("LISTEN {CHANNEL}"))
        .execute(&mut conn)
        .await?;
    diesel::sql_query(format!("LISTEN {PING_CHANNEL}"))
        .execute(&mut conn)
        .await?;
    diesel::sql_query(format!("LISTEN {}", cache::CHANNEL))
        .execute(&mut conn)
        .await?;
    // Everything cached before is suspect (notifications may have been missed); start from empty.
    caches.set_live(true);
    live.listening.send_replace(true);
    let token = uuid::Uuid::new_v4().to_string();
    let mut notifications = std::pin::pin!(conn.notifications_stream());
    let mut ping_due = tokio::time::interval_at(
        tokio::time::Instant::now() + liveness.ping_every,
        liveness.ping_every,
    );
    let mut awaiting_pong: Option<tokio::time::Instant> = None;
    loop {
        let pong_deadline = async {
            match awaiting_pong {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            notification = notifications.next() => {
                let Some(notification) = notification else { return Ok(()) };
                let notification = notification?;
                if notification.channel == PING_CHANNEL {
                    if notification.payload == token {
                        awaiting_pong = None;
                    }
                    continue;
                }
                if notification.channel == cache::CHANNEL {
                    caches.apply(&notification.payload);
                    continue;
                }
                match serde_json::from_str::<UsageEvent>(&notification.payload) {
                    // No subscriber is fine: the event is in the log anyway.
                    Ok(event) => drop(live.sender.send(Arc::new(event))),
                    Err(e) => tracing::warn!(error = %e, "ignoring a malformed usage notification"),
                }
            }
            _ = ping_due.tick() => {
                // Sent on a connection of its own: it must travel through the server to come back.
                let mut pinger = AsyncPgConnection::establish(url).await?;
                diesel::sql_query("SELECT pg_notify($1, $2)")
                    .bind::<diesel::sql_types::Text, _>(PING_CHANNEL)
                    .bind::<diesel::sql_types::Text, _>(&token)
                    .execute(&mut pinger)
                    .await?;
                awaiting_pong.get_or_insert(tokio::time::Instant::now() + liveness.ping_deadline);
            }
            () = pong_deadline => {
                anyhow::bail!("the listening connection stopped receiving notifications");
            }
        }
    }
}
