use async_graphql::{ID, Json, SimpleObject};
use chrono::{DateTime, Utc};

use super::model::AuditRow;

/// One entry of the audit trail.
#[derive(SimpleObject)]
pub struct AuditEntry {
    pub id: ID,
    /// The acting user's id; null for the system.
    pub actor_id: Option<ID>,
    /// What happened, e.g. `user.update`, `tool.delete`, `user.password_reset`.
    pub action: String,
    /// The kind of thing acted on: `user`, `tool`, `plan`.
    pub target_type: String,
    pub target_id: Option<String>,
    /// The changed fields before (secrets never appear).
    pub before: Option<Json<serde_json::Value>>,
    /// The changed fields after.
    pub after: Option<Json<serde_json::Value>>,
    /// The `x-request-id` of the request that did it.
    pub request_id: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The client address of that request (behind a trusted proxy, the address it forwarded).
    pub client_ip: Option<String>,
    /// The `User-Agent` of that request.
    pub user_agent: Option<String>,
}

impl From<AuditRow> for AuditEntry {
    fn from(row: AuditRow) -> Self {
        Self {
            id: ID(row.id.to_string()),
            actor_id: row.actor_id.map(|id| ID(id.to_string())),
            action: row.action,
            target_type: row.target_type,
            target_id: row.target_id,
            before: row.before.map(Json),
            after: row.after.map(Json),
            request_id: row.request_id,
            created_at: row.created_at,
            client_ip: row.client_ip,
            user_agent: row.user_agent,
        }
    }
}
