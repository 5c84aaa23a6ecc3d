//! Brute-force protection for logins, shared by every server instance (the counters live in
//! PostgreSQL). Failures are counted per account and per client address in a fixed window: past a
//! first threshold answers are slowed, past a second they are refused with `RATE_LIMITED` until the
//! window ends. A successful login clears the account's counter, not the address's.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;

use super::repo;
use crate::error::AppError;

/// Thresholds for one kind of key.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub slow_after: i32,
    pub refuse_after: i32,
    pub window: Duration,
    pub delay: Duration,
}

/// Per account: a person mistyping is never slowed; a guesser is stopped after 10 tries in 15 minutes.
pub const ACCOUNT: Policy = Policy {
    slow_after: 3,
    refuse_after: 10,
    window: Duration::from_secs(15 * 60),
    delay: Duration::from_secs(1),
};

/// Per client address: higher, since several people may share one address.
pub const ADDRESS: Policy = Policy {
    slow_after: 10,
    refuse_after: 50,
    window: Duration::from_secs(15 * 60),
    delay: Duration::from_secs(1),
};

/// Registrations per client address and hour (`HUB_REGISTRATIONS_PER_HOUR`, default 20): enough for a
/// family or an office behind one address, not for a script creating accounts (each costs a password
/// hash and a mail). The second half of them is slowed.
pub fn registrations(per_hour: u32) -> Policy {
    let limit = i32::try_from(per_hour).unwrap_or(i32::MAX);
    Policy {
        slow_after: limit / 2,
        refuse_after: limit,
        window: Duration::from_secs(60 * 60),
        delay: Duration::from_secs(1),
    }
}

pub fn registration_key(address: &str) -> String {
    format!("register:{address}")
}

/// What to do with a login attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Answer, but only after this delay.
    Slow(Duration),
    /// Refuse; the window ends in this many seconds.
    Refuse {
        retry_after: u64,
    },
}

pub fn account_key(email: &str) -> String {
    format!("account:{email}")
}

pub fn address_key(address: &str) -> String {
    format!("address:{address}")
}

/// The verdict for an attempt on these `(key, policy)` pairs: the strictest of them.
pub async fn check(
    conn: &mut AsyncPgConnection,
    keys: &[(String, Policy)],
    now: DateTime<Utc>,
) -> Result<Verdict, AppError> {
    let names: Vec<String> = keys.iter().map(|(k, _)| k.clone()).collect();
    let counters = repo::throttle_counters(conn, &names).await?;
    let mut verdict = Verdict::Allow;
    for counter in counters {
        let Some((_, policy)) = keys.iter().find(|(k, _)| *k == counter.key) else {
            continue;
        };
        let window_end = crate::clock::after(counter.window_started_at, policy.window);
        if window_end <= now {
            continue;
        }
        if counter.failures >= policy.refuse_after {
            let retry_after = u64::try_from((window_end - now).num_seconds())
                .unwrap_or(0)
                .max(1);
            return Ok(Verdict::Refuse { retry_after });
        }
        if counter.failures >= policy.slow_after {
            verdict = Verdict::Slow(policy.delay);
        }
    }
    Ok(verdict)
}

/// Counts a failure on each key.
pub async fn record_failure(
    conn: &mut AsyncPgConnection,
    keys: &[(String, Policy)],
    now: DateTime<Utc>,
) -> Result<(), AppError> {
    for (key, policy) in keys {
        repo::record_failure(conn, key, now, policy.window).await?;
    }
    Ok(())
}
