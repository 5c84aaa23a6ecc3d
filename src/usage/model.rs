use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

crate::text_enum! {
    /// Whether an invocation succeeded.
    #[derive(async_graphql::Enum)]
    pub enum InvocationStatus {
        Success => "SUCCESS",
        Error => "ERROR",
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
    pub status: InvocationStatus,
    pub error_code: Option<String>,
    pub latency_ms: i32,
    pub created_at: DateTime<Utc>,
    /// Tokens the upstream reported beyond the call's reservation (see `gateway::budget`).
    #[serde(default)]
    pub tokens_overrun: i64,
}

/// Tokens and invocations in a range, of one tool (`day` empty) or on one day (`tool_id` empty).
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct SummaryTotal {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Uuid>)]
    pub tool_id: Option<Uuid>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Date>)]
    pub day: Option<NaiveDate>,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub invocations: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub tokens: i64,
}

/// Upper bounds (ms) of the latency histogram buckets in `platform_daily`; a last bucket takes the rest.
pub const LATENCY_BOUNDS_MS: [i32; 11] = [
    50, 100, 200, 300, 500, 750, 1000, 2000, 5000, 10_000, 30_000,
];

/// The 1-based histogram bucket of a latency.
pub fn latency_bucket(latency_ms: i32) -> i32 {
    let index = LATENCY_BOUNDS_MS
        .iter()
        .position(|bound| latency_ms <= *bound)
        .unwrap_or(LATENCY_BOUNDS_MS.len());
    i32::try_from(index).unwrap_or(0) + 1
}

/// The latency histogram of a group of usage rows, as SQL over `column` (their `latency_ms`): a
/// `bigint[]` with one count per [`latency_bucket`].
pub fn latency_histogram_sql(column: &str) -> String {
    let mut buckets: Vec<String> = Vec::with_capacity(LATENCY_BOUNDS_MS.len() + 1);
    let mut lower = i32::MIN;
    for bound in LATENCY_BOUNDS_MS {
        buckets.push(format!(
            "count(*) FILTER (WHERE {column} > {lower} AND {column} <= {bound})"
        ));
        lower = bound;
    }
    buckets.push(format!("count(*) FILTER (WHERE {column} > {lower})"));
    format!("ARRAY[{}]::bigint[]", buckets.join(", "))
}

/// A filter on a user's log: `[from, to)`, and optionally one tool or one API key's calls.
#[derive(Debug, Clone, Copy)]
pub struct Filter {
    pub user: Uuid,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub tool: Option<Uuid>,
    pub api_key: Option<Uuid>,
}

#[cfg(test)]
mod tests {
    use super::latency_bucket;

    #[test]
    fn latencies_fall_in_their_histogram_bucket() {
        assert_eq!(latency_bucket(0), 1);
        assert_eq!(latency_bucket(50), 1);
        assert_eq!(latency_bucket(51), 2);
        assert_eq!(latency_bucket(30_000), 11);
        assert_eq!(latency_bucket(30_001), 12);
    }
}
