//! Background workers that drain a queue (mail, events, webhook deliveries). A round takes up to a batch;
//! a full batch means more is waiting, so the next round starts at once; otherwise the worker waits for
//! its interval or, when it has one, a wake-up from whoever queued something. A failed round is logged
//! and retried at the next interval. Safe on many instances: the rounds claim their work.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tracing::Instrument;

use crate::app::AppState;
use crate::error::AppResult;

/// How a worker is paced.
pub struct Pace {
    /// Shown in its logs.
    pub name: &'static str,
    /// How long it waits when nothing wakes it.
    pub every: Duration,
    /// What a round takes at most; a round that took this many runs again at once.
    pub batch: usize,
    /// Woken when work is queued on this instance.
    pub wake: Option<Arc<Notify>>,
}

/// Runs `round` as `pace` says until the task is dropped; `round` answers how many items it took.
pub fn spawn<R, Fut>(app: AppState, pace: Pace, round: R) -> tokio::task::JoinHandle<()>
where
    R: Fn(AppState) -> Fut + Send + 'static,
    Fut: Future<Output = AppResult<usize>> + Send,
{
    let span = tracing::info_span!("worker", name = pace.name);
    tokio::spawn(
        async move {
            loop {
                match &pace.wake {
                    Some(wake) => tokio::select! {
                        () = wake.notified() => {}
                        () = tokio::time::sleep(pace.every) => {}
                    },
                    None => tokio::time::sleep(pace.every).await,
                }
                loop {
                    match round(app.clone()).await {
                        Ok(taken) if taken >= pace.batch => {}
                        Ok(_) => break,
                        Err(e) => {
                            tracing::warn!(error = %e.public_message(), "a round failed; retrying shortly");
                            break;
                        }
                    }
                }
            }
        }
        .instrument(span),
    )
}
