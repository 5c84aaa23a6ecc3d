-- A user's invocations and tokens per tool and UTC day, from the raw log, for the partial days at the
-- edges of a summary's range (whole days come from `usage_daily`).
-- $1 uuid         the user
-- $2 timestamptz  the range's start, inclusive; null for no bound
-- $3 timestamptz  the range's end, exclusive; null for no bound
SELECT tool_id, (created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS invocations,
       COALESCE(sum(tokens_used), 0)::bigint AS tokens
FROM usage_events
WHERE user_id = $1
  AND ($2::timestamptz IS NULL OR created_at >= $2)
  AND ($3::timestamptz IS NULL OR created_at < $3)
GROUP BY 1, 2
