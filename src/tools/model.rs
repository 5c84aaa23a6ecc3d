use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::billing::model::PlanTier;

/// A tool's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ToolId(pub Uuid);

impl std::fmt::Display for ToolId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A row of `tools`.
#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = crate::db::schema::tools, check_for_backend(diesel::pg::Pg))]
pub struct ToolRow {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub description: String,
    pub usage_notes: String,
    pub category: String,
    pub endpoint: String,
    pub method: String,
    pub headers: serde_json::Value,
    pub timeout_ms: i32,
    pub tokens_path: String,
    pub estimated_tokens: i64,
    /// The most a call that states its own maximum reserves.
    pub max_tokens_per_call: i64,
    pub min_tier: PlanTier,
    pub enabled: bool,
    pub deleted_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// Whether the upstream streams its answers (Server-Sent Events).
    pub streams: bool,
}

impl ToolRow {
    pub fn stored_headers(&self) -> Vec<StoredHeader> {
        serde_json::from_value(self.headers.clone()).unwrap_or_default()
    }
}

/// A header as stored: a plain value, or an encrypted one (`nonce` + `ciphertext`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredHeader {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ciphertext: Option<String>,
}

impl StoredHeader {
    pub fn is_secret(&self) -> bool {
        self.ciphertext.is_some()
    }
}

#[derive(Insertable)]
#[diesel(table_name = crate::db::schema::tools)]
pub struct NewTool {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub description: String,
    pub usage_notes: String,
    pub category: String,
    pub endpoint: String,
    pub method: String,
    pub headers: serde_json::Value,
    pub timeout_ms: i32,
    pub tokens_path: String,
    pub estimated_tokens: i64,
    pub max_tokens_per_call: i64,
    pub min_tier: PlanTier,
    pub enabled: bool,
    pub streams: bool,
}

/// Changes to a tool; `None` leaves a column as it is.
#[derive(AsChangeset, Default)]
#[diesel(table_name = crate::db::schema::tools)]
pub struct ToolChanges {
    pub slug: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub usage_notes: Option<String>,
    pub category: Option<String>,
    pub endpoint: Option<String>,
    pub method: Option<String>,
    pub headers: Option<serde_json::Value>,
    pub timeout_ms: Option<i32>,
    pub tokens_path: Option<String>,
    pub estimated_tokens: Option<i64>,
    pub max_tokens_per_call: Option<i64>,
    pub min_tier: Option<PlanTier>,
    pub enabled: Option<bool>,
    pub streams: Option<bool>,
}
