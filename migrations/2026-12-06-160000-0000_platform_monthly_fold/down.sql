DROP TABLE platform_fold;

-- The monthly rows hold every day again, as the meter wrote them before the fold.
DELETE FROM platform_monthly;
INSERT INTO platform_monthly (month, tool_id, tier, shard, invocations, errors, tokens, latency_hist)
SELECT date_trunc('month', day)::date, tool_id, tier, shard, sum(invocations)::bigint, sum(errors)::bigint,
       sum(tokens)::bigint, latency_hist_sum(latency_hist)
FROM platform_daily
GROUP BY 1, 2, 3, 4;

DROP AGGREGATE latency_hist_sum(bigint[]);
DROP FUNCTION latency_hist_add(bigint[], bigint[]);
