-- Folds the shards back into one row per (day, tool, tier).
CREATE TEMPORARY TABLE platform_daily_folded ON COMMIT DROP AS
SELECT day, tool_id, tier, sum(invocations)::bigint AS invocations, sum(errors)::bigint AS errors,
       sum(tokens)::bigint AS tokens,
       ARRAY(SELECT sum(h.c)::bigint FROM platform_daily p2, unnest(p2.latency_hist) WITH ORDINALITY AS h(c, i)
             WHERE p2.day = p.day AND p2.tool_id = p.tool_id AND p2.tier = p.tier
             GROUP BY h.i ORDER BY h.i) AS latency_hist
FROM platform_daily p GROUP BY day, tool_id, tier;
DELETE FROM platform_daily;
ALTER TABLE platform_daily DROP CONSTRAINT platform_daily_pkey;
ALTER TABLE platform_daily DROP COLUMN shard;
INSERT INTO platform_daily (day, tool_id, tier, invocations, errors, tokens, latency_hist)
SELECT day, tool_id, tier, invocations, errors, tokens, latency_hist FROM platform_daily_folded;
ALTER TABLE platform_daily ADD PRIMARY KEY (day, tool_id, tier);
