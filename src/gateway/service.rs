//! `invokeTool`: the rules, in order.
//!
//! 1. The tool exists and is enabled (`NOT_FOUND`).
//! 2. An idempotency key already answered replays that answer: no upstream call, no second charge
//!    (and no new quota decision: the first call was admitted and paid).
//! 3. Billing decides and reserves in one step (`billing::quota::spend`): the caller's plan reaches the
//!    tool's tier (`PLAN_REQUIRED`), they have a subscription (`SUBSCRIPTION_REQUIRED`), and the tool's
//!    estimate fits the quota (`QUOTA_EXCEEDED`).
//! 4. The upstream is called through the tool's circuit breaker, with bounded retries.
//! 5. One transaction settles the reservation, writes the usage row and stores the idempotent result,
//!    before the answer is sent. Concurrent invocations share that transaction (group commit, see
//!    `meter`).
//!
//! Every invocation past step 1, allowed or not, leaves a usage row. The work runs in a task of its own,
//! so a client that disconnects mid-call cannot stop the metering.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::Method;
use tracing::Instrument;
use uuid::Uuid;

use super::alerts;
use super::breaker::Permit;
use super::budget::{self, Budget};
use super::destination;
use super::event_stream;
use super::meter::{KeyOutcome, Settlement};
use super::repo::{self as idempotency, Claim};
use super::upstream::{self, CallError, UpstreamRequest};
use crate::app::AppState;
use crate::auth::identity::AuthenticatedUser;
use crate::billing::model::PlanTier;
use crate::billing::model::Reservation;
use crate::billing::quota::{self, Pace, Refusal, Spend};
use crate::clock::Deadline;
use crate::error::{AppError, AppResult};
use crate::tools::model::{ToolId, ToolRow};
use crate::tools::service as tools;
use crate::usage::model::{InvocationStatus, UsageEvent};

/// The metered result of an invocation.
#[derive(Debug, Clone)]
pub struct InvocationResult {
    pub id: Uuid,
    pub output: serde_json::Value,
    pub tokens_used: i64,
    pub tokens_estimated: bool,
    pub status: InvocationStatus,
    pub latency_ms: i32,
    pub created_at: DateTime<Utc>,
    /// True when this answer is the stored result of an earlier call with the same idempotency key.
    pub replayed: bool,
}

/// An invocation's outcome, and where the caller's request rate stood when it was decided.
pub struct Invoked {
    pub result: AppResult<InvocationResult>,
    /// `None` when the call never reached the rate (refused earlier) or the plan has none.
    pub pace: Option<Pace>,
}

/// Where an invocation comes from: its request, and that request's deadline when it has one (an
/// invocation pushes it back to its tool's timeout plus [`SETTLE_MARGIN`], so the HTTP layer never cuts
/// a call its tool allows to run longer).
pub struct Origin {
    pub request_id: String,
    pub deadline: Option<Deadline>,
    /// For `invokeToolStream`: where a streamed answer's chunks go as they arrive.
    pub chunks: Option<upstream::ChunkSink>,
}

/// What a call may take past its tool's timeout to be settled and answered.
const SETTLE_MARGIN: Duration = Duration::from_secs(5);

/// Who calls what.
struct Call {
    user: Uuid,
    api_key: Option<Uuid>,
    /// `api_key` when it has limits of its own: billing counts only such keys apart.
    limited_key: Option<Uuid>,
    tool: Arc<ToolRow>,
    input: serde_json::Value,
    key: Option<String>,
    request_id: String,
    started: Instant,
    /// The caller's plan tier when the call came in (`None` without a subscription).
    tier: Option<PlanTier>,
    /// What the call reserves and how it is charged.
    budget: Budget,
    /// Where a streamed answer's chunks go; dropped (ending the receiver's stream) once the call is
    /// settled.
    chunks: Option<upstream::ChunkSink>,
}

/// Runs an invocation to the end in its own task (see the module documentation).
pub async fn invoke(
    app: &AppState,
    caller: &AuthenticatedUser,
    tool_id: ToolId,
    input: serde_json::Value,
    idempotency_key: Option<String>,
    origin: Origin,
) -> Invoked {
    if let Some(key) = &idempotency_key
        && (key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Invoked {
            result: Err(AppError::bad_input(
                "idempotencyKey",
                "Use 1 to 255 visible ASCII characters, e.g. a UUID.",
            )),
            pace: None,
        };
    }
    let pace = Arc::new(OnceLock::new());
    let (app, caller) = (app.clone(), caller.clone());
    let reported = Arc::clone(&pace);
    let span = tracing::info_span!("invocation", tool_id = %tool_id, user_id = %caller.id.0);
    let result = tokio::spawn(
        async move {
            run(
                &app,
                &caller,
                tool_id,
                input,
                idempotency_key,
                origin,
                &reported,
            )
            .await
        }
        .instrument(span),
    )
    .await
    .map_err(|e| AppError::internal(anyhow::anyhow!("the invocation task failed: {e}")))
    .and_then(|result| result);
    Invoked {
        result,
        pace: pace.get().copied(),
    }
}

async fn run(
    app: &AppState,
    caller: &AuthenticatedUser,
    tool_id: ToolId,
    input: serde_json::Value,
    key: Option<String>,
    origin: Origin,
    pace: &OnceLock<Pace>,
) -> AppResult<InvocationResult> {
    let started = Instant::now();
    caller.require_verified_email(app.config.require_verified_email, "invoke tools")?;
    let tool = tools::get(app, tool_id, false)
        .await?
        .ok_or_else(tools::not_found)?;
    if let Some(deadline) = &origin.deadline {
        let timeout = Duration::from_millis(u64::try_from(tool.timeout_ms).unwrap_or(30_000));
        deadline.extend_to(tokio::time::Instant::now() + timeout + SETTLE_MARGIN);
    }
    let budget = budget::budget(&tool, &input);
    let call = Call {
        user: caller.id.0,
        api_key: caller.api_key().map(|key| key.0),
        limited_key: caller.limited_api_key().map(|key| key.0),
        tool,
        input,
        key,
        request_id: origin.request_id,
        chunks: origin.chunks,
        started,
        tier: None,
        budget,
    };

    let lease = Duration::from_millis(u64::try_from(call.tool.timeout_ms).unwrap_or(30_000)) * 3
        + Duration::from_secs(30);
    if let Some(key) = &call.key {
        let now = app.clock.now();
        let until = crate::clock::after(now, lease);
        let mut conn = app.pool.get().await?;
        match idempotency::claim(&mut conn, call.user, key, call.tool.id, now, until).await? {
            Claim::Claimed => {}
            Claim::Replay { event, output } => {
                tracing::info!(invocation_id = %event.id, "idempotent repeat: replaying the first result");
                return Ok(InvocationResult {
                    id: event.id,
                    output,
                    tokens_used: event.tokens_used,
                    tokens_estimated: event.tokens_estimated,
                    status: event.status,
                    latency_ms: event.latency_ms,
                    created_at: event.created_at,
                    replayed: true,
                });
            }
            Claim::InProgress => {
                return Err(AppError::Conflict(
                    "A call with this idempotency key is still running; ask again when it has finished.".into(),
                ));
            }
            Claim::OtherTool => {
                return Err(AppError::bad_input(
                    "idempotencyKey",
                    "This idempotency key was used for another tool.",
                ));
            }
        }
    }

    let spend = Spend {
        user: caller.id,
        min_tier: call.tool.min_tier,
        tokens: call.budget.reserved,
        lease,
        api_key: call.limited_key,
    };
    let grant = match quota::spend(app, spend).await? {
        Ok(grant) => {
            if let Some(now) = grant.pace {
                let _ = pace.set(now);
            }
            grant
        }
        Err(refused) => {
            if let Refusal::RateLimited {
                requests_per_minute,
                retry_after,
            }
            | Refusal::KeyRateLimited {
                requests_per_minute,
                retry_after,
            } = refused.refusal
            {
                let _ = pace.set(Pace {
                    requests_per_minute,
                    burst_left: 0,
                    full_in: retry_after,
                });
            }
            let call = Call {
                tier: refused.tier,
                ..call
            };
            let subscription = refused.subscription.map(|id| id.0);
            let denial = refused.into_error(&format!("The {} tool", call.tool.name));
            return Err(deny(app, &call, subscription, denial).await);
        }
    };
    let call = Call {
        tier: Some(grant.tier),
        ..call
    };
    let (outcome, upstream) = timed_upstream(app, &call).await;
    finish(app, &call, grant.reservation, outcome, upstream).await
}

/// What the upstream answered: the answer or the error to report, and, when a streamed answer broke
/// midway, the output it produced before (metered).
struct Answered {
    result: Result<serde_json::Value, AppError>,
    produced: Option<serde_json::Value>,
}

/// The upstream's outcome, and when the call to it started and ended (for the log).
async fn timed_upstream(app: &AppState, call: &Call) -> (Answered, (Instant, Instant)) {
    let started = Instant::now();
    let mut produced = None;
    let result = call_upstream(app, call, &mut produced).await;
    (Answered { result, produced }, (started, Instant::now()))
}

/// Calls the upstream through the breaker; the answer or the error to report.
async fn call_upstream(
    app: &AppState,
    call: &Call,
    produced: &mut Option<serde_json::Value>,
) -> Result<serde_json::Value, AppError> {
    let tool = &call.tool;
    let outcome = |label: &'static str| {
        metrics::counter!("gateway_upstream_calls_total", "tool" => tool.slug.clone(), "outcome" => label)
            .increment(1);
    };
    if let Permit::Refused { retry_after } = app.breakers.permit(tool.id) {
        outcome("circuit_open");
        return Err(AppError::UpstreamUnavailable(format!(
            "The {} tool is failing, so calls to it are paused; try again in {} s.",
            tool.name,
            retry_after.as_secs().max(1)
        )));
    }
    // Parsed once per call: the address check and every attempt use the same URL.
    let Ok(url) = reqwest::Url::parse(&tool.endpoint) else {
        tracing::warn!(tool = %tool.slug, "upstream refused: its endpoint is not a URL");
        outcome("unavailable");
        return Err(unavailable(tool));
    };
    if let Some(why) =
        destination::address_refused(&url, app.config.gateway.allow_private_upstreams)
    {
        tracing::warn!(tool = %tool.slug, %why, "upstream refused: not a public address");
        outcome("not_public");
        return Err(AppError::UpstreamUnavailable(format!(
            "The {} tool's endpoint is not a public address, so it is not called.",
            tool.name
        )));
    }
    let headers = tools::upstream_headers(app, tool)?;
    let method = Method::from_bytes(tool.method.as_bytes()).unwrap_or(Method::POST);
    let timeout = Duration::from_millis(u64::try_from(tool.timeout_ms).unwrap_or(30_000));
    let body = if tool.streams {
        std::borrow::Cow::Owned(event_stream::asking_to_stream(&call.input))
    } else {
        std::borrow::Cow::Borrowed(&call.input)
    };
    let request = UpstreamRequest {
        method,
        url: &url,
        headers: &headers,
        body: &body,
        request_id: &call.request_id,
        deadline: Instant::now() + timeout,
        chunks: call.chunks.as_ref(),
    };
    let span = if crate::telemetry::traces::exporting() {
        tracing::info_span!(
            "upstream",
            otel.name = %format_args!("upstream {}", tool.slug),
            otel.kind = "client",
            tool = %tool.slug,
            http.request.method = %request.method,
            outcome = tracing::field::Empty,
        )
    } else {
        tracing::Span::none()
    };
    let called = Instant::now();
    let result = upstream::call(&app.http, &request)
        .instrument(span.clone())
        .await;
    metrics::histogram!("gateway_upstream_duration_seconds", "tool" => tool.slug.clone())
        .record(called.elapsed().as_secs_f64());
    let label = match &result {
        Ok(_) => "ok",
        Err(CallError::Timeout) => "timeout",
        Err(CallError::Unavailable(_)) => "unavailable",
        Err(CallError::Rejected(_)) => "rejected",
        Err(CallError::Throttled(_)) => "throttled",
        Err(CallError::Broken { .. }) => "broken",
    };
    span.record("outcome", label);
    outcome(label);
    match &result {
        Ok(_) => alerts::circuit_changed(app, tool, app.breakers.record_success(tool.id)),
        Err(e) if e.is_upstream_fault() => {
            alerts::circuit_changed(app, tool, app.breakers.record_failure(tool.id, call.user));
            alerts::upstream_failed(app, tool);
        }
        Err(_) => {}
    }
    match result {
        Ok(outcome) => {
            if outcome.attempts > 1 {
                tracing::info!(
                    attempts = outcome.attempts,
                    "the upstream answered after retries"
                );
            }
            Ok(outcome.answer)
        }
        Err(CallError::Timeout) => {
            tracing::warn!(tool = %tool.slug, timeout_ms = tool.timeout_ms, "upstream timed out");
            Err(AppError::UpstreamTimeout(format!(
                "The {} tool did not answer within {} ms.",
                tool.name, tool.timeout_ms
            )))
        }
        Err(CallError::Unavailable(detail)) => {
            tracing::warn!(tool = %tool.slug, %detail, "upstream failed");
            Err(unavailable(tool))
        }
        Err(CallError::Broken {
            detail,
            produced: output,
        }) => {
            tracing::warn!(tool = %tool.slug, %detail, "upstream stream broke midway");
            *produced = Some(output);
            Err(AppError::UpstreamUnavailable(format!(
                "The {} tool's answer broke off midway; what it produced is metered.",
                tool.name
            )))
        }
        Err(CallError::Throttled(retry_after)) => {
            tracing::info!(tool = %tool.slug, ?retry_after, "upstream asked to slow down");
            Err(AppError::RateLimited {
                message: format!(
                    "The {} tool asks callers to slow down; try again later.",
                    tool.name
                ),
                retry_after: retry_after.unwrap_or(1),
            })
        }
        Err(CallError::Rejected(status)) => {
            tracing::info!(tool = %tool.slug, %status, "upstream refused the input");
            Err(AppError::bad_input(
                "input",
                format!(
                    "The {} tool refused this input (HTTP {}).",
                    tool.name,
                    status.as_u16()
                ),
            ))
        }
    }
}

/// What the caller is told when the tool cannot be reached (the detail goes to the log).
fn unavailable(tool: &ToolRow) -> AppError {
    AppError::UpstreamUnavailable(format!(
        "The {} tool is not available right now; try again shortly.",
        tool.name
    ))
}

fn latency_ms(started: Instant) -> i32 {
    i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX)
}

/// Settles the reservation, writes the usage row and the idempotent result in one transaction.
async fn finish(
    app: &AppState,
    call: &Call,
    reservation: Reservation,
    answered: Answered,
    (upstream_started, upstream_ended): (Instant, Instant),
) -> AppResult<InvocationResult> {
    let Answered {
        result: outcome,
        produced,
    } = answered;
    let max = app.config.gateway.max_tokens_per_call;
    let (tokens, estimated) = match (&outcome, &produced) {
        (Ok(answer), _) => upstream::tokens_at(answer, &call.tool.tokens_path, max).map_or_else(
            || (upstream::estimate_tokens(&call.input, answer, max), true),
            |t| (t, false),
        ),
        // A stream that broke midway is charged for the output it produced.
        (Err(_), Some(produced)) => upstream::tokens_at(produced, &call.tool.tokens_path, max)
            .map_or_else(
                || (upstream::estimate_tokens(&call.input, produced, max), true),
                |t| (t, false),
            ),
        (Err(_), None) => (0, false),
    };
    let charge = budget::charge(call.budget, tokens);
    if charge.overrun > 0 {
        metrics::counter!("gateway_overrun_tokens_total").increment(charge.overrun.unsigned_abs());
        tracing::info!(
            reserved = call.budget.reserved,
            reported = tokens,
            charged = charge.tokens,
            "the upstream reported more tokens than the call reserved"
        );
    }
    let tokens = charge.tokens;
    let event = UsageEvent {
        id: Uuid::now_v7(),
        user_id: call.user,
        api_key_id: call.api_key,
        tool_id: call.tool.id,
        subscription_id: Some(reservation.subscription_id),
        tokens_used: tokens,
        tokens_estimated: estimated,
        status: if outcome.is_ok() {
            InvocationStatus::Success
        } else {
            InvocationStatus::Error
        },
        error_code: outcome.as_ref().err().map(|e| e.code().to_owned()),
        latency_ms: latency_ms(call.started),
        created_at: app.clock.now(),
        tokens_overrun: charge.overrun,
    };
    app.meter
        .write(Settlement {
            event: event.clone(),
            tier: call.tier,
            reservation: Some(reservation),
            limited_key: call.limited_key,
            key: call.key.clone().map(|key| {
                let outcome = match &outcome {
                    Ok(answer) => KeyOutcome::Complete(answer.clone()),
                    Err(_) => KeyOutcome::Abandon,
                };
                (key, outcome)
            }),
        })
        .await?;
    metrics::counter!("gateway_invocations_total", "status" => event.status.as_db()).increment(1);
    metrics::histogram!("gateway_invocation_duration_seconds")
        .record(call.started.elapsed().as_secs_f64());
    // Where the time went: checks and reservation, the upstream, then metering (the commit).
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    tracing::info!(
        invocation_id = %event.id,
        status = %event.status,
        tokens,
        estimated,
        latency_ms = event.latency_ms,
        before_upstream_ms = ms(upstream_started - call.started),
        upstream_ms = ms(upstream_ended - upstream_started),
        metering_ms = ms(upstream_ended.elapsed()),
        "invocation metered"
    );
    let output = outcome?;
    Ok(InvocationResult {
        id: event.id,
        output,
        tokens_used: tokens,
        tokens_estimated: estimated,
        status: InvocationStatus::Success,
        latency_ms: event.latency_ms,
        created_at: event.created_at,
        replayed: false,
    })
}

/// Records a refused invocation (no tokens) and returns the refusal.
async fn deny(
    app: &AppState,
    call: &Call,
    subscription: Option<Uuid>,
    denial: AppError,
) -> AppError {
    let event = UsageEvent {
        id: Uuid::now_v7(),
        user_id: call.user,
        api_key_id: call.api_key,
        tool_id: call.tool.id,
        subscription_id: subscription,
        tokens_used: 0,
        tokens_estimated: false,
        status: InvocationStatus::Error,
        error_code: Some(denial.code().to_owned()),
        latency_ms: latency_ms(call.started),
        created_at: app.clock.now(),
        tokens_overrun: 0,
    };
    let recorded = app
        .meter
        .write(Settlement {
            event,
            tier: call.tier,
            reservation: None,
            limited_key: call.limited_key,
            key: call.key.clone().map(|key| (key, KeyOutcome::Abandon)),
        })
        .await;
    if let Err(e) = recorded {
        return e;
    }
    metrics::counter!("gateway_invocations_total", "status" => "DENIED").increment(1);
    metrics::counter!("gateway_refusals_total", "code" => denial.code()).increment(1);
    tracing::info!(code = denial.code(), "invocation refused");
    denial
}

/// Forgets a user's idempotency keys and stored answers inside the caller's transaction (the account
/// is being deleted).
pub async fn forget_user_in(
    conn: &mut diesel_async::AsyncPgConnection,
    user: crate::users::model::UserId,
) -> diesel::QueryResult<()> {
    idempotency::delete_all_for_user(conn, user.0).await?;
    Ok(())
}
