//! Pacing a subject at a rate (see the module documentation): the burst is ceil(rate / 6), ten
//! seconds' worth, as for plans; a request's cost counts as that many requests, at most a whole burst.

use std::time::Duration;

use super::repo::{self, PaceRequest};
use super::slices;
use crate::app::AppState;
use crate::error::AppResult;

/// Where a subject stands after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub admitted: bool,
    /// The rate, per minute.
    pub limit: u32,
    /// What may be spent at once now.
    pub remaining: u64,
    /// Until the whole burst is available again.
    pub reset: Duration,
    /// For a refused request: until it would be admitted.
    pub retry_after: Option<Duration>,
}

/// The burst of a rate: ten seconds' worth, at least one.
pub fn burst(per_minute: u32) -> u32 {
    per_minute.div_ceil(6).max(1)
}

/// Paces one request of `subject` at `per_minute`, counting `cost` requests: from this instance's
/// slice of the subject's pace when it covers the cost (`slices`), else through the shared statement.
pub async fn admit(
    app: &AppState,
    subject: String,
    per_minute: u32,
    cost: u32,
) -> AppResult<Verdict> {
    let per_minute = per_minute.max(1);
    let burst = burst(per_minute);
    let every_ms = 60_000.0 / f64::from(per_minute);
    let cost = cost.clamp(1, burst);
    let slice = app.pacer.slices.of(&subject, every_ms);
    let mut slice = slice.lock().await;
    if slice.spend(cost) {
        let (remaining, reset) = slice.standing(burst);
        return Ok(Verdict {
            admitted: true,
            limit: per_minute,
            remaining,
            reset,
            retry_after: None,
        });
    }
    let owed = cost - slice.points;
    let extra = slice.next_ask(burst);
    let paced = app
        .pacer
        .submit(PaceRequest {
            subject,
            every_ms,
            tolerance_ms: every_ms * f64::from(burst - 1),
            cost: i32::try_from(owed).unwrap_or(i32::MAX),
            extra: i32::try_from(extra).unwrap_or(i32::MAX),
        })
        .await?;
    let millis = |ms: i64| Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    let shared_left = u64::try_from(paced.points_left).unwrap_or(0);
    if paced.admitted {
        let granted = u32::try_from(paced.granted).unwrap_or(owed);
        slice.leased(granted, cost, shared_left, millis(paced.ahead_ms));
    }
    Ok(Verdict {
        admitted: paced.admitted,
        limit: per_minute,
        remaining: (shared_left + u64::from(slice.points)).min(u64::from(burst)),
        reset: millis(paced.ahead_ms),
        retry_after: paced.retry_in_ms.map(millis),
    })
}

/// Forgets subjects whose pace has caught up (the sweep).
pub async fn sweep(app: &AppState) -> AppResult<usize> {
    let mut conn = app.pool.get().await?;
    Ok(repo::delete_caught_up(&mut conn, chrono::Utc::now()).await?)
}

/// Gives idle slices back (`slices`) every quarter of [`slices::IDLE`]. A round that fails leaves
/// their subjects waiting for the points as if spent.
pub fn spawn_give_back(app: AppState) -> tokio::task::JoinHandle<()> {
    let pace = crate::worker::Pace {
        name: "pacing give-back",
        every: slices::IDLE / 4,
        batch: usize::MAX,
        wake: None,
    };
    crate::worker::spawn(app, pace, |app| async move {
        let owed = app.pacer.slices.take_idle();
        if owed.is_empty() {
            return Ok(0);
        }
        let (subjects, unspent_ms): (Vec<String>, Vec<f64>) = owed.into_iter().unzip();
        let mut conn = app.pool.get().await?;
        Ok(repo::give_back(&mut conn, &subjects, &unspent_ms).await?)
    })
}
