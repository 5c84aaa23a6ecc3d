use async_graphql::{Context, ID, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::service::{self, InvocationResult};
use crate::graphql::big_int::BigInt;
use crate::graphql::context::ContextExt;
use crate::graphql::guards::Scoped;
use crate::graphql::rate_headers;
use crate::keys::model::Scope;
use crate::tools::graphql::parse_id;
use crate::usage::model::InvocationStatus;

/// The metered result of a tool call.
#[derive(SimpleObject)]
pub struct Invocation {
    pub id: ID,
    /// The upstream's answer, as JSON.
    pub output: Json<serde_json::Value>,
    /// Tokens charged to the plan for this call.
    pub tokens_used: BigInt,
    /// True when the answer had no token count and an estimate was charged.
    pub tokens_estimated: bool,
    pub status: InvocationStatus,
    /// Time from receiving the call to having the answer, in milliseconds.
    pub latency_ms: i32,
    pub created_at: DateTime<Utc>,
    /// True when this is the stored answer of an earlier call with the same idempotency key.
    pub replayed: bool,
}

impl From<InvocationResult> for Invocation {
    fn from(result: InvocationResult) -> Self {
        Self {
            id: ID(result.id.to_string()),
            output: Json(result.output),
            tokens_used: result.tokens_used.into(),
            tokens_estimated: result.tokens_estimated,
            status: result.status,
            latency_ms: result.latency_ms,
            created_at: result.created_at,
            replayed: result.replayed,
        }
    }
}

#[derive(Default)]
pub struct GatewayMutation;

#[Object]
impl GatewayMutation {
    /// Calls a tool with `input` (sent to its upstream as the JSON body) and meters the tokens it used.
    /// Repeating a call with the same `idempotencyKey` returns the first answer without calling or
    /// charging again. Errors: `NOT_FOUND`, `PLAN_REQUIRED`, `SUBSCRIPTION_REQUIRED`, `QUOTA_EXCEEDED`,
    /// `UPSTREAM_UNAVAILABLE`, `UPSTREAM_TIMEOUT`.
    #[graphql(guard = "Scoped(Scope::Invoke)")]
    async fn invoke_tool(
        &self,
        ctx: &Context<'_>,
        tool_id: ID,
        input: Json<serde_json::Value>,
        idempotency_key: Option<String>,
    ) -> async_graphql::Result<Invocation> {
        let caller = ctx.user()?;
        let origin = service::Origin {
            request_id: ctx.request()?.request_id.clone(),
            deadline: ctx.data_opt::<crate::clock::Deadline>().cloned(),
        };
        let invoked = service::invoke(
            ctx.app()?,
            caller,
            parse_id(&tool_id, "toolId")?,
            input.0,
            idempotency_key,
            origin,
        )
        .await;
        if let Some(pace) = invoked.pace {
            let report = rate_headers::headers(
                pace.requests_per_minute,
                u64::from(pace.burst_left),
                pace.full_in,
            );
            for (name, value) in report {
                ctx.insert_http_header(name, value);
            }
        }
        Ok(invoked.result?.into())
    }
}
