-- Adds rows of the usage log to the rollups and moves the roll's mark past them (`usage/roll.rs`).
-- Rollup rows are upserted in key order (the caller sorts them), so rolls and folds cannot deadlock.
-- $1-$7   usage_daily increments per (user, tool, day): user_id, tool_id, day, invocations, tokens,
--         errors, latency_ms_sum; the same users and days mark user_activity, and a user's first day
--         of activity after their last moves user_last_active
-- $8-$14  platform_daily increments per (day, tool, tier): day, tool_id, tier, invocations, errors,
--         tokens, latency histogram as bigint[] literals
-- $15     the platform_daily shard the roller adds to
-- $16     the new mark: every row with a smaller transaction id is now in the rollups
-- The increments of days already folded (before platform_fold.folded_before) are added to the folded
-- rollups as well, by `usage_add_late_days` (migration `usage_late_days`).
WITH active AS (INSERT INTO user_activity (day, user_id)
                SELECT DISTINCT d, u FROM unnest($1::uuid[], $3::date[]) AS a(u, d) ORDER BY d, u
                ON CONFLICT DO NOTHING RETURNING user_id, day),
last_active AS (INSERT INTO user_last_active (user_id, day)
                SELECT user_id, max(day) FROM active GROUP BY user_id ORDER BY user_id
                ON CONFLICT (user_id) DO UPDATE SET day = EXCLUDED.day WHERE user_last_active.day < EXCLUDED.day
                RETURNING 1),
daily AS (INSERT INTO usage_daily (user_id, tool_id, day, invocations, tokens, errors, latency_ms_sum)
          SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::date[], $4::bigint[], $5::bigint[],
                               $6::bigint[], $7::bigint[])
          -- Run once, before the first row: the roll's days already folded go to the folded rollups.
          WHERE (SELECT usage_add_late_days($1::uuid[], $2::uuid[], $3::date[], $4::bigint[],
                                            $5::bigint[], $8::date[], $9::uuid[], $10::text[],
                                            $11::bigint[], $12::bigint[], $13::bigint[], $14::text[],
                                            $15::smallint)) IS NOT NULL
          ON CONFLICT (user_id, day, tool_id) DO UPDATE SET
            invocations = usage_daily.invocations + EXCLUDED.invocations,
            tokens = usage_daily.tokens + EXCLUDED.tokens,
            errors = usage_daily.errors + EXCLUDED.errors,
            latency_ms_sum = usage_daily.latency_ms_sum + EXCLUDED.latency_ms_sum
          RETURNING 1),
platform AS (INSERT INTO platform_daily (day, tool_id, tier, shard, invocations, errors, tokens, latency_hist)
             SELECT d, t, r, $15::smallint, n, e, k, h::bigint[]
             FROM unnest($8::date[], $9::uuid[], $10::text[], $11::bigint[], $12::bigint[], $13::bigint[],
                         $14::text[]) AS v(d, t, r, n, e, k, h)
             ON CONFLICT (day, tool_id, tier, shard) DO UPDATE SET
               invocations = platform_daily.invocations + EXCLUDED.invocations,
               errors = platform_daily.errors + EXCLUDED.errors,
               tokens = platform_daily.tokens + EXCLUDED.tokens,
               latency_hist = ARRAY(SELECT a + b FROM unnest(platform_daily.latency_hist, EXCLUDED.latency_hist)
                                    WITH ORDINALITY AS s(a, b, i) ORDER BY i)
             RETURNING 1)
UPDATE usage_roll SET rolled_before = $16
