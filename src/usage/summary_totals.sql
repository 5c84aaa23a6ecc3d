-- A user's invocations and tokens in a range, per tool and per day, in one statement. Whole days come
-- from the rollups: per tool, the months wholly inside the range and folded (`usage_monthly`) and the
-- other days (`usage_daily`); per day, the days folded (`usage_day_totals`) and the others
-- (`usage_daily`), and the whole days' rows not in the rollups yet (`usage_unrolled`, read in this
-- statement's snapshot, with the rollups and the roll's mark). The partial days at the range's edges come
-- from the raw log. A row per tool has a null day, a row per day a null tool. Every rollup read is a range
-- of its primary key.
-- $1  uuid         the user
-- $2  date         the first whole day, inclusive (0001-01-01 for no bound)
-- $3  date         the end of the whole days, exclusive (9999-12-31 for no bound; $2 for none)
-- $4  boolean      whether the first raw range is read
-- $5  timestamptz  its start, inclusive (0001-01-01 for no bound)
-- $6  timestamptz  its end, exclusive (9999-12-31 for no bound)
-- $7  boolean      whether the second raw range is read
-- $8  timestamptz  its start, inclusive (as $5)
-- $9  timestamptz  its end, exclusive (as $6)
-- It runs on its generic plan (`repo::summary_totals`). Every bound is a value, never null, so that
-- plan keeps the raw ranges' index bounds and prunes the log's partitions when it starts.
WITH span AS MATERIALIZED (
    -- `folded`: the first day not folded. The whole months read from `usage_monthly` are
    -- [m_from, m_to), none when equal: from the range's first whole month to the first month that
    -- is not wholly folded or not wholly in the range.
    SELECT f.folded_before AS folded, w.m_from,
           greatest(w.m_from, least(date_trunc('month', f.folded_before)::date,
                                    date_trunc('month', $3::date)::date)) AS m_to
    FROM platform_fold f,
         LATERAL (SELECT CASE WHEN extract(day FROM $2::date) = 1 THEN $2::date
                              ELSE (date_trunc('month', $2::date) + interval '1 month')::date
                         END AS m_from) w
),
raw AS MATERIALIZED (
    SELECT tool_id, (created_at AT TIME ZONE 'UTC')::date AS day, tokens_used FROM usage_events
    WHERE $4 AND user_id = $1
      AND created_at >= $5::timestamptz AND created_at < $6::timestamptz
    UNION ALL
    SELECT tool_id, (created_at AT TIME ZONE 'UTC')::date, tokens_used FROM usage_events
    WHERE $7 AND user_id = $1
      AND created_at >= $8::timestamptz AND created_at < $9::timestamptz
),
unrolled AS MATERIALIZED (
    SELECT tool_id, (created_at AT TIME ZONE 'UTC')::date AS day, tokens_used FROM usage_unrolled($1)
    WHERE $2::date < $3::date
      AND created_at >= ($2::date)::timestamp AT TIME ZONE 'UTC'
      AND created_at < ($3::date)::timestamp AT TIME ZONE 'UTC'
),
per_tool AS (
    SELECT tool_id, invocations, tokens FROM usage_monthly
    WHERE user_id = $1 AND month >= (SELECT m_from FROM span) AND month < (SELECT m_to FROM span)
    UNION ALL
    SELECT tool_id, invocations, tokens FROM usage_daily
    WHERE user_id = $1 AND day >= $2 AND day < least((SELECT m_from FROM span), $3)
    UNION ALL
    SELECT tool_id, invocations, tokens FROM usage_daily
    WHERE user_id = $1 AND day >= (SELECT m_to FROM span) AND day < $3
    UNION ALL
    SELECT tool_id, 1, tokens_used FROM raw
    UNION ALL
    SELECT tool_id, 1, tokens_used FROM unrolled
),
per_day AS (
    SELECT day, invocations, tokens FROM usage_day_totals
    WHERE user_id = $1 AND day >= $2 AND day < least((SELECT folded FROM span), $3)
    UNION ALL
    SELECT day, invocations, tokens FROM usage_daily
    WHERE user_id = $1 AND day >= greatest((SELECT folded FROM span), $2) AND day < $3
    UNION ALL
    SELECT day, 1, tokens_used FROM raw
    UNION ALL
    SELECT day, 1, tokens_used FROM unrolled
)
SELECT tool_id, NULL::date AS day, sum(invocations)::bigint AS invocations,
       COALESCE(sum(tokens), 0)::bigint AS tokens
FROM per_tool GROUP BY tool_id
UNION ALL
SELECT NULL::uuid, day, sum(invocations)::bigint, COALESCE(sum(tokens), 0)::bigint
FROM per_day GROUP BY day
