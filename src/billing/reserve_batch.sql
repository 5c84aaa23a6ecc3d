-- Reserves quota for a batch of invocations in one statement (one round trip, one commit). The one
-- place where tokens are reserved: every invocation asks here first (see `quota::spend`).
-- $1 uuid[]        the reservations' ids
-- $2 uuid[]        the users asking, per reservation
-- $3 bigint[]      the tokens asked, per reservation
-- $4 timestamptz[] when each lease expires
-- $5 text[]        the lowest plan tier that may reserve, per reservation
-- $6 timestamptz   billing's "now": which periods run and which leases have expired
-- Returns the granted reservations (id, subscription_id, tier). A request is granted when its user's
-- subscription is current with a period running at $6, its plan ranks at or above the tier asked, and
-- the running total of the subscription's requests (in order, leaving out those below their tier)
-- fits the limit; once one does not fit, the later ones are not granted either, so a batch never reserves more
-- than the limit. Expired leases of the subscriptions touched are returned on the way, granted or not.
-- Subscriptions are locked in id order, as the meter locks them. The commit does not wait for the disk:
-- a reservation is a lease, and losing one in a crash only returns its tokens early.
WITH lease AS (SELECT set_config('synchronous_commit', 'off', true)),
req AS (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::timestamptz[], $5::text[])
        WITH ORDINALITY AS r(id, user_id, tokens, expires_at, min_tier, ord)),
sub AS (SELECT s.id, s.user_id, s.tier, p.token_limit, p.rank, s.tokens_used, s.tokens_reserved
        FROM subscriptions s JOIN plans p ON p.tier = s.tier
        WHERE s.user_id = ANY($2::uuid[]) AND s.status <> 'EXPIRED' AND s.current_period_end > $6
        ORDER BY s.id FOR UPDATE OF s),
expired AS (DELETE FROM quota_reservations r USING sub
            WHERE r.subscription_id = sub.id AND r.expires_at <= $6
            RETURNING r.subscription_id, r.tokens),
left_over AS (SELECT sub.id, GREATEST(sub.tokens_reserved - coalesce(
                (SELECT sum(e.tokens) FROM expired e WHERE e.subscription_id = sub.id), 0), 0)::bigint AS reserved
              FROM sub),
wanted AS (SELECT req.id, req.tokens, req.expires_at, sub.id AS sid, sub.tier, sub.token_limit,
             sub.tokens_used, l.reserved,
             sum(req.tokens) OVER (PARTITION BY sub.id ORDER BY req.ord) AS running
           FROM req JOIN sub ON sub.user_id = req.user_id JOIN left_over l ON l.id = sub.id
           WHERE sub.rank >= (SELECT p.rank FROM plans p WHERE p.tier = req.min_tier)),
granted AS (SELECT * FROM wanted
            WHERE token_limit IS NULL OR tokens_used + reserved + running <= token_limit),
counted AS (UPDATE subscriptions s SET tokens_reserved = l.reserved + coalesce(
              (SELECT sum(g.tokens) FROM granted g WHERE g.sid = s.id), 0)::bigint
            FROM left_over l WHERE s.id = l.id RETURNING s.id),
held AS (INSERT INTO quota_reservations (id, subscription_id, tokens, expires_at)
         SELECT id, sid, tokens, expires_at FROM granted RETURNING id)
SELECT g.id, g.sid AS subscription_id, g.tier FROM granted g, lease
