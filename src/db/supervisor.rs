//! Keeps the owned PostgreSQL running. A watcher checks its process four times a second; when it has
//! exited (crashed, killed, out of memory) it is started again at once, and then with growing pauses
//! (up to 5 s) while starting fails. PostgreSQL's own crash recovery replays its WAL on each start, so
//! every committed write survives. Meanwhile requests fail fast with `SERVICE_UNAVAILABLE` (the pool
//! cannot connect) and `/ready` answers 503.
//!
//! When the cluster cannot come back — its files are gone, or starting has failed for a minute — the
//! watcher reports why through [`Supervision::lost`], and the server stops with that one line, so the
//! process supervisor restarts it or alerts.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::embedded::OwnedPostgres;

const POLL: Duration = Duration::from_millis(250);
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const LONGEST_PAUSE: Duration = Duration::from_secs(5);
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

/// The owned cluster under watch.
pub struct Supervision {
    owned: Arc<Mutex<OwnedPostgres>>,
    watcher: JoinHandle<()>,
    lost: Option<oneshot::Receiver<String>>,
}

impl Supervision {
    /// Starts watching `owned`.
    pub fn start(owned: OwnedPostgres) -> Self {
        let owned = Arc::new(Mutex::new(owned));
        let (report, lost) = oneshot::channel();
        let watcher = tokio::spawn(watch(owned.clone(), report));
        Self {
            owned,
            watcher,
            lost: Some(lost),
        }
    }

    /// Resolves with the reason when the cluster is gone for good; never resolves otherwise.
    pub fn lost(&mut self) -> impl std::future::Future<Output = String> + Send + 'static {
        let lost = self.lost.take();
        async move {
            match lost {
                Some(lost) => match lost.await {
                    Ok(reason) => reason,
                    Err(_) => std::future::pending().await,
                },
                None => std::future::pending().await,
            }
        }
    }

    /// Stops watching, then stops the cluster (fast shutdown).
    pub async fn stop(self) {
        self.watcher.abort();
        let _ = self.watcher.await;
        let owned = self.owned;
        stop_in_background(move || owned.lock().unwrap_or_else(PoisonError::into_inner).stop())
            .await;
    }
}

/// Runs a cluster's `stop` on the blocking pool (it waits for processes), logging what went wrong.
pub(super) async fn stop_in_background(stop: impl FnOnce() -> anyhow::Result<()> + Send + 'static) {
    match tokio::task::spawn_blocking(stop).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "stopping the owned PostgreSQL"),
        Err(e) => tracing::warn!(error = %e, "the PostgreSQL stop task failed"),
    }
}

async fn watch(owned: Arc<Mutex<OwnedPostgres>>, report: oneshot::Sender<String>) {
    loop {
        tokio::time::sleep(POLL).await;
        let Some(status) = blocking(&owned, OwnedPostgres::exited).await.flatten() else {
            continue;
        };
        tracing::error!(%status, "the owned PostgreSQL exited; restarting it");
        metrics::counter!("db_owned_restarts_total").increment(1);
        if let Err(reason) = restart(&owned).await {
            tracing::error!(%reason, "the owned PostgreSQL cannot be restarted");
            let _ = report.send(reason);
            return;
        }
        tracing::info!("the owned PostgreSQL is running again");
    }
}

/// Restarts until it works, with growing pauses; the reason to give up otherwise.
async fn restart(owned: &Arc<Mutex<OwnedPostgres>>) -> Result<(), String> {
    let began = Instant::now();
    let mut pause = FIRST_PAUSE;
    loop {
        let failure = match blocking(owned, OwnedPostgres::restart).await {
            Some(Ok(())) => return Ok(()),
            Some(Err(e)) => format!("{e:#}"),
            None => "the restart task stopped unexpectedly".to_owned(),
        };
        let gone = !blocking(owned, |cluster| cluster.cluster_exists())
            .await
            .unwrap_or(false);
        if gone || began.elapsed() > GIVE_UP_AFTER {
            return Err(failure);
        }
        tracing::warn!(error = %failure, pause_ms = pause.as_millis() as u64, "restarting the owned PostgreSQL failed; trying again");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(LONGEST_PAUSE);
    }
}

/// Runs `work` on the cluster on the blocking pool (its calls wait on processes and files).
async fn blocking<T: Send + 'static>(
    owned: &Arc<Mutex<OwnedPostgres>>,
    work: impl FnOnce(&mut OwnedPostgres) -> T + Send + 'static,
) -> Option<T> {
    let owned = owned.clone();
    tokio::task::spawn_blocking(move || {
        let mut cluster = owned.lock().unwrap_or_else(PoisonError::into_inner);
        work(&mut cluster)
    })
    .await
    .ok()
}
