-- Reserves quota for a batch of invocations in one statement (one round trip, one commit), pacing them
-- at their plans' request rates. The one place where tokens are reserved and requests are counted:
-- every invocation asks here first (see `quota::spend`).
-- $1 uuid[]        the reservations' ids
-- $2 uuid[]        the users asking, per reservation
-- $3 bigint[]      the tokens asked, per reservation
-- $4 timestamptz[] when each lease expires
-- $5 text[]        the lowest plan tier that may reserve, per reservation
-- $6 timestamptz   billing's "now": which periods run and which leases have expired
-- $7 boolean       whether request rates (plans' and keys') are enforced
-- $8 uuid[]        the API key making each request (null for a signed-in session)
-- Returns one row per request whose user's subscription is current with a period running at $6 and
-- whose plan ranks at or above the tier asked (the others are explained by the caller), saying whether
-- it was granted and where the subscription's request rate stands.
--
-- Request rate (GCRA, shared by every instance through the subscription row, timed by the database's
-- clock): a plan of r requests per minute admits one request every 60/r s on average, with a burst of
-- ceil(r/6) requests (ten seconds' worth) at once. The subscription keeps the "theoretical arrival
-- time" (TAT) of its next request; a request arriving at t is admitted when TAT - t is within the
-- burst's tolerance ((burst - 1) * 60/r s), and then moves TAT on by 60/r s. A request over the rate
-- changes nothing and reserves nothing. Requests of one batch count in order.
--
-- A key's own limits (`api_keys.requests_per_minute`, `token_budget`) are checked first, the same way:
-- its rate by GCRA on its `api_key_spending` row, its budget against what it used this period plus
-- what it holds reserved plus the running total of its requests. A request the key refuses does not
-- count towards the plan's rate. Key rows are locked after the subscription rows, as the meter locks
-- them.
--
-- Tokens: a request is granted when it is admitted and the running total of the subscription's
-- admitted requests (in order) fits the limit; once one does not fit, the later ones are not granted
-- either, so a batch never reserves more than the limit. Expired leases of the subscriptions touched are
-- returned on the way (to their keys too), granted or not.
-- Subscriptions are locked in id order, as the meter locks them. The commit does not wait for the disk:
-- a reservation is a lease, and losing one in a crash only returns its tokens early (and forgets the
-- requests' pacing since the last commit that reached the disk).
WITH lease AS (SELECT set_config('synchronous_commit', 'off', true)),
clock AS (SELECT statement_timestamp() AS now),
req AS (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::timestamptz[], $5::text[], $8::uuid[])
        WITH ORDINALITY AS r(id, user_id, tokens, expires_at, min_tier, key_id, ord)),
sub AS (SELECT s.id, s.user_id, s.tier, p.token_limit, p.rank, s.tokens_used, s.tokens_reserved,
               s.current_period_start AS period_start,
               CASE WHEN $7::boolean THEN p.requests_per_minute END AS rpm,
               GREATEST(s.request_rate_tat, c.now) AS tat, c.now
        FROM subscriptions s JOIN plans p ON p.tier = s.tier CROSS JOIN clock c
        WHERE s.user_id = ANY($2::uuid[]) AND s.status <> 'EXPIRED' AND s.current_period_end > $6
          AND (s.grace_ends_at IS NULL OR s.grace_ends_at > $6)
        ORDER BY s.id FOR UPDATE OF s),
keys AS (SELECT sp.api_key_id AS kid, sub.period_start,
                CASE WHEN $7::boolean THEN k.requests_per_minute END AS krpm, k.token_budget AS kbudget,
                CASE WHEN sp.period_start = sub.period_start THEN sp.tokens_used ELSE 0 END AS kused,
                sp.tokens_reserved AS kheld, GREATEST(sp.request_rate_tat, sub.now) AS ktat
         FROM api_key_spending sp JOIN api_keys k ON k.id = sp.api_key_id
         JOIN sub ON sub.user_id = k.user_id
         WHERE sp.api_key_id = ANY($8::uuid[])
           AND (k.requests_per_minute IS NOT NULL OR k.token_budget IS NOT NULL)
         ORDER BY sp.api_key_id FOR UPDATE OF sp),
expired AS (DELETE FROM quota_reservations r USING sub
            WHERE r.subscription_id = sub.id AND r.expires_at <= $6
            RETURNING r.subscription_id, r.tokens, r.api_key_id),
left_over AS (SELECT sub.id, GREATEST(sub.tokens_reserved - coalesce(
                (SELECT sum(e.tokens) FROM expired e WHERE e.subscription_id = sub.id), 0), 0)::bigint AS reserved
              FROM sub),
key_left AS (SELECT keys.kid, GREATEST(keys.kheld - coalesce(
               (SELECT sum(e.tokens) FROM expired e WHERE e.api_key_id = keys.kid), 0), 0)::bigint AS kreserved
             FROM keys),
wanted AS (SELECT req.id, req.tokens, req.expires_at, req.ord, sub.id AS sid, sub.tier, sub.token_limit,
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
key_granted AS (SELECT kid, sum(tokens)::bigint AS tokens FROM granted WHERE kid IS NOT NULL GROUP BY kid),
key_admitted AS (SELECT kid, count(*) AS admitted,
                        max(ktat) + make_interval(secs => count(*) * max(kevery) / 1000) AS tat
                 FROM key_paced WHERE kwithin AND krpm IS NOT NULL GROUP BY kid),
counted AS (UPDATE subscriptions s SET
              tokens_reserved = l.reserved + coalesce(g.tokens, 0),
              request_rate_tat = coalesce(a.tat, s.request_rate_tat)
            FROM left_over l LEFT JOIN sub_granted g ON g.sid = l.id LEFT JOIN sub_admitted a ON a.sid = l.id
            WHERE s.id = l.id RETURNING s.id),
key_counted AS (UPDATE api_key_spending sp SET
                  period_start = kk.period_start,
                  tokens_used = kk.kused,
                  tokens_reserved = kl.kreserved + coalesce(g.tokens, 0),
                  request_rate_tat = coalesce(a.tat, sp.request_rate_tat)
                FROM keys kk JOIN key_left kl ON kl.kid = kk.kid
                  LEFT JOIN key_granted g ON g.kid = kk.kid LEFT JOIN key_admitted a ON a.kid = kk.kid
                WHERE sp.api_key_id = kk.kid RETURNING 1),
held AS (INSERT INTO quota_reservations (id, subscription_id, tokens, expires_at, api_key_id)
         SELECT id, sid, tokens, expires_at, kid FROM granted RETURNING id)
-- A request over a rate is answered from the TAT the batch leaves (base + admitted * every).
SELECT k.id, k.sid AS subscription_id, k.tier, g.id IS NOT NULL AS granted,
       k.rpm AS requests_per_minute, p.burst,
       CASE WHEN k.rpm IS NULL OR p.id IS NULL THEN NULL
            WHEN p.within THEN floor((p.tolerance - p.ahead + 0.001) / p.every)::integer
            ELSE 0 END AS burst_left,
       ceil(CASE WHEN p.within THEN p.ahead + p.every
                 ELSE p.base + coalesce(n.admitted, 0) * p.every END)::bigint AS full_in_ms,
       CASE WHEN NOT p.within
            THEN ceil(p.base + coalesce(n.admitted, 0) * p.every - p.tolerance)::bigint END AS retry_in_ms,
       k.krpm AS key_requests_per_minute,
       CASE WHEN k.krpm IS NULL THEN NULL
            WHEN k.kwithin THEN floor((k.ktolerance - k.kahead + 0.001) / k.kevery)::integer
            ELSE 0 END AS key_burst_left,
       ceil(CASE WHEN k.kwithin THEN k.kahead + k.kevery
                 ELSE k.kbase + coalesce(kn.admitted, 0) * k.kevery END)::bigint AS key_full_in_ms,
       CASE WHEN NOT k.kwithin
            THEN ceil(k.kbase + coalesce(kn.admitted, 0) * k.kevery - k.ktolerance)::bigint END
         AS key_retry_in_ms,
       k.kwithin AND NOT k.kfits AS key_over_budget,
       k.kbudget AS key_token_budget,
       GREATEST(k.kbudget - k.kused - k.kreserved, 0)::bigint AS key_tokens_left
FROM key_checked k CROSS JOIN lease
LEFT JOIN paced p ON p.id = k.id
LEFT JOIN granted g ON g.id = k.id
LEFT JOIN sub_admitted n ON n.sid = k.sid
LEFT JOIN key_admitted kn ON kn.kid = k.kid
