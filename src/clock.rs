//! The server's one "now" for business decisions (billing periods, reservations, usage times, sweeps),
//! reached as `AppState::clock`; tests move a [`ManualClock`] by hand.
//!
//! Credentials are the exception, by rule: access-token expiry (checked by `jsonwebtoken` against the
//! system time), refresh, mail and API-key lifetimes and login throttles are judged by the system
//! clock, so moving business time (a test jumping a billing period) never signs anyone out, and a
//! clock set by hand can never stretch a credential's life.

use std::sync::Mutex;

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
