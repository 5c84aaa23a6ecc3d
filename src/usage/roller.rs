//! The roller: adds the usage log to the rollups on every instance (they take turns on the roll's
//! mark, see [`super::roll`]), every [`EVERY`], or sooner once this instance has metered
//! [`AFTER_CALLS`] calls since its last roll. Reads never wait for it: they add the rows it has not
//! added yet, so how far it trails changes how much they read, never what they answer.
//!
//! A roll's cost follows the rollup rows it touches (a user's day and tool, the platform's day), not
//! the usage rows it adds, and it takes a core for a few milliseconds while invocations are being
//! metered, so it runs as seldom as the reads allow: rarely at low load, and often enough under load
//! that a read adds at most about [`AFTER_CALLS`] rows per instance.
//!
//! [`AFTER_CALLS`]: super::backlog::AFTER_CALLS

use std::time::Duration;

use tracing::Instrument;

use super::roll::{self, Turn};
use crate::app::AppState;
use crate::error::AppResult;

/// Longest time between two rolls of an instance.
pub const EVERY: Duration = Duration::from_secs(5);

/// Rolls every [`EVERY`], or when the instance's backlog (`usage::backlog`) makes a roll due, until
/// the task is dropped.
pub fn spawn(app: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(
        async move {
            let mut ticks = tokio::time::interval(EVERY);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    () = app.roll_backlog.due() => ticks.reset(),
                }
                app.roll_backlog.rolling();
                if let Err(e) = roll_up(&app, Turn::Skip).await {
                    tracing::warn!(error = %e.public_message(), "rolling up usage failed; retrying next interval");
                }
            }
        }
        .instrument(tracing::info_span!("roller")),
    )
}

/// Rolls up every row whose transaction has ended, a bounded roll at a time; `turn` tells what to do
/// when another instance is rolling.
pub async fn roll_up(app: &AppState, turn: Turn) -> AppResult<()> {
    let mut conn = app.pool.get().await?;
    if !roll::any_unrolled(&mut conn, None).await? {
        return Ok(());
    }
    while let Some(rolled) = roll::roll(&mut conn, turn).await? {
        if rolled < roll::MOST_ROWS {
            break;
        }
    }
    Ok(())
}
