-- Adds the days of a metering batch that are already folded (before `platform_fold.folded_before`) to
-- the folded rollups: the platform's months, and the user's months per tool and day totals. The meter
-- calls it once per statement (`usage/record_batch.sql`) with the batch's increments, those of
-- `usage_daily` and those of `platform_daily`; a batch with no such day, nearly every one, costs a
-- look at `platform_fold`, and none of the inserts below is planned or run. Rows are upserted in key
-- order, so concurrent batches cannot deadlock. Returns whether any day was late (never null).
CREATE FUNCTION usage_add_late_days(
    p_users uuid[], p_tools uuid[], p_days date[], p_invocations bigint[], p_tokens bigint[],
    p_platform_days date[], p_platform_tools uuid[], p_tiers text[], p_platform_invocations bigint[],
    p_platform_errors bigint[], p_platform_tokens bigint[], p_histograms text[], p_shard smallint
) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    folded date;
BEGIN
    SELECT folded_before INTO STRICT folded FROM platform_fold;
    IF NOT EXISTS (SELECT 1 FROM unnest(p_days) AS v(d) WHERE d < folded)
       AND NOT EXISTS (SELECT 1 FROM unnest(p_platform_days) AS v(d) WHERE d < folded) THEN
        RETURN false;
    END IF;
    INSERT INTO platform_monthly (month, tool_id, tier, shard, invocations, errors, tokens, latency_hist)
    SELECT date_trunc('month', d)::date, t, r, p_shard, sum(n)::bigint, sum(e)::bigint, sum(k)::bigint,
           latency_hist_sum(h::bigint[])
    FROM unnest(p_platform_days, p_platform_tools, p_tiers, p_platform_invocations, p_platform_errors,
                p_platform_tokens, p_histograms) AS v(d, t, r, n, e, k, h)
    WHERE d < folded
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (month, tool_id, tier, shard) DO UPDATE SET
      invocations = platform_monthly.invocations + EXCLUDED.invocations,
      errors = platform_monthly.errors + EXCLUDED.errors,
      tokens = platform_monthly.tokens + EXCLUDED.tokens,
      latency_hist = latency_hist_add(platform_monthly.latency_hist, EXCLUDED.latency_hist);
    INSERT INTO usage_monthly (user_id, month, tool_id, invocations, tokens)
    SELECT u, date_trunc('month', d)::date, t, sum(n)::bigint, sum(k)::bigint
    FROM unnest(p_users, p_tools, p_days, p_invocations, p_tokens) AS v(u, t, d, n, k)
    WHERE d < folded
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (user_id, month, tool_id) DO UPDATE SET
      invocations = usage_monthly.invocations + EXCLUDED.invocations,
      tokens = usage_monthly.tokens + EXCLUDED.tokens;
    INSERT INTO usage_day_totals (user_id, day, invocations, tokens)
    SELECT u, d, sum(n)::bigint, sum(k)::bigint
    FROM unnest(p_users, p_days, p_invocations, p_tokens) AS v(u, d, n, k)
    WHERE d < folded
    GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (user_id, day) DO UPDATE SET
      invocations = usage_day_totals.invocations + EXCLUDED.invocations,
      tokens = usage_day_totals.tokens + EXCLUDED.tokens;
    RETURN true;
END
$$;
