-- Platform totals per month, tool and plan tier, in the same shards as `platform_daily` and written in
-- the same metering statement (`usage/record_batch.sql`). Statistics over a range read the months wholly
-- inside it from here and only the days at its edges from `platform_daily`: a year is 12 monthly rows
-- per tool and tier and the days of at most two partial months, instead of 366 daily rows.
CREATE TABLE platform_monthly (
    -- The first day of the month.
    month date NOT NULL CHECK (extract(day FROM month) = 1),
    tool_id uuid NOT NULL REFERENCES tools (id),
    tier text NOT NULL,
    shard smallint NOT NULL,
    invocations bigint NOT NULL,
    errors bigint NOT NULL,
    tokens bigint NOT NULL,
    latency_hist bigint[] NOT NULL,
    PRIMARY KEY (month, tool_id, tier, shard)
);
CREATE INDEX platform_monthly_tool_id_idx ON platform_monthly (tool_id);

-- The months so far, from the daily rollups (histograms summed bucket by bucket).
WITH buckets AS (
    SELECT date_trunc('month', d.day)::date AS month, d.tool_id, d.tier, d.shard, b.i, sum(b.n)::bigint AS n
    FROM platform_daily d, unnest(d.latency_hist) WITH ORDINALITY AS b(n, i)
    GROUP BY 1, 2, 3, 4, 5
), histograms AS (
    SELECT month, tool_id, tier, shard, array_agg(n ORDER BY i) AS latency_hist
    FROM buckets GROUP BY 1, 2, 3, 4
), totals AS (
    SELECT date_trunc('month', day)::date AS month, tool_id, tier, shard,
           sum(invocations)::bigint AS invocations, sum(errors)::bigint AS errors, sum(tokens)::bigint AS tokens
    FROM platform_daily GROUP BY 1, 2, 3, 4
)
INSERT INTO platform_monthly (month, tool_id, tier, shard, invocations, errors, tokens, latency_hist)
SELECT t.month, t.tool_id, t.tier, t.shard, t.invocations, t.errors, t.tokens, h.latency_hist
FROM totals t JOIN histograms h USING (month, tool_id, tier, shard);
