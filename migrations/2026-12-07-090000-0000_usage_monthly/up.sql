-- A user's totals per month and tool, and per day across tools, folded from their daily rollups
-- (`usage_daily`) by the platform's fold and up to the same day (`platform_fold.folded_before`): every
-- row holds exactly the days of its month, or its day, before it. A user's summary over a year then
-- reads a dozen monthly rows per tool and a row per day instead of a row per tool and day.
--
-- A meter statement that writes a day already folded adds it here as well, in the same statement
-- (`usage/record_batch.sql`). The fold takes a SHARE lock on `usage_daily` (before `platform_daily`,
-- the order in which the meter writes them), so each day reaches these tables exactly once.
CREATE TABLE usage_monthly (
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The first day of the month.
    month date NOT NULL CHECK (extract(day FROM month) = 1),
    tool_id uuid NOT NULL REFERENCES tools (id),
    invocations bigint NOT NULL,
    tokens bigint NOT NULL,
    PRIMARY KEY (user_id, month, tool_id) INCLUDE (invocations, tokens)
);
CREATE INDEX usage_monthly_tool_id_idx ON usage_monthly (tool_id);

CREATE TABLE usage_day_totals (
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    day date NOT NULL,
    invocations bigint NOT NULL,
    tokens bigint NOT NULL,
    PRIMARY KEY (user_id, day) INCLUDE (invocations, tokens)
);

INSERT INTO usage_monthly (user_id, month, tool_id, invocations, tokens)
SELECT user_id, date_trunc('month', day)::date, tool_id, sum(invocations)::bigint, sum(tokens)::bigint
FROM usage_daily
WHERE day < (SELECT folded_before FROM platform_fold)
GROUP BY 1, 2, 3;

INSERT INTO usage_day_totals (user_id, day, invocations, tokens)
SELECT user_id, day, sum(invocations)::bigint, sum(tokens)::bigint
FROM usage_daily
WHERE day < (SELECT folded_before FROM platform_fold)
GROUP BY 1, 2;
