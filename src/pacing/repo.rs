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
    /// Points to lease beyond the cost, if the subject has them to spare (see `pace_batch.sql`).
    pub extra: i32,
}

/// How one request was judged, and the subject's standing after its batch.
#[derive(QueryableByName, Debug, Clone, Copy)]
pub struct Paced {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub admitted: bool,
    /// The cost and the slice leased with it; 0 when refused.
    #[diesel(sql_type = BigInt)]
    pub granted: i64,
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
        .bind::<Array<Integer>, _>(requests.iter().map(|r| r.extra).collect::<Vec<_>>())
        .cached()
        .load(conn)
        .await
}

/// Gives back points leased and not spent: each subject's TAT moves back by `unspent_ms`, never
/// before now. Rows are locked in subject order, as `pace_batch.sql` locks them.
pub async fn give_back(
    conn: &mut AsyncPgConnection,
    subjects: &[String],
    unspent_ms: &[f64],
) -> diesel::QueryResult<usize> {
    diesel::sql_query(
        "WITH back AS (SELECT * FROM unnest($1::text[], $2::float8[]) AS b(subject, ms)), \
              held AS (SELECT p.subject FROM request_pacing p WHERE p.subject = ANY($1::text[]) \
                       ORDER BY p.subject FOR UPDATE) \
         UPDATE request_pacing p \
         SET tat = GREATEST(p.tat - make_interval(secs => b.ms / 1000), statement_timestamp()) \
         FROM back b JOIN held h ON h.subject = b.subject WHERE p.subject = b.subject",
    )
    .bind::<Array<Text>, _>(subjects)
    .bind::<Array<Double>, _>(unspent_ms)
    .execute(conn)
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
