//! Gives back what slices hold unspent (`slices`): those replaced by a new lease, and those not drawn
//! on for [`slices::IDLE`], every quarter of it.

use super::{repo, slices};
use crate::app::AppState;
use crate::error::AppError;

/// Runs until the runtime stops.
pub fn spawn(app: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(slices::IDLE / 4);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let owed = app.token_slices.take_owed();
            if owed.is_empty() {
                continue;
            }
            let given = async {
                let mut conn = app.pool.get().await?;
                repo::give_back_slices(&mut conn, &owed).await?;
                Ok::<_, AppError>(())
            };
            if let Err(error) = given.await {
                tracing::warn!(%error, slices = owed.len(), "unspent slices were not given back; they return when their reservations expire");
            }
        }
    })
}
