//! Brute-force protection, shared by every server instance (the counters live in PostgreSQL). Each
//! attempt is counted before it is judged, in one atomic step per counter, so a burst of concurrent or
//! batched attempts gets no more tries than the rule allows. Counters run in fixed windows: past a first
//! threshold answers are slowed (a login only when it fails), past a second they are refused with
//! `RATE_LIMITED` until the window ends.
//!
//! Logins count per account *and* address together (the guesser's budget), per address (a budget for
//! everything from one place), and per account alone, which only ever slows: a refusal keyed by the
//! account alone would let anyone lock its owner out from elsewhere. IPv6 addresses count by /64, the
//! block one client usually holds.

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

/// Per account from one address: a person mistyping is never slowed; a guesser is stopped after 10
/// tries in 15 minutes.
pub const ACCOUNT_FROM_ADDRESS: Policy = Policy {
    slow_after: 3,
    refuse_after: 10,
    window: Duration::from_secs(15 * 60),
    delay: Duration::from_secs(1),
};

/// Per account from anywhere: slowed after many failures, never refused (no lockout by strangers).
pub const ACCOUNT: Policy = Policy {
    slow_after: 10,
    refuse_after: i32::MAX,
    window: Duration::from_secs(15 * 60),
    delay: Duration::from_secs(1),
};

/// Mails sent on request (reset, verification, email change) per address and hour.
pub const MAILS_FROM_ADDRESS: Policy = Policy {
    slow_after: i32::MAX,
    refuse_after: 20,
    window: Duration::from_secs(60 * 60),
    delay: Duration::from_secs(0),
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

/// How a client address counts: IPv4 as it is, IPv6 by its /64.
pub fn address_group(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

pub fn registration_key(address: std::net::IpAddr) -> String {
    format!("register:{}", address_group(address))
}

pub fn mail_key(address: std::net::IpAddr) -> String {
    format!("mail:{}", address_group(address))
}

/// What to do with a login attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Answer, but only after this delay.
    Slow(Duration),
    /// Refuse; the window ends in this many seconds. `first` when this attempt is the first one a
    /// counter refused in its window (the moment a burst is worth recording).
    Refuse {
        retry_after: u64,
        first: bool,
    },
}

pub fn account_key(email: &str) -> String {
    format!("account:{email}")
}

pub fn account_from_address_key(email: &str, address: std::net::IpAddr) -> String {
    format!("account:{email}@{}", address_group(address))
}

pub fn address_key(address: std::net::IpAddr) -> String {
    format!("address:{}", address_group(address))
}

/// Counts an attempt on each `(key, policy)` pair, atomically per key, and judges it by the counts
/// including itself: the strictest verdict of them.
pub async fn attempt(
    conn: &mut AsyncPgConnection,
    keys: &[(String, Policy)],
    now: DateTime<Utc>,
) -> Result<Verdict, AppError> {
    let mut verdict = Verdict::Allow;
    for (key, policy) in keys {
        let counter = repo::count_attempt(conn, key, now, policy.window).await?;
        if counter.failures > policy.refuse_after {
            let window_end = crate::clock::after(counter.window_started_at, policy.window);
            let retry_after = u64::try_from((window_end - now).num_seconds())
                .unwrap_or(0)
                .max(1);
            let first = counter.failures == policy.refuse_after.saturating_add(1)
                || matches!(verdict, Verdict::Refuse { first: true, .. });
            verdict = Verdict::Refuse { retry_after, first };
        } else if counter.failures > policy.slow_after && verdict == Verdict::Allow {
            verdict = Verdict::Slow(policy.delay);
        }
    }
    Ok(verdict)
}

/// Takes back the count of an attempt that turned out well (a successful login): `forget` keys are
/// cleared, `uncount` keys lose one.
pub async fn succeeded(
    conn: &mut AsyncPgConnection,
    forget: &[String],
    uncount: &[String],
) -> Result<(), AppError> {
    for key in forget {
        repo::reset_throttle(conn, key).await?;
    }
    for key in uncount {
        repo::uncount(conn, key).await?;
    }
    Ok(())
}

/// `RATE_LIMITED` for a refused verdict, with `what` in the message; waits out a slow one.
pub async fn enforce(verdict: Verdict, what: &str) -> Result<(), AppError> {
    match verdict {
        Verdict::Refuse { retry_after, .. } => {
            metrics::counter!("rate_limited_total", "reason" => "throttle").increment(1);
            Err(AppError::RateLimited {
                message: format!("Too many {what}. Try again in {retry_after} seconds."),
                retry_after,
            })
        }
        Verdict::Slow(delay) => {
            tokio::time::sleep(delay).await;
            Ok(())
        }
        Verdict::Allow => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::address_group;

    #[test]
    fn ipv6_clients_count_by_their_64_block_and_ipv4_by_address() {
        let group = |text: &str| address_group(text.parse().unwrap());
        assert_eq!(
            group("2001:db8:1:2:aaaa::1"),
            group("2001:db8:1:2:ffff:1:2:3")
        );
        assert_ne!(group("2001:db8:1:2::1"), group("2001:db8:1:3::1"));
        assert_eq!(group("203.0.113.7"), "203.0.113.7");
        assert_ne!(group("203.0.113.7"), group("203.0.113.8"));
        assert_eq!(group("::ffff:203.0.113.7"), "203.0.113.7");
    }
}
