-- Monthly platform rollups are folded from the daily ones once a day has closed, instead of being
-- written in every metering statement. `platform_fold.folded_before` is the first day not yet folded:
-- every monthly row holds exactly the days before it. Readers take a month from `platform_monthly` only
-- when all of it is before that day, and the rest from `platform_daily`.
--
-- A meter statement that writes a day already folded (a late batch, a call whose time is long past)
-- adds it to the monthly row as well, in the same statement. The fold takes a SHARE lock on
-- `platform_daily`, so it sees every metering transaction that began before it, and every one after it
-- sees the day it moved the fold to: each day reaches its month exactly once.

-- Latency histograms summed bucket by bucket.
CREATE FUNCTION latency_hist_add(bigint[], bigint[]) RETURNS bigint[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT array_agg(a + b ORDER BY i) FROM unnest($1, $2) WITH ORDINALITY AS s(a, b, i) $$;

CREATE AGGREGATE latency_hist_sum(bigint[]) (SFUNC = latency_hist_add, STYPE = bigint[]);

CREATE TABLE platform_fold (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    folded_before date NOT NULL
);

-- Days close when the next one has ended (UTC, as usage days are).
INSERT INTO platform_fold (folded_before) VALUES ((now() AT TIME ZONE 'UTC')::date - 1);

DELETE FROM platform_monthly;
INSERT INTO platform_monthly (month, tool_id, tier, shard, invocations, errors, tokens, latency_hist)
SELECT date_trunc('month', day)::date, tool_id, tier, shard, sum(invocations)::bigint, sum(errors)::bigint,
       sum(tokens)::bigint, latency_hist_sum(latency_hist)
FROM platform_daily
WHERE day < (SELECT folded_before FROM platform_fold)
GROUP BY 1, 2, 3, 4;
