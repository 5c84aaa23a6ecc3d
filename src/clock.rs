//! The server's one "now" for business decisions (billing periods, reservations, usage times, sweeps),
//! reached as `AppState::clock`; tests move a [`ManualClock`] by hand.
//!
//! Credentials are the exception, by rule: access-token expiry (checked by `jsonwebtoken` against the
//! system time), refresh, mail and API-key lifetimes and login throttles are judged by the system
//! clock, so moving business time (a test jumping a billing period) never signs anyone out, and a
//! clock set by hand can never stretch a credential's life.

use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Duration, Utc};

/// `at` plus a standard duration, saturating instead of overflowing.
pub fn after(at: DateTime<Utc>, duration: std::time::Duration) -> DateTime<Utc> {
    at + Duration::from_std(duration).unwrap_or(Duration::MAX)
}

/// A source of "now".
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that stands still until moved: for tests of period boundaries.
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(now: DateTime<Utc>) -> Self {
        Self(Mutex::new(now))
    }

    pub fn set(&self, now: DateTime<Utc>) {
        if let Ok(mut current) = self.0.lock() {
            *current = now;
        }
    }

    pub fn advance(&self, by: Duration) {
        if let Ok(mut current) = self.0.lock() {
            *current += by;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        self.0.lock().map_or_else(|_| Utc::now(), |now| *now)
    }
}

/// A request's deadline, which work allowed to run longer may push back (an invocation, to its tool's
/// own timeout): whoever waits for the request reads it again when it passes. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Deadline(Arc<Mutex<tokio::time::Instant>>);

impl Deadline {
    pub fn new(at: tokio::time::Instant) -> Self {
        Self(Arc::new(Mutex::new(at)))
    }

    /// When the request must have answered.
    pub fn at(&self) -> tokio::time::Instant {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Pushes the deadline back to `at`, if that is later.
    pub fn extend_to(&self, at: tokio::time::Instant) {
        let mut current = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if at > *current {
            *current = at;
        }
    }
}
