//! The roller: adds the usage log to the rollups every [`EVERY`], on every instance (they take turns
//! on the roll's mark, see [`super::roll`]). Reads never wait for it: they add the rows it has not
//! added yet, so how far it trails changes how much they read, never what they answer.

use std::time::Duration;

use tracing::Instrument;

use super::roll::{self, Turn};
use crate::app::AppState;
use crate::error::AppResult;

/// How often the rows not rolled up yet are rolled up.
pub const EVERY: Duration = Duration::from_secs(1);

/// Rolls every [`EVERY`] until the task is dropped.
pub fn spawn(app: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(
        async move {
            let mut ticks = tokio::time::interval(EVERY);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
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
