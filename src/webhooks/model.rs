//! Webhook endpoints, deliveries and attempts.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

/// Webhook deliveries one instance has in flight at most (`AppState::webhook_slots`).
pub const IN_FLIGHT: usize = 64;

crate::text_enum! {
    /// Where a delivery stands.
    #[derive(async_graphql::Enum)]
    pub enum DeliveryStatus {
        /// Waiting for its first or next attempt.
        Pending => "PENDING",
        /// The endpoint answered 2xx.
        Delivered => "DELIVERED",
        /// Given up: its retries ran out, or its endpoint was disabled or deleted.
        Failed => "FAILED",
    }
}

/// A row of `webhook_endpoints`.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = crate::db::schema::webhook_endpoints)]
pub struct EndpointRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub url: String,
    pub description: String,
    /// The event types it takes (their dotted names); `None` for all.
    pub events: Option<Vec<String>>,
    pub secret_nonce: String,
    pub secret_ciphertext: String,
    pub previous_nonce: Option<String>,
    pub previous_ciphertext: Option<String>,
    pub previous_until: Option<DateTime<Utc>>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub failing_since: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl EndpointRow {
    /// Whether it takes events of type `kind` (a dotted name).
    pub fn takes(&self, kind: &str) -> bool {
        self.events
            .as_ref()
            .is_none_or(|events| events.iter().any(|event| event == kind))
    }
}

/// A row of `webhook_deliveries`.
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable, Insertable)]
#[diesel(table_name = crate::db::schema::webhook_deliveries)]
pub struct DeliveryRow {
    pub id: Uuid,
    pub message_id: Uuid,
    pub endpoint_id: Uuid,
    pub user_id: Uuid,
    pub event_id: Option<Uuid>,
    pub kind: String,
    pub body: String,
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// A row of `webhook_attempts`.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = crate::db::schema::webhook_attempts)]
pub struct AttemptRow {
    pub id: Uuid,
    pub delivery_id: Uuid,
    pub attempted_at: DateTime<Utc>,
    pub status_code: Option<i32>,
    pub latency_ms: i32,
    pub excerpt: String,
}
