-- Keys with limits of their own: their rows, rates and budgets.
keys AS (SELECT sp.api_key_id AS kid, sub.period_start,
                CASE WHEN $7::boolean THEN k.requests_per_minute END AS krpm, k.token_budget AS kbudget,
                CASE WHEN sp.period_start = sub.period_start THEN sp.tokens_used ELSE 0 END AS kused,
                sp.tokens_reserved AS kheld, GREATEST(sp.request_rate_tat, sub.now) AS ktat
         FROM api_key_spending sp JOIN api_keys k ON k.id = sp.api_key_id
         JOIN sub ON sub.user_id = k.user_id
         WHERE sp.api_key_id = ANY($8::uuid[])
           AND (k.requests_per_minute IS NOT NULL OR k.token_budget IS NOT NULL)
         ORDER BY sp.api_key_id FOR UPDATE OF sp),
key_left AS (SELECT keys.kid, GREATEST(keys.kheld - coalesce(
               (SELECT sum(e.tokens) FROM expired e WHERE e.api_key_id = keys.kid), 0), 0)::bigint AS kreserved
             FROM keys),
wanted AS (SELECT req.id, req.tokens, req.expires_at, req.ord, req.slice_tokens, req.slice_requests, sub.id AS sid, sub.tier, sub.token_limit,
             sub.tokens_used, l.reserved, sub.rpm, sub.tat, sub.now,
             kk.kid, kk.krpm, kk.kbudget, kk.kused, kl.kreserved, kk.ktat,
             row_number() OVER by_key AS knth
           FROM req JOIN sub ON sub.user_id = req.user_id JOIN left_over l ON l.id = sub.id
           LEFT JOIN keys kk ON kk.kid = req.key_id LEFT JOIN key_left kl ON kl.kid = kk.kid
           WHERE sub.rank >= (SELECT p.rank FROM plans p WHERE p.tier = req.min_tier)
           WINDOW by_key AS (PARTITION BY sub.id, kk.kid ORDER BY req.ord)),
-- Milliseconds: every = 60 000 / r between requests; tolerance = (burst - 1) * every; base = how far
-- the stored TAT is ahead of now; ahead = how far this request's TAT is. The k-prefixed are the key's.
key_paced AS (SELECT w.*, e.kevery, e.kburst, e.kevery * (e.kburst - 1) AS ktolerance, e.kbase, e.kahead,
                     w.krpm IS NULL OR e.kahead <= e.kevery * (e.kburst - 1) + 0.001 AS kwithin
              FROM wanted w CROSS JOIN LATERAL (
                SELECT 60000.0::float8 / w.krpm AS kevery,
                       CASE WHEN w.krpm IS NOT NULL THEN GREATEST(ceil(w.krpm / 6.0), 1)::integer END AS kburst,
                       extract(epoch FROM w.ktat - w.now)::float8 * 1000 AS kbase,
                       extract(epoch FROM w.ktat - w.now)::float8 * 1000
                         + (w.knth - 1) * 60000.0::float8 / w.krpm AS kahead) e),
key_checked AS (SELECT kp.*, kp.kwithin AND (kp.kbudget IS NULL OR kp.kused + kp.kreserved
                  + sum(CASE WHEN kp.kwithin THEN kp.tokens ELSE 0 END)
                      OVER (PARTITION BY kp.sid, kp.kid ORDER BY kp.ord) <= kp.kbudget) AS kfits
                FROM key_paced kp),
