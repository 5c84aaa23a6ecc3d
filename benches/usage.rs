//! Usage queries at scale: `usageSummary` over a year and the first and hundredth page of `usage`,
//! for the busiest user of a database holding `BENCH_ROWS` generated usage rows (default 10 million).
//!
//! Run: `cargo bench --bench usage`. The data lives in a private cluster under `BENCH_DATA_DIR`
//! (default `target/bench-usage`) and is generated once (a few minutes for 10 million rows), then
//! reused; with `DATABASE_URL` set, that database is used instead. Each figure is also given as a ratio
//! to the baseline measured in the same run: `{ __typename }` over the same HTTP path.

mod common;

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use common::{env_number, percentile};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use joyfull_hub::app::AppState;
use joyfull_hub::config::Config;
use joyfull_hub::db::Database;
use joyfull_hub::secrets::{Keys, hex};
use joyfull_hub::users::model::{Role, UserId};
use serde_json::{Value, json};

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Busiest {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    user_id: uuid::Uuid,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Cursor {
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: uuid::Uuid,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rows: i64 = env_number("BENCH_ROWS", 10_000_000);
    let users: i32 = env_number("BENCH_USERS", 1000);
    let samples: usize = env_number("BENCH_SAMPLES", 200);
    let dir = std::env::var("BENCH_DATA_DIR").unwrap_or_else(|_| "target/bench-usage".into());
    let mut config = Config::from_lookup(|key| std::env::var(key).ok())?;
    config.data_dir = dir.into();
    config.demo_seed = false;
    let database = Database::open(&config).await?;

    let mut conn = database.pool.get().await?;
    let existing: Count = diesel::sql_query("SELECT count(*) AS n FROM usage_events")
        .get_result(&mut conn)
        .await?;
    if existing.n < rows {
        println!(
            "generating {} usage rows for {users} users (once; reused by later runs)…",
            rows - existing.n
        );
        let plan = joyfull_hub::usage::generate::Plan {
            users,
            rows: rows - existing.n,
            tools: 20,
            days: 365,
        };
        let took = joyfull_hub::usage::generate::generate(&database.pool, &config, plan).await?;
        println!("generated in {:.0} s", took.as_secs_f64());
    }
    // Data generated before the platform rollups existed gets them now.
    let platform: Count = diesel::sql_query("SELECT count(*) AS n FROM platform_daily")
        .get_result(&mut conn)
        .await?;
    if platform.n == 0 {
        println!("building the rollups of the generated data…");
        joyfull_hub::usage::generate::rebuild_rollups(&database.pool).await?;
    }
    let admin: Busiest = diesel::sql_query(
        "UPDATE users SET role = 'ADMIN' WHERE email = 'gen-2@example.com' RETURNING id AS user_id, 0::bigint AS n",
    )
    .get_result(&mut conn)
    .await
    .context("the generated user gen-2 is missing")?;
    let total: Count = diesel::sql_query("SELECT count(*) AS n FROM usage_events")
        .get_result(&mut conn)
        .await?;
    let busiest: Busiest = diesel::sql_query(
        "SELECT user_id, count(*) AS n FROM usage_events GROUP BY user_id ORDER BY 2 DESC LIMIT 1",
    )
    .get_result(&mut conn)
    .await?;
    let page_99_end: Cursor = diesel::sql_query(
        "SELECT created_at, id FROM usage_events WHERE user_id = $1 ORDER BY created_at DESC, id DESC OFFSET 1979 LIMIT 1",
    )
    .bind::<diesel::sql_types::Uuid, _>(busiest.user_id)
    .get_result(&mut conn)
    .await
    .context("the busiest user needs at least 2,000 rows for a 100th page")?;
    drop(conn);
    let cursor = hex(format!(
        "{}|{}",
        page_99_end.created_at.timestamp_micros(),
        page_99_end.id
    )
    .as_bytes());

    let keys = Keys::generate();
    let (token, _) = joyfull_hub::auth::tokens::issue_access_token(
        &keys,
        UserId(busiest.user_id),
        Role::User,
        0,
        Utc::now(),
        Duration::from_secs(3600),
    )
    .map_err(|e| anyhow::anyhow!(e.public_message()))?;
    let (admin_token, _) = joyfull_hub::auth::tokens::issue_access_token(
        &keys,
        UserId(admin.user_id),
        Role::Admin,
        0,
        Utc::now(),
        Duration::from_secs(3600),
    )
    .map_err(|e| anyhow::anyhow!(e.public_message()))?;
    let state = AppState::new(config, database.pool.clone(), keys)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/graphql", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(joyfull_hub::serve_on(
        listener,
        joyfull_hub::http::router(state),
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(5),
    ));
    let client = reqwest::Client::new();
    let now = Utc::now();
    let year_ago = now - chrono::Duration::days(365);

    let stats = json!({ "query": "query($f: DateTime, $t: DateTime) { admin { stats(from: $f, to: $t) { users { total new active } invocations tokens errorRate byTool { invocations errorRate p95LatencyMs } byDay { day invocations } byTier { tier tokens } subscriptions { tier active } monthlyRecurringRevenue { amountCents } } } }", "variables": { "f": year_ago, "t": now } });
    let cases: [(&str, Value); 4] = [
        (
            "baseline { __typename }",
            json!({ "query": "{ __typename }" }),
        ),
        (
            "usageSummary, one year",
            json!({ "query": "query($f: DateTime, $t: DateTime) { usageSummary(from: $f, to: $t) { totalTokens totalInvocations byTool { tokens invocations } byDay { day tokens } tokenLimit tokensRemaining } }", "variables": { "f": year_ago, "t": now } }),
        ),
        (
            "usage, first page (20)",
            json!({ "query": "{ usage(first: 20) { pageInfo { hasNextPage endCursor } edges { node { id tokensUsed status latencyMs createdAt tool { name } } } } }" }),
        ),
        (
            "usage, 100th page (20)",
            json!({ "query": "query($a: String) { usage(first: 20, after: $a) { pageInfo { hasNextPage endCursor } edges { node { id tokensUsed status latencyMs createdAt tool { name } } } } }", "variables": { "a": cursor } }),
        ),
    ];

    println!(
        "usage benchmark: {} rows in the log, busiest user has {} rows; {samples} sequential requests per query",
        total.n, busiest.n
    );
    let mut baseline = None;
    let admin_case = [("admin.stats, one year", stats)];
    let all = cases
        .iter()
        .map(|(n, b)| (n, b, &token))
        .chain(admin_case.iter().map(|(n, b)| (n, b, &admin_token)));
    for (name, body, token) in all {
        for _ in 0..10 {
            client
                .post(&url)
                .bearer_auth(token)
                .json(body)
                .send()
                .await?
                .bytes()
                .await?;
        }
        let mut latencies = Vec::with_capacity(samples);
        for _ in 0..samples {
            let started = Instant::now();
            let answer: Value = client
                .post(&url)
                .bearer_auth(token)
                .json(body)
                .send()
                .await?
                .json()
                .await?;
            latencies.push(started.elapsed());
            anyhow::ensure!(answer.get("errors").is_none(), "{name} failed: {answer}");
        }
        latencies.sort();
        let (p50, p99) = (percentile(&latencies, 50.0), percentile(&latencies, 99.0));
        let base = *baseline.get_or_insert(p50);
        println!(
            "{name:<26} p50 {:>6.2} ms   p99 {:>6.2} ms   (p99 = {:.1} x baseline p50)",
            p50.as_secs_f64() * 1000.0,
            p99.as_secs_f64() * 1000.0,
            p99.as_secs_f64() / base.as_secs_f64().max(1e-9)
        );
    }

    let _ = stop.send(());
    server.await??;
    database.close().await;
    Ok(())
}
