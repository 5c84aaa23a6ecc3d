//! The request-rate headers an invocation's HTTP answer carries, so that scripts can pace themselves:
//! `X-RateLimit-Limit` (the plan's requests per minute), `X-RateLimit-Remaining` (calls that may be
//! made at once, without waiting) and `X-RateLimit-Reset` (seconds until `Remaining` is back at the
//! plan's whole burst). A refused call's answer also carries `Retry-After` (see `http::graphql`).

use crate::billing::quota::Pace;

/// The header fields for `pace`, lower-case.
pub fn rate_limit_headers(pace: &Pace) -> [(&'static str, String); 3] {
    let reset = pace.full_in.as_secs_f64().ceil() as u64;
    [
        ("x-ratelimit-limit", pace.requests_per_minute.to_string()),
        ("x-ratelimit-remaining", pace.burst_left.to_string()),
        ("x-ratelimit-reset", reset.to_string()),
    ]
}
