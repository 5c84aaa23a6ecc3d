//! The background sweep: makes period rollovers and expired reservations explicit every interval.
//! Rules never depend on it (they roll forward lazily), so a missed run changes nothing but latency.

use std::time::Duration;

use tracing::Instrument;

use super::service;
use crate::app::AppState;

/// Runs [`service::sweep`] every `every` until the task is dropped.
pub fn spawn(app: AppState, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(
        async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if let Err(e) = service::sweep(&app, app.clock.now()).await {
                    tracing::warn!(error = %e.public_message(), "billing sweep failed; retrying next interval");
                }
            }
        }
        .instrument(tracing::info_span!("billing_sweeper")),
    )
}
