//! One dedicated connection per instance that `LISTEN`s for PostgreSQL notifications and hands each
//! one to the [`Subscriber`] of its channel (the live usage feed, the caches' invalidations).
//!
//! A listening connection can die without its notification stream ending, so the listener pings itself
//! through the database every `Liveness::ping_every` and reconnects when its own ping does not come
//! back in time. Subscribers are told when the stream is up and when it is down, since anything they
//! derived from notifications is suspect across a gap.

use std::sync::Arc;
use std::time::Duration;

use async_graphql::futures_util::StreamExt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tracing::Instrument;

const PING_CHANNEL: &str = "hub_listener_ping";

/// What listens on one channel.
pub trait Subscriber: Send + Sync + 'static {
    /// The notification channel (a fixed identifier).
    fn channel(&self) -> &'static str;
    /// The stream is up (`true`, after `LISTEN`) or down (`false`, until it reconnects).
    fn connected(&self, up: bool);
    /// A notification's payload.
    fn notify(&self, payload: &str);
}

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

/// Listens until the task is dropped, reconnecting a second after each failure.
pub fn spawn(
    url: String,
    subscribers: Vec<Arc<dyn Subscriber>>,
    liveness: Liveness,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(
        async move {
            loop {
                match listen(&subscribers, &url, liveness).await {
                    Ok(()) => tracing::warn!("the notification stream ended; reconnecting"),
                    Err(e) => {
                        tracing::warn!(error = %e, "notifications unavailable; retrying in 1 s");
                    }
                }
                for subscriber in &subscribers {
                    subscriber.connected(false);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        .instrument(tracing::info_span!("notification_listener")),
    )
}

async fn listen(
    subscribers: &[Arc<dyn Subscriber>],
    url: &str,
    liveness: Liveness,
) -> anyhow::Result<()> {
    let mut conn = AsyncPgConnection::establish(url).await?;
    diesel::sql_query(format!("LISTEN {PING_CHANNEL}"))
        .execute(&mut conn)
        .await?;
    for subscriber in subscribers {
        diesel::sql_query(format!("LISTEN {}", subscriber.channel()))
            .execute(&mut conn)
            .await?;
    }
    for subscriber in subscribers {
        subscriber.connected(true);
    }
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
                if let Some(subscriber) = subscribers.iter().find(|s| s.channel() == notification.channel) {
                    subscriber.notify(&notification.payload);
                }
            }
            _ = ping_due.tick() => {
                // Sent on a connection of its own: it must travel through the server to come back. A
                // server that stopped answering must not hold the listener here, so the ping has the
                // same deadline as its echo.
                let ping = async {
                    let mut pinger = AsyncPgConnection::establish(url).await?;
                    diesel::sql_query("SELECT pg_notify($1, $2)")
                        .bind::<diesel::sql_types::Text, _>(PING_CHANNEL)
                        .bind::<diesel::sql_types::Text, _>(&token)
                        .execute(&mut pinger)
                        .await?;
                    anyhow::Ok(())
                };
                match tokio::time::timeout(liveness.ping_deadline, ping).await {
                    Ok(sent) => sent?,
                    Err(_) => anyhow::bail!("the database did not take the listener's ping in time"),
                }
                awaiting_pong.get_or_insert(tokio::time::Instant::now() + liveness.ping_deadline);
            }
            () = pong_deadline => {
                anyhow::bail!("the listening connection stopped receiving notifications");
            }
        }
    }
}
