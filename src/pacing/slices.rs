//! Slices of a subject's pace that an instance holds in memory, so a busy subject's requests are
//! admitted without a round trip each.
//!
//! A request that its subject's slice covers is admitted here. One that it does not cover asks the
//! shared statement for what is missing plus a slice for the next requests (`pace_batch.sql` grants at
//! most a quarter of what the subject has left, so near the limit slices shrink to exact
//! reservations). Leased points move the shared pace as spent ones do, so every instance together
//! admits no more than the rate: a slice only decides where the points are spent. The slice asked for
//! doubles while slices run out within [`QUICK`] of their lease, up to an eighth of the burst and
//! [`MAX_SLICE`], and is zero otherwise, so a subject making a request now and then reserves exactly.
//! A slice left unspent for [`IDLE`] is given back (its subject's pace moves back by it); one lost in
//! a crash only errs on the strict side.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A slice spent within this long of its lease makes the next one twice as large.
pub const QUICK: Duration = Duration::from_secs(1);
/// A slice unspent for this long is given back.
pub const IDLE: Duration = Duration::from_secs(1);
/// The largest slice, in points.
pub const MAX_SLICE: u32 = 4096;

/// One subject's slice on this instance.
#[derive(Debug)]
pub struct Slice {
    /// Points leased and not spent yet.
    pub points: u32,
    /// Milliseconds between two unit-cost requests at the subject's rate.
    pub every_ms: f64,
    /// The slice asked for at the last lease.
    asked: u32,
    /// When the last lease was answered.
    leased_at: Option<Instant>,
    /// When a request last spent from the slice.
    used_at: Instant,
    /// The shared pace at the last lease: points it had left, and until its whole burst is back.
    shared_left: u64,
    shared_ahead: Duration,
}

impl Slice {
    fn new(every_ms: f64) -> Self {
        Self {
            points: 0,
            every_ms,
            asked: 0,
            leased_at: None,
            used_at: Instant::now(),
            shared_left: 0,
            shared_ahead: Duration::ZERO,
        }
    }

    /// Spends `cost` from the slice if it covers it.
    pub fn spend(&mut self, cost: u32) -> bool {
        if self.points < cost {
            return false;
        }
        self.points -= cost;
        self.used_at = Instant::now();
        true
    }

    /// The slice to ask for with the next lease, for a subject whose burst is `burst`.
    pub fn next_ask(&mut self, burst: u32) -> u32 {
        let busy = self.leased_at.is_some_and(|at| at.elapsed() < QUICK);
        self.asked = if busy {
            self.asked
                .saturating_mul(2)
                .max(1)
                .min(burst / 8)
                .min(MAX_SLICE)
        } else {
            0
        };
        self.asked
    }

    /// Records a lease of `granted` points (the cost and the slice) for a request costing `cost`, after
    /// which the shared pace had `shared_left` points left and its burst back in `shared_ahead`.
    pub fn leased(&mut self, granted: u32, cost: u32, shared_left: u64, shared_ahead: Duration) {
        let now = Instant::now();
        self.points = (self.points + granted).saturating_sub(cost);
        self.leased_at = Some(now);
        self.used_at = now;
        self.shared_left = shared_left;
        self.shared_ahead = shared_ahead;
    }

    /// What the subject may spend at once now (the shared pace as of the lease, grown by the time
    /// since, plus the slice) and until its whole burst is back, for a subject whose burst is `burst`.
    pub fn standing(&self, burst: u32) -> (u64, Duration) {
        let since = self.leased_at.map(|at| at.elapsed()).unwrap_or_default();
        let regained = (since.as_secs_f64() * 1000.0 / self.every_ms).floor() as u64;
        let remaining = self.shared_left + regained + u64::from(self.points);
        (
            remaining.min(u64::from(burst)),
            self.shared_ahead.saturating_sub(since),
        )
    }
}

/// Every subject's slice on this instance. See the module documentation.
#[derive(Debug, Default)]
pub struct Slices {
    subjects: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slice>>>>,
}

impl Slices {
    /// The slice of `subject`, created empty at its first request.
    pub fn of(&self, subject: &str, every_ms: f64) -> Arc<tokio::sync::Mutex<Slice>> {
        let mut subjects = self.subjects.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slice) = subjects.get(subject) {
            return Arc::clone(slice);
        }
        let slice = Arc::new(tokio::sync::Mutex::new(Slice::new(every_ms)));
        subjects.insert(subject.to_owned(), Arc::clone(&slice));
        slice
    }

    /// Takes the points of slices unspent for [`IDLE`] and forgets idle subjects: what each subject's
    /// pace is owed back, in milliseconds.
    pub fn take_idle(&self) -> Vec<(String, f64)> {
        let mut owed = Vec::new();
        let mut subjects = self.subjects.lock().unwrap_or_else(PoisonError::into_inner);
        subjects.retain(|subject, slice| {
            let Ok(mut held) = slice.try_lock() else {
                return true;
            };
            if held.used_at.elapsed() < IDLE {
                return true;
            }
            if held.points > 0 {
                owed.push((subject.clone(), f64::from(held.points) * held.every_ms));
                held.points = 0;
            }
            drop(held);
            // A request holding the slice keeps it; one arriving later makes a new one.
            Arc::strong_count(slice) > 1
        });
        owed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slice_grows_while_it_runs_out_quickly_and_never_past_an_eighth_of_the_burst() {
        let mut slice = Slice::new(1.0);
        assert_eq!(slice.next_ask(1000), 0, "a first request reserves exactly");
        slice.leased(1, 1, 999, Duration::ZERO);
        let asked: Vec<u32> = (0..10)
            .map(|_| {
                let ask = slice.next_ask(1000);
                slice.leased(ask + 1, ask + 1, 0, Duration::ZERO);
                ask
            })
            .collect();
        assert_eq!(asked, [1, 2, 4, 8, 16, 32, 64, 125, 125, 125]);
        assert_eq!(
            Slice::new(1.0).next_ask(7),
            0,
            "a burst under 8 leases nothing extra"
        );
    }

    #[test]
    fn a_slice_is_spent_only_when_it_covers_the_cost() {
        let mut slice = Slice::new(1.0);
        slice.leased(10, 4, 90, Duration::from_secs(1));
        assert_eq!(slice.points, 6);
        assert!(!slice.spend(7));
        assert!(slice.spend(6));
        assert_eq!(slice.points, 0);
        let (remaining, _) = slice.standing(100);
        assert!((90..=100).contains(&remaining), "{remaining}");
    }

    #[test]
    fn idle_slices_are_owed_back_and_forgotten_but_busy_ones_stay() {
        let slices = Slices::default();
        let idle = slices.of("idle", 10.0);
        let busy = slices.of("busy", 10.0);
        if let Ok(mut idle) = idle.try_lock() {
            idle.leased(5, 1, 0, Duration::ZERO);
            idle.used_at = Instant::now() - IDLE;
        }
        if let Ok(mut busy) = busy.try_lock() {
            busy.leased(5, 1, 0, Duration::ZERO);
        }
        drop(idle);
        assert_eq!(slices.take_idle(), vec![("idle".to_owned(), 40.0)]);
        assert!(slices.take_idle().is_empty(), "owed once");
        let subjects = slices
            .subjects
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        assert!(subjects.contains_key("busy") && !subjects.contains_key("idle"));
    }
}
