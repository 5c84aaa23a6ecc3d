//! Gives back what slices hold unspent (`slices`): those replaced by a new lease, and those not drawn
//! on for [`slices::IDLE`], every quarter of it. A round that fails leaves them to return when their
//! reservations expire.

use super::{repo, slices};
use crate::app::AppState;
use crate::worker::{self, Pace};

/// Runs until the runtime stops.
pub fn spawn(app: AppState) -> tokio::task::JoinHandle<()> {
    let pace = Pace {
        name: "slice give-back",
        every: slices::IDLE / 4,
        batch: usize::MAX,
        wake: None,
    };
    worker::spawn(app, pace, |app| async move {
        let owed = app.token_slices.take_owed();
        if owed.is_empty() {
            return Ok(0);
        }
        let mut conn = app.pool.get().await?;
        Ok(repo::give_back_slices(&mut conn, &owed).await?)
    })
}
