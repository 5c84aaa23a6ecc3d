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
