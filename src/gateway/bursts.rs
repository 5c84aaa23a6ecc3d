//! Bursts of upstream failures, per tool and instance: [`BURST`] failures the upstream is to blame for
//! within [`WINDOW`], whoever the callers (unlike the circuit breaker, which counts each caller once).
//! Administrators hear of a burst (`tool.upstream_failures`) even when the circuit stays closed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

/// Failures that make a burst…
pub const BURST: u32 = 20;
/// …within this long.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Each tool's current window: when it began and the failures in it.
#[derive(Default)]
pub struct Bursts {
    windows: Mutex<HashMap<Uuid, (Instant, u32)>>,
}

impl Bursts {
    /// Counts a failure of `tool` at `now`; true when it completes a burst (once per window).
    pub fn failed(&self, tool: Uuid, now: Instant) -> bool {
        let Ok(mut windows) = self.windows.lock() else {
            return false;
        };
        let window = windows.entry(tool).or_insert((now, 0));
        if now.duration_since(window.0) > WINDOW {
            *window = (now, 0);
        }
        window.1 += 1;
        window.1 == BURST
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_reported_once_per_window_and_per_tool() {
        let bursts = Bursts::default();
        let (tool, other, start) = (Uuid::now_v7(), Uuid::now_v7(), Instant::now());
        let reported: Vec<bool> = (0..BURST + 5).map(|_| bursts.failed(tool, start)).collect();
        assert_eq!(reported.iter().filter(|r| **r).count(), 1);
        assert!(reported[usize::try_from(BURST - 1).unwrap()]);
        assert!(!bursts.failed(other, start));
        // Slow failures never add up to a burst: the window starts again.
        let later = start + WINDOW + Duration::from_secs(1);
        assert!(!bursts.failed(tool, later));
        let fresh = Bursts::default();
        for minute in 0..BURST * 2 {
            let at = start + Duration::from_secs(61 * u64::from(minute));
            assert!(!fresh.failed(tool, at));
        }
    }
}
