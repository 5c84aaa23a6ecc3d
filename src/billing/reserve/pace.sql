-- The plans' rates and limits.
plan_wanted AS (SELECT k.*, sum(k.tokens) OVER ordered AS running, row_number() OVER ordered AS nth,
                       first_value(k.tokens) OVER ordered AS first_tokens,
                       first_value(k.slice_tokens) OVER ordered AS first_slice_tokens,
                       first_value(k.slice_requests) OVER ordered AS first_slice_requests
                FROM key_checked k WHERE k.kfits
                WINDOW ordered AS (PARTITION BY k.sid ORDER BY k.ord)),
-- extra_tokens, extra_requests: the slice granted to the subscription's first request (see the head).
paced AS (SELECT w.*, e.every, e.burst, e.tolerance, e.base, s.extra_tokens, s.extra_requests,
                 e.base + (w.nth - 1 + CASE WHEN w.nth > 1 THEN s.extra_requests ELSE 0 END) * e.every AS ahead,
                 w.rpm IS NULL OR e.base + (w.nth - 1 + CASE WHEN w.nth > 1 THEN s.extra_requests ELSE 0 END)
                   * e.every <= e.tolerance + 0.001 AS within
          FROM plan_wanted w CROSS JOIN LATERAL (
            SELECT 60000.0::float8 / w.rpm AS every,
                   CASE WHEN w.rpm IS NOT NULL THEN GREATEST(ceil(w.rpm / 6.0), 1)::integer END AS burst,
                   60000.0::float8 / w.rpm * (GREATEST(ceil(w.rpm / 6.0), 1) - 1) AS tolerance,
                   extract(epoch FROM w.tat - w.now)::float8 * 1000 AS base) e
          CROSS JOIN LATERAL (
            SELECT CASE WHEN w.token_limit IS NULL THEN NULL
                        ELSE LEAST(w.first_slice_tokens, GREATEST(floor(
                          (w.token_limit - w.tokens_used - w.reserved - w.first_tokens) / 4.0), 0))::bigint
                             / GREATEST(w.first_tokens, 1) * GREATEST(w.first_tokens, 1)
                   END AS tokens,
                   CASE WHEN w.rpm IS NULL THEN NULL
                        ELSE LEAST(w.first_slice_requests, GREATEST(floor(
                          (e.tolerance - e.base + 0.001) / e.every / 4.0), 0))::integer
                   END AS requests) r
          -- A slice is of both or neither, where both bind.
          CROSS JOIN LATERAL (
            SELECT CASE WHEN r.requests = 0 THEN 0 ELSE coalesce(r.tokens, 0) END AS extra_tokens,
                   CASE WHEN r.tokens = 0 THEN 0 ELSE coalesce(r.requests, 0) END AS extra_requests) s),
admitted AS (SELECT * FROM paced WHERE within),
granted AS (SELECT *, tokens + CASE WHEN nth = 1 THEN extra_tokens ELSE 0 END AS held_tokens FROM admitted
            WHERE token_limit IS NULL OR tokens_used + reserved + running + extra_tokens <= token_limit),
-- Per subscription and per key, once (not a subquery per row): tokens granted, admitted requests and
-- the TAT they leave.
sub_granted AS (SELECT sid, sum(held_tokens)::bigint AS tokens FROM granted GROUP BY sid),
-- A slice's requests count once its request is granted.
sub_admitted AS (SELECT a.sid, count(*) + coalesce(max(g.extra_requests), 0) AS admitted,
                        max(a.tat) + make_interval(secs => (count(*) + coalesce(max(g.extra_requests), 0))
                          * max(a.every) / 1000) AS tat
                 FROM admitted a LEFT JOIN granted g ON g.id = a.id AND g.nth = 1
                 WHERE a.rpm IS NOT NULL GROUP BY a.sid),
counted AS (UPDATE subscriptions s SET
              tokens_reserved = l.reserved + coalesce(g.tokens, 0),
              request_rate_tat = coalesce(a.tat, s.request_rate_tat)
            FROM left_over l LEFT JOIN sub_granted g ON g.sid = l.id LEFT JOIN sub_admitted a ON a.sid = l.id
            WHERE s.id = l.id RETURNING s.id),
held AS (INSERT INTO quota_reservations (id, subscription_id, tokens, expires_at, api_key_id)
         SELECT id, sid, held_tokens,
                CASE WHEN nth = 1 AND (extra_tokens > 0 OR extra_requests > 0)
                     THEN expires_at + make_interval(secs => $11::float8 / 1000) ELSE expires_at END,
                kid
         FROM granted RETURNING id),
