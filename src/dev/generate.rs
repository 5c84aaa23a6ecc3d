//! Synthetic usage at scale, so anyone can reproduce the performance figures:
//! `joyfull-hub generate-usage --users 1000 --rows 10000000`.
//!
//! Users are `gen-<n>@example.com` (password `Generated-Passw0rd!`), tools `gen-tool-<n>`. Rows spread
//! over the last `days` days, skewed so a few users make most calls (as in real platforms); about 3 %
//! fail. The daily rollups of generated users are rebuilt from their rows at the end, so the rows carry
//! no transaction id: they count as rolled up (see `usage::roll`).

use std::time::Instant;

use anyhow::Context;
use diesel::sql_types::{BigInt, Integer, Text};
use diesel_async::RunQueryDsl;

use crate::auth::password::PasswordHasher;
use crate::config::Config;
use crate::db::DbPool;

/// The password of generated users.
pub const PASSWORD: &str = "Generated-Passw0rd!";

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub users: i32,
    pub rows: i64,
    pub tools: i32,
    pub days: i32,
}

/// Adds users, tools and `rows` usage rows; returns how long it took.
pub async fn generate(
    pool: &DbPool,
    config: &Config,
    plan: Plan,
) -> anyhow::Result<std::time::Duration> {
    let started = Instant::now();
    let hash = PasswordHasher::new(&config.auth)?
        .hash(PASSWORD)
        .await
        .map_err(|e| anyhow::anyhow!(e.public_message()))?;
    let mut conn = pool.get().await.context("no database connection")?;
    diesel::sql_query(
        "INSERT INTO tools (id, slug, name, description, endpoint, category) \
         SELECT gen_random_uuid(), 'gen-tool-' || i, 'Generated tool ' || i, 'A generated tool', 'http://127.0.0.1:9/none', 'generated' \
         FROM generate_series(1, $1) AS i ON CONFLICT (slug) DO NOTHING",
    )
    .bind::<Integer, _>(plan.tools)
    .execute(&mut conn)
    .await?;
    diesel::sql_query(
        "INSERT INTO users (id, email, name, password_hash, email_verified_at) \
         SELECT gen_random_uuid(), 'gen-' || i || '@example.com', 'Generated user ' || i, $2, now() \
         FROM generate_series(1, $1) AS i ON CONFLICT (email) DO NOTHING",
    )
    .bind::<Integer, _>(plan.users)
    .bind::<Text, _>(&hash)
    .execute(&mut conn)
    .await?;

    // Each month of the range gets its partition first, so no row waits in the default one.
    diesel::sql_query(
        "SELECT usage_events_ensure_month(m) FROM generate_series(now() - make_interval(days => $1), \
                now() + interval '1 month', interval '1 month') AS m \
         UNION ALL SELECT usage_events_ensure_month(now() - make_interval(days => $1))",
    )
    .bind::<Integer, _>(plan.days)
    .execute(&mut conn)
    .await?;
    const BATCH: i64 = 500_000;
    let mut done = 0;
    while done < plan.rows {
        let batch = BATCH.min(plan.rows - done);
        diesel::sql_query(
            "WITH u AS (SELECT array_agg(id ORDER BY email) AS ids, count(*) AS n FROM users WHERE email LIKE 'gen-%@example.com'), \
                  t AS (SELECT array_agg(id ORDER BY slug) AS ids, count(*) AS n FROM tools WHERE slug LIKE 'gen-tool-%'), \
                  r AS (SELECT random() AS who, random() AS what, random() AS fail, random() AS size, random() AS lat, random() AS age \
                        FROM generate_series(1, $1)) \
             INSERT INTO usage_events (id, user_id, tool_id, tokens_used, tokens_estimated, status, error_code, latency_ms, created_at, xact) \
             SELECT gen_random_uuid(), u.ids[1 + floor(power(r.who, 3) * u.n)::int], t.ids[1 + floor(r.what * t.n)::int], \
                    CASE WHEN r.fail < 0.03 THEN 0 ELSE (20 + r.size * 2000)::bigint END, false, \
                    CASE WHEN r.fail < 0.03 THEN 'ERROR' ELSE 'SUCCESS' END, \
                    CASE WHEN r.fail < 0.03 THEN 'UPSTREAM_UNAVAILABLE' END, \
                    (30 + r.lat * 800)::int, now() - r.age * make_interval(days => $2), NULL \
             FROM r, u, t",
        )
        .bind::<BigInt, _>(batch)
        .bind::<Integer, _>(plan.days)
        .execute(&mut conn)
        .await?;
        done += batch;
        tracing::info!(done, total = plan.rows, "usage rows generated");
    }
    drop(conn);
    rebuild_rollups(pool).await?;
    let mut conn = pool.get().await.context("no database connection")?;
    // Leave the tables as autovacuum would in a long-running database: statistics current and the
    // visibility map set (index-only scans of the rollups then skip the heap).
    diesel_async::SimpleAsyncConnection::batch_execute(
        &mut *conn,
        "VACUUM (ANALYZE) usage_events, usage_daily, usage_monthly, usage_day_totals, platform_daily, platform_monthly, user_activity, user_last_active",
    )
    .await
    .context("vacuuming the generated usage")?;
    Ok(started.elapsed())
}

/// Rebuilds the user and platform rollups of generated users from their rows.
pub async fn rebuild_rollups(pool: &DbPool) -> anyhow::Result<()> {
    let mut conn = pool.get().await.context("no database connection")?;
    diesel::sql_query(
        "INSERT INTO usage_daily (user_id, tool_id, day, invocations, tokens, errors, latency_ms_sum) \
         SELECT e.user_id, e.tool_id, (e.created_at AT TIME ZONE 'UTC')::date, count(*), sum(e.tokens_used), \
                count(*) FILTER (WHERE e.status = 'ERROR'), sum(e.latency_ms) \
         FROM usage_events e JOIN users u ON u.id = e.user_id WHERE u.email LIKE 'gen-%@example.com' \
         GROUP BY 1, 2, 3 \
         ON CONFLICT (user_id, day, tool_id) DO UPDATE SET invocations = EXCLUDED.invocations, tokens = EXCLUDED.tokens, \
           errors = EXCLUDED.errors, latency_ms_sum = EXCLUDED.latency_ms_sum",
    )
    .execute(&mut conn)
    .await?;
    // Platform rollups from the generated rows, with the rollups' latency histogram.
    let histogram = crate::usage::model::latency_histogram_sql("e.latency_ms");
    diesel::sql_query(format!(
        "INSERT INTO platform_daily (day, tool_id, tier, shard, invocations, errors, tokens, latency_hist) \
         SELECT (e.created_at AT TIME ZONE 'UTC')::date, e.tool_id, 'NONE', 0, count(*), \
                count(*) FILTER (WHERE e.status = 'ERROR'), sum(e.tokens_used), {histogram} \
         FROM usage_events e JOIN users u ON u.id = e.user_id WHERE u.email LIKE 'gen-%@example.com' \
         GROUP BY 1, 2 \
         ON CONFLICT (day, tool_id, tier, shard) DO UPDATE SET invocations = EXCLUDED.invocations, \
           errors = EXCLUDED.errors, tokens = EXCLUDED.tokens, latency_hist = EXCLUDED.latency_hist",
    ))
    .execute(&mut conn)
    .await?;
    crate::usage::fold::refold(&mut conn).await?;
    diesel::sql_query(
        "INSERT INTO user_activity (day, user_id) SELECT DISTINCT d.day, d.user_id FROM usage_daily d \
         JOIN users u ON u.id = d.user_id WHERE u.email LIKE 'gen-%@example.com' ON CONFLICT DO NOTHING",
    )
    .execute(&mut conn)
    .await?;
    diesel::sql_query(
        "INSERT INTO user_last_active (user_id, day) SELECT a.user_id, max(a.day) FROM user_activity a \
         JOIN users u ON u.id = a.user_id WHERE u.email LIKE 'gen-%@example.com' GROUP BY a.user_id \
         ON CONFLICT (user_id) DO UPDATE SET day = greatest(user_last_active.day, EXCLUDED.day)",
    )
    .execute(&mut conn)
    .await?;
    // The rebuild rewrote every rollup row; reclaim the dead versions so reads are not slowed by them.
    diesel::sql_query(
        "VACUUM ANALYZE usage_daily, usage_monthly, usage_day_totals, platform_daily, platform_monthly, user_activity, user_last_active",
    )
    .execute(&mut conn)
    .await?;
    Ok(())
}
