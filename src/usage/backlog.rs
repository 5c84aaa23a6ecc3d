//! What makes a roll due early: the calls an instance has metered since its roller last rolled
//! (`usage::roller`). The meter counts each call once it has committed; the call that reaches
//! [`AFTER_CALLS`] wakes the roller, so a busy instance rolls more often than every
//! `usage::roller::EVERY` and a read adds at most about that many rows per instance that are not rolled
//! up yet.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// Calls metered on an instance that make its next roll due at once.
pub const AFTER_CALLS: usize = 2_500;

/// Calls metered on this instance since its roller last started a roll.
#[derive(Debug, Default)]
pub struct Backlog {
    calls: AtomicUsize,
    due: Notify,
}

impl Backlog {
    /// Counts one metered call; the one that reaches [`AFTER_CALLS`] makes the next roll due.
    pub fn metered(&self) {
        if self.calls.fetch_add(1, Ordering::Relaxed) + 1 == AFTER_CALLS {
            self.due.notify_one();
        }
    }

    /// Returns once a roll is due by count: at once if the count was reached since the last wait.
    pub async fn due(&self) {
        self.due.notified().await;
    }

    /// A roll starts: calls metered from here on count toward the next.
    pub fn rolling(&self) {
        self.calls.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn due(backlog: &Backlog) -> bool {
        tokio::time::timeout(Duration::from_millis(20), backlog.due())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn the_call_that_reaches_the_threshold_makes_one_roll_due() {
        let backlog = Backlog::default();
        for _ in 1..AFTER_CALLS {
            backlog.metered();
        }
        assert!(!due(&backlog).await, "one call short of the threshold");
        backlog.metered();
        assert!(due(&backlog).await, "the call that reaches it");
        backlog.metered();
        assert!(
            !due(&backlog).await,
            "calls past it make no second roll due"
        );

        backlog.rolling();
        assert_eq!(backlog.calls.load(Ordering::Relaxed), 0);
        for _ in 0..AFTER_CALLS {
            backlog.metered();
        }
        assert!(due(&backlog).await, "after a roll, the count starts again");
    }
}
