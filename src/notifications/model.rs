//! Events, notifications and the channels that carry them.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Deserialize;
use uuid::Uuid;

crate::text_enum! {
    /// A type of event people are told about. Webhooks name it by its dotted spelling (`type`).
    #[derive(async_graphql::Enum)]
    pub enum EventType {
        /// A subscription began (a plan taken or granted).
        SubscriptionStarted => "subscription.started",
        /// A plan changed, a change was scheduled or undone, a cancellation asked for or taken back.
        SubscriptionChanged => "subscription.changed",
        /// A paid period ends within three days and the subscription will renew.
        SubscriptionRenewing => "subscription.renewing",
        /// A new period began.
        SubscriptionRenewed => "subscription.renewed",
        /// A subscription ended.
        SubscriptionExpired => "subscription.expired",
        /// A payment failed; the plan stays until the grace period ends.
        PaymentFailed => "payment.failed",
        /// 80 % of the period's tokens are used.
        QuotaWarning => "quota.warning",
        /// All of the period's tokens are used.
        QuotaExhausted => "quota.exhausted",
        /// An API key was created (security notice).
        ApiKeyCreated => "api_key.created",
        /// An API key was revoked.
        ApiKeyRevoked => "api_key.revoked",
        /// An API key expires within seven days.
        ApiKeyExpiring => "api_key.expiring",
        /// The password was changed (security notice).
        PasswordChanged => "password.changed",
        /// The password was reset by mail (security notice).
        PasswordReset => "password.reset",
        /// The login address changed (security notice, to the old and the new address).
        EmailChanged => "email.changed",
        /// A login from an address the account never signed in from (security notice).
        NewLoginAddress => "login.new_address",
        /// For administrators: a tool's circuit breaker opened after upstream failures from several callers.
        ToolCircuitOpened => "tool.circuit_opened",
        /// For administrators: a burst of upstream failures of a tool (20 within a minute on one instance).
        ToolUpstreamFailures => "tool.upstream_failures",
        /// A webhook endpoint failed for a day and was disabled.
        WebhookEndpointDisabled => "webhook.endpoint_disabled",
    }
}

impl EventType {
    /// Security notices reach the user in the app and by mail whatever their preferences say.
    pub const fn is_security(self) -> bool {
        matches!(
            self,
            Self::ApiKeyCreated
                | Self::PasswordChanged
                | Self::PasswordReset
                | Self::EmailChanged
                | Self::NewLoginAddress
        )
    }

    /// Platform events concern no one user: they go to every active administrator.
    pub const fn is_platform(self) -> bool {
        matches!(self, Self::ToolCircuitOpened | Self::ToolUpstreamFailures)
    }

    /// Whether mail carries this type when the user chose nothing.
    const fn mailed_by_default(self) -> bool {
        self.is_security()
            || matches!(
                self,
                Self::PaymentFailed
                    | Self::QuotaExhausted
                    | Self::SubscriptionExpired
                    | Self::SubscriptionRenewing
                    | Self::ApiKeyExpiring
                    | Self::ToolCircuitOpened
                    | Self::ToolUpstreamFailures
                    | Self::WebhookEndpointDisabled
            )
    }

    /// The channels that carry this type when the user chose nothing.
    pub const fn default_channels(self) -> Channels {
        Channels {
            in_app: true,
            email: self.mailed_by_default(),
            webhook: true,
        }
    }
}

/// Which channels carry a type of event to a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channels {
    pub in_app: bool,
    pub email: bool,
    pub webhook: bool,
}

impl Channels {
    /// What `rows` (a user's choices) say for `event`, or its defaults.
    pub fn chosen(rows: &[ChannelRow], event: EventType) -> Self {
        rows.iter().find(|row| row.kind == event).map_or_else(
            || event.default_channels(),
            |row| Self {
                in_app: row.in_app,
                email: row.email,
                webhook: row.webhook,
            },
        )
    }

    /// What is delivered for `event`: security notices always reach the app and the mailbox.
    pub const fn enforced(self, event: EventType) -> Self {
        if event.is_security() {
            Self {
                in_app: true,
                email: true,
                webhook: self.webhook,
            }
        } else {
            self
        }
    }
}

/// A row of `notification_channels`.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = crate::db::schema::notification_channels)]
pub struct ChannelRow {
    pub user_id: Uuid,
    pub kind: EventType,
    pub in_app: bool,
    pub email: bool,
    pub webhook: bool,
}

/// A row of `outbox_events`.
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = crate::db::schema::outbox_events)]
pub struct OutboxEventRow {
    pub id: Uuid,
    pub kind: String,
    pub user_id: Option<Uuid>,
    pub payload: serde_json::Value,
    pub dedupe_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub dispatched_at: Option<DateTime<Utc>>,
}

#[derive(Insertable)]
#[diesel(table_name = crate::db::schema::outbox_events)]
pub struct NewOutboxEvent<'a> {
    pub id: Uuid,
    pub kind: EventType,
    pub user_id: Option<Uuid>,
    pub payload: &'a serde_json::Value,
    pub dedupe_key: Option<&'a str>,
    pub created_at: DateTime<Utc>,
}

/// The channel new notifications are announced on (by a trigger on `notifications`).
pub const LIVE_CHANNEL: &str = "hub_notifications";

/// A row of `notifications` (also the live feed's payload, as the database writes it).
#[derive(Debug, Clone, Queryable, Selectable, Insertable, Deserialize)]
#[diesel(table_name = crate::db::schema::notifications)]
pub struct NotificationRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub event_id: Uuid,
    pub kind: EventType,
    pub title: String,
    pub body: String,
    pub payload: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
}
