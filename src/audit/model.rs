//! Rows of the audit trail and the filter on it.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

/// A row of `audit_log`.
#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = crate::db::schema::audit_log, check_for_backend(diesel::pg::Pg))]
pub struct AuditRow {
    pub id: Uuid,
    pub actor_id: Option<Uuid>,
    pub action: String,
    pub target_type: String,
    pub target_id: Option<String>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub request_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

/// A filter on the trail.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub action: Option<String>,
    pub actor: Option<Uuid>,
    pub target_id: Option<String>,
}
