//! Anonymous queries (the public `tools` and `plans`, introspection) are paced per client address
//! (IPv6 by /64) at `HUB_ANONYMOUS_QUERIES_PER_MINUTE`, shared by every instance (`pacing`): each query
//! of a request counts once. Anonymous mutations (registration, login, password reset) have throttles of
//! their own and are not counted here. A request over the rate is answered 429 `RATE_LIMITED` with
//! `retryAfter` and `Retry-After` before anything runs; every paced answer carries the `X-RateLimit-*`
//! headers.

use std::net::IpAddr;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};

use crate::app::AppState;
use crate::auth::throttle::address_group;
use crate::error::AppError;
use crate::graphql::rate_headers;
use crate::pacing::service::{self as pacing, Verdict};

/// Paces `queries` anonymous queries from `client_ip`: the verdict to report, or the refusal to send.
pub async fn pace(
    app: &AppState,
    client_ip: Option<IpAddr>,
    queries: usize,
) -> Result<Option<Verdict>, Response> {
    let rate = app.config.graphql.anonymous_queries_per_minute;
    let Some(ip) = client_ip.filter(|_| rate > 0 && queries > 0) else {
        return Ok(None);
    };
    let cost = u32::try_from(queries).unwrap_or(u32::MAX);
    let subject = format!("anonymous:{}", address_group(ip));
    let verdict = match pacing::admit(app, subject, rate, cost).await {
        Ok(verdict) => verdict,
        Err(error) => return Err(refusal(&error, None)),
    };
    if verdict.admitted {
        return Ok(Some(verdict));
    }
    let wait = verdict.retry_after.unwrap_or_default();
    let error = AppError::RateLimited {
        message: format!(
            "Anonymous clients may send {rate} queries a minute from one address; log in or wait a moment."
        ),
        retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
    };
    Err(refusal(&error, Some(&verdict)))
}

/// Adds the `X-RateLimit-*` headers of `verdict` to `response`.
pub fn report(response: &mut Response, verdict: &Verdict) {
    rate_headers::insert(
        response.headers_mut(),
        verdict.limit,
        verdict.remaining,
        verdict.reset,
    );
}

fn refusal(error: &AppError, verdict: Option<&Verdict>) -> Response {
    let mut extensions = serde_json::json!({ "code": error.code() });
    let retry_after = match error {
        AppError::RateLimited { retry_after, .. } => Some(*retry_after),
        AppError::Unavailable(_) => Some(crate::error::UNAVAILABLE_RETRY_AFTER_SECS),
        _ => None,
    };
    if let (Some(seconds), Some(fields)) = (retry_after, extensions.as_object_mut()) {
        fields.insert("retryAfter".into(), seconds.into());
    }
    let body = serde_json::json!({
        "errors": [{ "message": error.public_message(), "extensions": extensions }]
    });
    let status = match error {
        AppError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        other => other.http_status(),
    };
    let mut response = (status, Json(body)).into_response();
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    if let Some(verdict) = verdict {
        report(&mut response, verdict);
    }
    response
}
