//! The only code that writes `request_pacing`.

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Double, Integer, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::cached::CachedExt;

/// One request to pace.
#[derive(Debug, Clone)]
pub struct PaceRequest {
    pub subject: String,
    /// Milliseconds between two unit-cost requests.
    pub every_ms: f64,
    /// The burst's tolerance in milliseconds.
    pub tolerance_ms: f64,
    pub cost: i32,
}

/// How one request was judged, and the subject's standing after its batch.
#[derive(QueryableByName, Debug, Clone, Copy)]
pub struct Paced {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub admitted: bool,
    #[diesel(sql_type = BigInt)]
    pub ahead_ms: i64,
    #[diesel(sql_type = BigInt)]
    pub points_left: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<BigInt>)]
    pub retry_in_ms: Option<i64>,
}

/// Runs `pace_batch.sql`: one answer per request, in order.
pub async fn pace_batch(
    conn: &mut AsyncPgConnection,
    requests: &[&PaceRequest],
) -> diesel::QueryResult<Vec<Paced>> {
    diesel::sql_query(include_str!("pace_batch.sql"))
        .bind::<Array<Text>, _>(
            requests
                .iter()
                .map(|r| r.subject.as_str())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Double>, _>(requests.iter().map(|r| r.every_ms).collect::<Vec<_>>())
        .bind::<Array<Double>, _>(requests.iter().map(|r| r.tolerance_ms).collect::<Vec<_>>())
        .bind::<Array<Integer>, _>(requests.iter().map(|r| r.cost).collect::<Vec<_>>())
        .cached()
        .load(conn)
        .await
}

/// Deletes subjects whose pace has caught up with `now` (they are the same as absent).
pub async fn delete_caught_up(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
) -> diesel::QueryResult<usize> {
    diesel::sql_query("DELETE FROM request_pacing WHERE tat < $1")
        .bind::<diesel::sql_types::Timestamptz, _>(now)
        .execute(conn)
        .await
}
