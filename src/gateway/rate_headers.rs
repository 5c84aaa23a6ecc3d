//! The request-rate headers an invocation's HTTP answer carries, so that scripts can pace themselves:
//! `X-RateLimit-Limit` (the plan's requests per minute), `X-RateLimit-Remaining` (calls that may be
//! made at once, without waiting) and `X-RateLimit-Reset` (seconds until `Remaining` is back at the
//! plan's whole burst). A refused call's answer also carries `Retry-After` (see `http::graphql`).

use std::time::Duration;

use crate::billing::quota::Pace;

/// The header fields for `pace`, lower-case.
pub fn rate_limit_headers(pace: &Pace) -> [(&'static str, String); 3] {
    headers(
        pace.requests_per_minute,
        u64::from(pace.burst_left),
        pace.full_in,
    )
}

/// The header fields for a rate of `limit` a minute with `remaining` to spend at once, whole again
/// after `reset`.
pub fn headers(limit: u32, remaining: u64, reset: Duration) -> [(&'static str, String); 3] {
    [
        ("x-ratelimit-limit", limit.to_string()),
        ("x-ratelimit-remaining", remaining.to_string()),
        (
            "x-ratelimit-reset",
            (reset.as_secs_f64().ceil() as u64).to_string(),
        ),
    ]
}
