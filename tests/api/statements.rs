//! Fixed SQL on the hot paths is prepared once per connection and reused.

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;
use joyfull_hub::db::cached::CachedExt;

use crate::helpers::TestApp;

#[derive(QueryableByName)]
struct Number {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn prepared_like(conn: &mut diesel_async::AsyncPgConnection, marker: &str) -> i64 {
    diesel::sql_query("SELECT count(*) AS n FROM pg_prepared_statements WHERE statement LIKE $1")
        .bind::<Text, _>(format!("%{marker}%"))
        .get_result::<Number>(conn)
        .await
        .unwrap()
        .n
}

#[tokio::test]
async fn cached_sql_is_prepared_once_and_plain_sql_query_is_not() {
    let app = TestApp::spawn().await;
    let mut conn = app.state.pool.get().await.unwrap();

    for i in 0..3_i64 {
        let cached: Number = diesel::sql_query("SELECT $1 + 1 AS n /* cached-marker */")
            .bind::<BigInt, _>(i)
            .cached()
            .get_result(&mut conn)
            .await
            .unwrap();
        assert_eq!(cached.n, i + 1);
        let plain: Number = diesel::sql_query("SELECT $1 + 2 AS n /* plain-marker */")
            .bind::<BigInt, _>(i)
            .get_result(&mut conn)
            .await
            .unwrap();
        assert_eq!(plain.n, i + 2);
    }

    assert_eq!(prepared_like(&mut conn, "cached-marker").await, 1);
    assert_eq!(prepared_like(&mut conn, "plain-marker").await, 0);
}

#[derive(QueryableByName)]
struct Plans {
    #[diesel(sql_type = BigInt)]
    generic: i64,
    #[diesel(sql_type = BigInt)]
    custom: i64,
}

/// A user's summary is kept prepared and runs on its generic plan: PostgreSQL would plan it again for
/// every call on its own (its raw ranges' bounds are values, so the generic plan is as fast).
#[tokio::test]
async fn the_usage_summary_runs_on_one_generic_plan_per_connection() {
    use chrono::{Duration, Utc};
    use joyfull_hub::usage::repo::{RawRange, summary_totals};

    let app = TestApp::spawn().await;
    let mut conn = app.state.read_pool.get().await.unwrap();
    let user = uuid::Uuid::now_v7();
    let now = Utc::now();
    let today = now.date_naive();
    let ranges = [
        RawRange::default(),
        RawRange {
            read: true,
            from: Some(now - Duration::hours(3)),
            to: None,
        },
        RawRange {
            read: true,
            from: None,
            to: Some(now),
        },
    ];
    // More calls than PostgreSQL's five custom plans before it would weigh the generic one.
    for round in 0..8 {
        let days = (round % 2 == 0).then_some((Some(today - Duration::days(365)), Some(today)));
        for range in ranges {
            let totals = summary_totals(&mut conn, user, days, range, RawRange::default())
                .await
                .unwrap();
            assert!(totals.is_empty(), "a user with no usage has no totals");
        }
    }

    let plans: Plans = diesel::sql_query(
        "SELECT coalesce(sum(generic_plans), 0)::bigint AS generic, \
                coalesce(sum(custom_plans), 0)::bigint AS custom \
         FROM pg_prepared_statements WHERE statement LIKE '%FROM usage_day_totals%'",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!(plans.custom, 0, "no call planned for its own values");
    assert!(
        plans.generic >= 24,
        "every call on the kept statement's generic plan: {}",
        plans.generic
    );
    assert_eq!(
        prepared_like(&mut conn, "FROM usage_day_totals").await,
        1,
        "one statement kept, whatever the bounds"
    );
}
