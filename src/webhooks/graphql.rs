use async_graphql::connection::Connection;
use async_graphql::{Context, ID, InputObject, MaybeUndefined, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::model::{AttemptRow, DeliveryStatus, EndpointRow};
use super::service::{self, Changes, Logged, WithSecret};
use crate::graphql::context::ContextExt;
use crate::graphql::cursor;
use crate::graphql::guards::Scoped;
use crate::graphql::ids;
use crate::keys::model::Scope;
use crate::notifications::model::EventType;

/// Where the hub sends signed webhooks (Standard Webhooks).
#[derive(SimpleObject)]
pub struct WebhookEndpoint {
    pub id: ID,
    pub url: String,
    pub description: String,
    /// The event types it takes; null for all.
    pub events: Option<Vec<EventType>>,
    /// False once disabled by its owner, or after failing for a day (`disabledReason` says which).
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// Since when deliveries fail without a success; null while it answers.
    pub failing_since: Option<DateTime<Utc>>,
    /// Until when a rotated secret still signs beside the new one.
    pub previous_secret_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl From<EndpointRow> for WebhookEndpoint {
    fn from(row: EndpointRow) -> Self {
        Self {
            id: ID(row.id.to_string()),
            url: row.url,
            description: row.description,
            events: row.events.map(|events| {
                events
                    .iter()
                    .filter_map(|e| EventType::parse_db(e))
                    .collect()
            }),
            enabled: row.enabled,
            disabled_reason: row.disabled_reason,
            failing_since: row.failing_since,
            previous_secret_until: row.previous_until,
            created_at: row.created_at,
        }
    }
}

/// An endpoint with its signing secret, shown this once.
#[derive(SimpleObject)]
pub struct WebhookEndpointWithSecret {
    pub endpoint: WebhookEndpoint,
    /// `whsec_` and the base64 key: verify `webhook-signature` with it.
    pub secret: String,
}

impl From<WithSecret> for WebhookEndpointWithSecret {
    fn from(created: WithSecret) -> Self {
        Self {
            endpoint: created.endpoint.into(),
            secret: created.secret,
        }
    }
}

/// One attempt at a delivery.
#[derive(SimpleObject)]
pub struct WebhookAttempt {
    pub attempted_at: DateTime<Utc>,
    /// The HTTP status answered; null when no answer came.
    pub status_code: Option<i32>,
    pub latency_ms: i32,
    /// The start of the answer (512 bytes at most), or why there was none.
    pub excerpt: String,
}

impl From<AttemptRow> for WebhookAttempt {
    fn from(row: AttemptRow) -> Self {
        Self {
            attempted_at: row.attempted_at,
            status_code: row.status_code,
            latency_ms: row.latency_ms,
            excerpt: row.excerpt,
        }
    }
}

/// A message sent (or to be sent) to an endpoint.
#[derive(SimpleObject)]
pub struct WebhookDelivery {
    pub id: ID,
    /// The `webhook-id` header: the same for every attempt and for replays.
    pub message_id: String,
    pub endpoint_id: ID,
    /// The event type (`quota.warning`, …), or `webhook.test`.
    pub event_type: String,
    /// The body, exactly as sent.
    pub body: String,
    pub status: DeliveryStatus,
    pub attempt_count: i32,
    /// When a pending delivery is tried next.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// Every attempt, oldest first.
    pub attempts: Vec<WebhookAttempt>,
}

impl From<Logged> for WebhookDelivery {
    fn from(logged: Logged) -> Self {
        let row = logged.delivery;
        Self {
            id: ID(row.id.to_string()),
            message_id: row.message_id.to_string(),
            endpoint_id: ID(row.endpoint_id.to_string()),
            event_type: row.kind,
            body: row.body,
            next_attempt_at: (row.status == DeliveryStatus::Pending).then_some(row.next_attempt_at),
            status: row.status,
            attempt_count: row.attempts,
            last_status_code: row.last_status_code,
            last_error: row.last_error,
            created_at: row.created_at,
            delivered_at: row.delivered_at,
            attempts: logged.attempts.into_iter().map(Into::into).collect(),
        }
    }
}

/// A new endpoint.
#[derive(InputObject)]
pub struct CreateWebhookEndpointInput {
    /// An http(s) URL on a public address.
    pub url: String,
    /// The event types it takes; omit for all.
    pub events: Option<Vec<EventType>>,
    pub description: Option<String>,
}

/// Changes to an endpoint; what is omitted stays (`events: null` takes every event again).
#[derive(InputObject)]
pub struct UpdateWebhookEndpointInput {
    pub url: Option<String>,
    pub events: MaybeUndefined<Vec<EventType>>,
    pub description: Option<String>,
    /// Enabling a disabled endpoint clears its failure record.
    pub enabled: Option<bool>,
}

#[derive(Default)]
pub struct WebhooksQuery;

#[Object]
impl WebhooksQuery {
    /// The caller's webhook endpoints.
    #[graphql(guard = "Scoped(Scope::Read)")]
    async fn webhook_endpoints(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<WebhookEndpoint>> {
        let user = ctx.user()?;
        let rows = service::list(ctx.app()?, user.id).await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// An endpoint's deliveries, newest first, with every attempt (kept 30 days).
    #[graphql(
        guard = "Scoped(Scope::Read)",
        complexity = "crate::graphql::cost::page(first, child_complexity)"
    )]
    async fn webhook_deliveries(
        &self,
        ctx: &Context<'_>,
        endpoint_id: ID,
        status: Option<DeliveryStatus>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, WebhookDelivery>> {
        let user = ctx.user()?;
        let endpoint = ids::parse(&endpoint_id, "endpointId")?;
        let first = cursor::page_size(first)?;
        let after = after.as_deref().map(cursor::decode_time_id).transpose()?;
        let (rows, has_next) =
            service::deliveries(ctx.app()?, user.id, endpoint, status, after, first).await?;
        Ok(cursor::newest_first(
            rows,
            after.is_some(),
            has_next,
            |logged| (logged.delivery.created_at, logged.delivery.id),
        ))
    }
}

#[derive(Default)]
pub struct WebhooksMutation;

#[Object]
impl WebhooksMutation {
    /// Registers an endpoint (at most 10 per user) for `events` (all when omitted); its signing secret
    /// is in the answer, shown this once. Errors: `BAD_USER_INPUT` (`url`, `events`, `description`),
    /// `CONFLICT` (too many endpoints).
    #[graphql(guard = "Scoped(Scope::Manage)")]
    async fn create_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        input: CreateWebhookEndpointInput,
    ) -> async_graphql::Result<WebhookEndpointWithSecret> {
        let user = ctx.user()?;
        let created = service::create(
            ctx.app()?,
            user.id,
            &input.url,
            input.events,
            input.description,
        )
        .await?;
        Ok(created.into())
    }

    #[graphql(guard = "Scoped(Scope::Manage)")]
    async fn update_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateWebhookEndpointInput,
    ) -> async_graphql::Result<WebhookEndpoint> {
        let user = ctx.user()?;
        let events = match input.events {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(events) => Some(Some(events)),
        };
        let changes = Changes {
            url: input.url,
            events,
            description: input.description,
            enabled: input.enabled,
        };
        let row = service::update(ctx.app()?, user.id, ids::parse(&id, "id")?, changes).await?;
        Ok(row.into())
    }

    /// Deletes an endpoint and its delivery log.
    #[graphql(guard = "Scoped(Scope::Manage)")]
    async fn delete_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<bool> {
        let user = ctx.user()?;
        Ok(service::delete(ctx.app()?, user.id, ids::parse(&id, "id")?).await?)
    }

    /// A new signing secret, shown this once; the old one keeps signing beside it for 24 hours, so
    /// receivers can switch without losing a delivery.
    #[graphql(guard = "Scoped(Scope::Manage)")]
    async fn rotate_webhook_secret(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<WebhookEndpointWithSecret> {
        let user = ctx.user()?;
        let rotated = service::rotate_secret(ctx.app()?, user.id, ids::parse(&id, "id")?).await?;
        Ok(rotated.into())
    }

    /// Sends a `webhook.test` delivery to the endpoint now and answers with its first attempt.
    #[graphql(guard = "Scoped(Scope::Manage)")]
    async fn send_test_webhook(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<WebhookDelivery> {
        let user = ctx.user()?;
        Ok(
            service::send_test(ctx.app()?, user.id, ids::parse(&id, "id")?)
                .await?
                .into(),
        )
    }

    /// Sends a delivery again now (same `webhook-id` and body), as a new delivery with its own attempts.
    #[graphql(guard = "Scoped(Scope::Manage)")]
    async fn replay_webhook_delivery(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<WebhookDelivery> {
        let user = ctx.user()?;
        Ok(service::replay(ctx.app()?, user.id, ids::parse(&id, "id")?)
            .await?
            .into())
    }
}
