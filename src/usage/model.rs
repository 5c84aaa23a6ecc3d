use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Whether an invocation succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
pub enum InvocationStatus {
    Success,
    Error,
}

impl InvocationStatus {
    pub fn as_db(self) -> &'static str {
        match self {
            Self::Success => "SUCCESS",
            Self::Error => "ERROR",
        }
    }

    pub fn from_db(value: &str) -> Self {
        if value == "SUCCESS" {
            Self::Success
        } else {
            Self::Error
        }
    }
}

/// A row of `usage_events`; also the payload of the live usage notification.
#[derive(Queryable, Selectable, Insertable, Debug, Clone, Serialize, Deserialize)]
#[diesel(table_name = crate::db::schema::usage_events, check_for_backend(diesel::pg::Pg))]
pub struct UsageEvent {
    pub id: Uuid,
    pub user_id: Uuid,
    pub api_key_id: Option<Uuid>,
    pub tool_id: Uuid,
    pub subscription_id: Option<Uuid>,
    pub tokens_used: i64,
    pub tokens_estimated: bool,
    pub status: String,
    pub error_code: Option<String>,
    pub latency_ms: i32,
    pub created_at: DateTime<Utc>,
}

/// Tokens and invocations of one tool on one day (from rollups or the raw log).
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct DailyTotal {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub tool_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Date)]
    pub day: NaiveDate,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub invocations: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub tokens: i64,
}
