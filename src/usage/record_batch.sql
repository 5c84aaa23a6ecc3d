-- Writes a batch of usage rows and adds them to the rollups: a part of the meter's statement (see
-- `db::compose`), so usage commits with the settlement of its quota. Rollup rows are upserted in key
-- order (the caller sorts them), so concurrent batches cannot deadlock.
-- $1-$11  usage_events columns: id, user_id, api_key_id, tool_id, subscription_id, tokens_used,
--         tokens_estimated, status, error_code, latency_ms, created_at
-- $12-$18 usage_daily increments per (user, tool, day): user_id, tool_id, day, invocations, tokens,
--         errors, latency_ms_sum; the same users and days mark user_activity, and a user's first day
--         of activity after their last moves user_last_active
-- $19-$25 platform_daily increments per (day, tool, tier): day, tool_id, tier, invocations, errors,
--         tokens, latency histogram as bigint[] literals
-- $26     the platform_daily shard this writer adds to (one per meter writer, so writers keep apart)
-- $27     usage_events.tokens_overrun, per row of $1-$11
-- The increments of days already folded (before platform_fold.folded_before) are added to the folded
-- rollups as well, by `usage_add_late_days` (migration `usage_late_days`).
events AS (INSERT INTO usage_events (id, user_id, api_key_id, tool_id, subscription_id, tokens_used,
                                     tokens_estimated, status, error_code, latency_ms, created_at,
                                     tokens_overrun)
           SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[], $6::bigint[],
                                $7::boolean[], $8::text[], $9::text[], $10::integer[], $11::timestamptz[],
                                $27::bigint[])
           RETURNING 1),
active AS (INSERT INTO user_activity (day, user_id)
           SELECT DISTINCT d, u FROM unnest($12::uuid[], $14::date[]) AS a(u, d) ORDER BY d, u
           ON CONFLICT DO NOTHING RETURNING user_id, day),
last_active AS (INSERT INTO user_last_active (user_id, day)
                SELECT user_id, max(day) FROM active GROUP BY user_id ORDER BY user_id
                ON CONFLICT (user_id) DO UPDATE SET day = EXCLUDED.day WHERE user_last_active.day < EXCLUDED.day
                RETURNING 1),
daily AS (INSERT INTO usage_daily (user_id, tool_id, day, invocations, tokens, errors, latency_ms_sum)
          SELECT * FROM unnest($12::uuid[], $13::uuid[], $14::date[], $15::bigint[], $16::bigint[],
                               $17::bigint[], $18::bigint[])
          -- Run once, before the first row: the batch's days already folded go to the folded rollups.
          WHERE (SELECT usage_add_late_days($12::uuid[], $13::uuid[], $14::date[], $15::bigint[],
                                            $16::bigint[], $19::date[], $20::uuid[], $21::text[],
                                            $22::bigint[], $23::bigint[], $24::bigint[], $25::text[],
                                            $26::smallint)) IS NOT NULL
          ON CONFLICT (user_id, day, tool_id) DO UPDATE SET
            invocations = usage_daily.invocations + EXCLUDED.invocations,
            tokens = usage_daily.tokens + EXCLUDED.tokens,
            errors = usage_daily.errors + EXCLUDED.errors,
            latency_ms_sum = usage_daily.latency_ms_sum + EXCLUDED.latency_ms_sum
          RETURNING 1),
platform AS (INSERT INTO platform_daily (day, tool_id, tier, shard, invocations, errors, tokens, latency_hist)
             SELECT d, t, r, $26::smallint, n, e, k, h::bigint[]
             FROM unnest($19::date[], $20::uuid[], $21::text[], $22::bigint[], $23::bigint[], $24::bigint[],
                         $25::text[]) AS v(d, t, r, n, e, k, h)
             ON CONFLICT (day, tool_id, tier, shard) DO UPDATE SET
               invocations = platform_daily.invocations + EXCLUDED.invocations,
               errors = platform_daily.errors + EXCLUDED.errors,
               tokens = platform_daily.tokens + EXCLUDED.tokens,
               latency_hist = ARRAY(SELECT a + b FROM unnest(platform_daily.latency_hist, EXCLUDED.latency_hist)
                                    WITH ORDINALITY AS s(a, b, i) ORDER BY i)
             RETURNING 1)
