-- A user's invocations and tokens in a range, per tool and per UTC day, in one statement: whole days
-- from the rollups (`usage_daily`), the partial days at the range's edges from the raw log, summed by
-- grouping sets so only a row per tool and a row per day come back (a row per tool has a null day, a
-- row per day a null tool).
-- $1  uuid         the user
-- $2  boolean      whether whole days are read from the rollups
-- $3  date         the first whole day, inclusive; null for no bound
-- $4  date         the end of the whole days, exclusive; null for no bound
-- $5  boolean      whether the first raw range is read
-- $6  timestamptz  its start, inclusive; null for no bound
-- $7  timestamptz  its end, exclusive; null for no bound
-- $8  boolean      whether the second raw range is read
-- $9  timestamptz  its start, inclusive
-- $10 timestamptz  its end, exclusive
WITH totals AS (
    SELECT tool_id, day, invocations, tokens FROM usage_daily
    WHERE $2 AND user_id = $1 AND ($3::date IS NULL OR day >= $3) AND ($4::date IS NULL OR day < $4)
    UNION ALL
    SELECT tool_id, (created_at AT TIME ZONE 'UTC')::date, 1, tokens_used FROM usage_events
    WHERE $5 AND user_id = $1
      AND ($6::timestamptz IS NULL OR created_at >= $6) AND ($7::timestamptz IS NULL OR created_at < $7)
    UNION ALL
    SELECT tool_id, (created_at AT TIME ZONE 'UTC')::date, 1, tokens_used FROM usage_events
    WHERE $8 AND user_id = $1
      AND ($9::timestamptz IS NULL OR created_at >= $9) AND ($10::timestamptz IS NULL OR created_at < $10)
)
SELECT tool_id, day, sum(invocations)::bigint AS invocations, COALESCE(sum(tokens), 0)::bigint AS tokens
FROM totals
GROUP BY GROUPING SETS ((tool_id), (day))
