-- The plans' rates and limits.
plan_wanted AS (SELECT k.*, sum(k.tokens) OVER ordered AS running, row_number() OVER ordered AS nth
                FROM key_checked k WHERE k.kfits
                WINDOW ordered AS (PARTITION BY k.sid ORDER BY k.ord)),
paced AS (SELECT w.*, e.every, e.burst, e.every * (e.burst - 1) AS tolerance, e.ahead, e.base,
                 w.rpm IS NULL OR e.ahead <= e.every * (e.burst - 1) + 0.001 AS within
          FROM plan_wanted w CROSS JOIN LATERAL (
            SELECT 60000.0::float8 / w.rpm AS every,
                   CASE WHEN w.rpm IS NOT NULL THEN GREATEST(ceil(w.rpm / 6.0), 1)::integer END AS burst,
                   extract(epoch FROM w.tat - w.now)::float8 * 1000 AS base,
                   extract(epoch FROM w.tat - w.now)::float8 * 1000
                     + (w.nth - 1) * 60000.0::float8 / w.rpm AS ahead) e),
admitted AS (SELECT * FROM paced WHERE within),
granted AS (SELECT * FROM admitted
            WHERE token_limit IS NULL OR tokens_used + reserved + running <= token_limit),
-- Per subscription and per key, once (not a subquery per row): tokens granted, admitted requests and
-- the TAT they leave.
sub_granted AS (SELECT sid, sum(tokens)::bigint AS tokens FROM granted GROUP BY sid),
sub_admitted AS (SELECT sid, count(*) AS admitted,
                        max(tat) + make_interval(secs => count(*) * max(every) / 1000) AS tat
                 FROM admitted WHERE rpm IS NOT NULL GROUP BY sid),
counted AS (UPDATE subscriptions s SET
              tokens_reserved = l.reserved + coalesce(g.tokens, 0),
              request_rate_tat = coalesce(a.tat, s.request_rate_tat)
            FROM left_over l LEFT JOIN sub_granted g ON g.sid = l.id LEFT JOIN sub_admitted a ON a.sid = l.id
            WHERE s.id = l.id RETURNING s.id),
held AS (INSERT INTO quota_reservations (id, subscription_id, tokens, expires_at, api_key_id)
         SELECT id, sid, tokens, expires_at, kid FROM granted RETURNING id),
