-- Reserves quota for a batch of invocations in one statement (one round trip, one commit), pacing them
-- at their plans' request rates. The one place where tokens are reserved and requests are counted:
-- every invocation asks here first (see `quota::spend`).
-- $1 uuid[]        the reservations' ids
-- $2 uuid[]        the users asking, per reservation
-- $3 bigint[]      the tokens asked, per reservation
-- $4 timestamptz[] when each lease expires
-- $5 text[]        the lowest plan tier that may reserve, per reservation
-- $6 timestamptz   billing's "now": which periods run and which leases have expired
-- $7 boolean       whether plans' request rates are enforced
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
-- Tokens: a request is granted when it is admitted and the running total of the subscription's
-- admitted requests (in order) fits the limit; once one does not fit, the later ones are not granted
-- either, so a batch never reserves more than the limit. Expired leases of the subscriptions touched are
-- returned on the way, granted or not.
-- Subscriptions are locked in id order, as the meter locks them. The commit does not wait for the disk:
-- a reservation is a lease, and losing one in a crash only returns its tokens early (and forgets the
-- requests' pacing since the last commit that reached the disk).
WITH lease AS (SELECT set_config('synchronous_commit', 'off', true)),
clock AS (SELECT statement_timestamp() AS now),
req AS (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::timestamptz[], $5::text[])
        WITH ORDINALITY AS r(id, user_id, tokens, expires_at, min_tier, ord)),
sub AS (SELECT s.id, s.user_id, s.tier, p.token_limit, p.rank, s.tokens_used, s.tokens_reserved,
               CASE WHEN $7::boolean THEN p.requests_per_minute END AS rpm,
               GREATEST(s.request_rate_tat, c.now) AS tat, c.now
        FROM subscriptions s JOIN plans p ON p.tier = s.tier CROSS JOIN clock c
        WHERE s.user_id = ANY($2::uuid[]) AND s.status <> 'EXPIRED' AND s.current_period_end > $6
        ORDER BY s.id FOR UPDATE OF s),
expired AS (DELETE FROM quota_reservations r USING sub
            WHERE r.subscription_id = sub.id AND r.expires_at <= $6
            RETURNING r.subscription_id, r.tokens),
left_over AS (SELECT sub.id, GREATEST(sub.tokens_reserved - coalesce(
                (SELECT sum(e.tokens) FROM expired e WHERE e.subscription_id = sub.id), 0), 0)::bigint AS reserved
              FROM sub),
wanted AS (SELECT req.id, req.tokens, req.expires_at, sub.id AS sid, sub.tier, sub.token_limit,
             sub.tokens_used, l.reserved, sub.rpm, sub.tat, sub.now,
             sum(req.tokens) OVER ordered AS running,
             row_number() OVER ordered AS nth
           FROM req JOIN sub ON sub.user_id = req.user_id JOIN left_over l ON l.id = sub.id
           WHERE sub.rank >= (SELECT p.rank FROM plans p WHERE p.tier = req.min_tier)
           WINDOW ordered AS (PARTITION BY sub.id ORDER BY req.ord)),
-- Milliseconds: every = 60 000 / r between requests; tolerance = (burst - 1) * every; base = how far
-- the subscription's TAT is ahead of now; ahead = how far this request's TAT is.
paced AS (SELECT w.*, e.every, e.burst, e.every * (e.burst - 1) AS tolerance, e.ahead, e.base,
                 w.rpm IS NULL OR e.ahead <= e.every * (e.burst - 1) + 0.001 AS within
          FROM wanted w CROSS JOIN LATERAL (
            SELECT 60000.0::float8 / w.rpm AS every,
                   CASE WHEN w.rpm IS NOT NULL THEN GREATEST(ceil(w.rpm / 6.0), 1)::integer END AS burst,
                   extract(epoch FROM w.tat - w.now)::float8 * 1000 AS base,
                   extract(epoch FROM w.tat - w.now)::float8 * 1000
                     + (w.nth - 1) * 60000.0::float8 / w.rpm AS ahead) e),
admitted AS (SELECT * FROM paced WHERE within),
granted AS (SELECT * FROM admitted
            WHERE token_limit IS NULL OR tokens_used + reserved + running <= token_limit),
counted AS (UPDATE subscriptions s SET
              tokens_reserved = l.reserved + coalesce(
                (SELECT sum(g.tokens) FROM granted g WHERE g.sid = s.id), 0)::bigint,
              request_rate_tat = coalesce(
                (SELECT max(a.tat) + make_interval(secs => count(*) * max(a.every) / 1000)
                 FROM admitted a WHERE a.sid = s.id AND a.rpm IS NOT NULL), s.request_rate_tat)
            FROM left_over l WHERE s.id = l.id RETURNING s.id),
held AS (INSERT INTO quota_reservations (id, subscription_id, tokens, expires_at)
         SELECT id, sid, tokens, expires_at FROM granted RETURNING id)
-- A request over the rate is answered from the TAT the batch leaves (base + admitted * every).
SELECT p.id, p.sid AS subscription_id, p.tier,
       EXISTS (SELECT 1 FROM granted g WHERE g.id = p.id) AS granted,
       p.rpm AS requests_per_minute, p.burst,
       CASE WHEN p.rpm IS NULL THEN NULL
            WHEN p.within THEN floor((p.tolerance - p.ahead + 0.001) / p.every)::integer
            ELSE 0 END AS burst_left,
       ceil(CASE WHEN p.within THEN p.ahead + p.every ELSE p.base + n.admitted * p.every END)::bigint
         AS full_in_ms,
       CASE WHEN NOT p.within
            THEN ceil(p.base + n.admitted * p.every - p.tolerance)::bigint END AS retry_in_ms
FROM paced p, lease,
     LATERAL (SELECT count(*) AS admitted FROM admitted a WHERE a.sid = p.sid) n
