//! The background sweep: makes subscription period rollovers and expired quota reservations explicit,
//! applies the usage log's retention and folds closed days into the monthly platform rollups, every
//! interval. Rules never depend on it (subscriptions roll
//! forward lazily), so a missed run changes nothing but when work happens. Safe on many instances.

use std::time::Duration;

use tracing::Instrument;

use crate::app::AppState;

/// Runs the sweep every `every` until the task is dropped.
pub fn spawn(app: AppState, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(
        async move {
            // The first sweep waits one interval: start-up has enough to do, and the rules are lazy.
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let now = app.clock.now();
                if let Err(e) = crate::billing::renewal::sweep(&app, now).await {
                    tracing::warn!(error = %e.public_message(), "billing sweep failed; retrying next interval");
                }
                if let Err(e) = crate::auth::sessions::sweep_ended_sessions(&app).await {
                    tracing::warn!(error = %e.public_message(), "sweeping ended sessions failed; retrying next interval");
                }
                if let Err(e) = crate::pacing::service::sweep(&app).await {
                    tracing::warn!(error = %e.public_message(), "sweeping request pacing failed; retrying next interval");
                }
                if let Err(e) = crate::notifications::upcoming::sweep(&app, now).await {
                    tracing::warn!(error = %e.public_message(), "looking for renewals and expiring keys failed; retrying next interval");
                }
                if let Err(e) = crate::notifications::service::sweep(&app, now).await {
                    tracing::warn!(error = %e.public_message(), "sweeping notifications failed; retrying next interval");
                }
                if let Err(e) = crate::webhooks::service::sweep(&app, now).await {
                    tracing::warn!(error = %e.public_message(), "sweeping the webhook log failed; retrying next interval");
                }
                if let Err(e) = crate::mail::outbox::sweep(&app, now).await {
                    tracing::warn!(error = %e.public_message(), "sweeping the mail log failed; retrying next interval");
                }
                if let Err(e) = crate::usage::service::ensure_months(&app, now).await {
                    tracing::warn!(error = %e.public_message(), "making the usage log's monthly partitions failed; retrying next interval");
                }
                if let Err(e) = crate::usage::service::fold_closed_days(&app, now).await {
                    tracing::warn!(error = %e.public_message(), "folding closed days into the monthly platform rollups failed; retrying next interval");
                }
                if let Err(e) = crate::usage::service::apply_retention(&app, now).await {
                    tracing::warn!(error = %e.public_message(), "usage retention failed; retrying next interval");
                }
            }
        }
        .instrument(tracing::info_span!("sweeper")),
    )
}
