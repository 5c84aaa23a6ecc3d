use async_graphql::futures_util::{Stream, StreamExt, stream};
use async_graphql::{Context, ID, Json, Object, SimpleObject, Subscription};
use chrono::{DateTime, Utc};

use super::event_stream::StreamedChunk;
use super::service::{self, InvocationResult};
use crate::error::AppError;
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

/// Where an invocation of this request comes from: its request id and deadline, and where a streamed
/// answer's chunks go.
fn origin(
    ctx: &Context<'_>,
    chunks: Option<super::upstream::ChunkSink>,
) -> async_graphql::Result<service::Origin> {
    Ok(service::Origin {
        request_id: ctx.request()?.request_id.clone(),
        deadline: ctx.data_opt::<crate::clock::Deadline>().cloned(),
        chunks,
    })
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
        let origin = origin(ctx, None)?;
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

pub struct InvocationChunk {
    /// `None` on the last event.
    chunk: Option<StreamedChunk>,
    invocation: Option<Invocation>,
}

/// One event of a streamed invocation.
#[Object]
impl InvocationChunk {
    /// The text this chunk adds (choice 0's `delta.content`); empty on the last event.
    async fn text(&self) -> &str {
        self.chunk.as_ref().map_or("", |chunk| chunk.text.as_str())
    }

    /// The upstream's chunk as it came; null on the last event.
    async fn chunk(&self) -> Option<Json<serde_json::Value>> {
        self.chunk.as_ref().map(|chunk| Json(chunk.json()))
    }

    /// On the last event only: the metered invocation, already in the usage log.
    async fn invocation(&self) -> Option<&Invocation> {
        self.invocation.as_ref()
    }
}

#[derive(Default)]
pub struct GatewaySubscription;

#[Subscription]
impl GatewaySubscription {
    /// Calls a tool like `invokeTool` (same checks, reservation, rates, idempotency and circuit
    /// breaker) and streams its upstream's chunks as they arrive (a tool whose upstream streams Server-Sent
    /// Events; any other answers with the last event alone). The last event carries the invocation, its
    /// usage row written first. Ending the subscription early stops the upstream call, and what arrived
    /// is metered (estimated from the output produced, flagged). Over `/graphql/ws` or `/graphql/stream`.
    #[graphql(guard = "Scoped(Scope::Invoke)")]
    async fn invoke_tool_stream(
        &self,
        ctx: &Context<'_>,
        tool_id: ID,
        input: Json<serde_json::Value>,
        idempotency_key: Option<String>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<InvocationChunk>> + use<>>
    {
        let caller = ctx.user()?.clone();
        let app = ctx.app()?.clone();
        let tool = parse_id(&tool_id, "toolId")?;
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        // A subscription outlives any request deadline.
        let origin = service::Origin {
            deadline: None,
            ..origin(ctx, Some(sender))?
        };
        let call = tokio::spawn(async move {
            service::invoke(&app, &caller, tool, input.0, idempotency_key, origin).await
        });
        let chunks = stream::unfold(receiver, |mut receiver| async move {
            let chunk = receiver.recv().await?;
            let event = InvocationChunk {
                chunk: Some(chunk),
                invocation: None,
            };
            Some((Ok(event), receiver))
        });
        let last = stream::once(async move {
            let invoked = call.await.map_err(|e| {
                AppError::internal(anyhow::anyhow!("the invocation task failed: {e}"))
            })?;
            let result = invoked.result?;
            Ok(InvocationChunk {
                chunk: None,
                invocation: Some(result.into()),
            })
        });
        Ok(chunks.chain(last))
    }
}
