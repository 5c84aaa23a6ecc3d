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
-- $9 bigint[]      tokens asked for a slice beyond the request's own, per reservation (0: none)
-- $10 integer[]    requests asked for a slice beyond the request itself, per reservation (0: none)
-- $11 bigint       milliseconds a row holding a slice outlives its request's lease (calls leased later
--                  draw on it)
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
--
-- Slices (`billing::slices`): the first request of a subscription in the batch may ask for tokens and
-- requests beyond its own, which its instance then hands out without a round trip. It is granted at
-- most a quarter of what is left after its own cost (tokens under the limit, in whole requests' worth
-- of its own; requests in the burst),
-- so near a limit slices shrink to nothing; its reservation row holds its tokens plus the slice's, and
-- the slice's requests move the TAT as admitted requests do. Where the plan has both a token limit
-- and an enforced rate, a slice has both or nothing. The later requests of the batch count
-- after the slice.
-- Subscriptions are locked in id order, as the meter locks them. The commit does not wait for the disk:
-- a reservation is a lease, and losing one in a crash only returns its tokens early (and forgets the
-- requests' pacing since the last commit that reached the disk).
--
-- The statement is assembled from this directory's parts (`billing::repo::reserve_batch`): this head,
-- then `keyed.sql` when a request of the batch was made by a key with limits of its own (else
-- `plain.sql`, which leaves the keys' work out), `pace.sql`, the keys' counts (`keyed_counts.sql` or
-- `plain_counts.sql`) and `answer.sql`.
WITH lease AS (SELECT set_config('synchronous_commit', 'off', true)),
clock AS (SELECT statement_timestamp() AS now),
req AS (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::timestamptz[], $5::text[], $8::uuid[],
                             $9::bigint[], $10::integer[])
        WITH ORDINALITY AS r(id, user_id, tokens, expires_at, min_tier, key_id, slice_tokens, slice_requests, ord)),
sub AS (SELECT s.id, s.user_id, s.tier, p.token_limit, p.rank, s.tokens_used, s.tokens_reserved,
               s.current_period_start AS period_start,
               CASE WHEN $7::boolean THEN p.requests_per_minute END AS rpm,
               GREATEST(s.request_rate_tat, c.now) AS tat, c.now
        FROM subscriptions s JOIN plans p ON p.tier = s.tier CROSS JOIN clock c
        WHERE s.user_id = ANY($2::uuid[]) AND s.status <> 'EXPIRED' AND s.current_period_end > $6
          AND (s.grace_ends_at IS NULL OR s.grace_ends_at > $6)
        ORDER BY s.id FOR UPDATE OF s),
expired AS (DELETE FROM quota_reservations r USING sub
            WHERE r.subscription_id = sub.id AND r.expires_at <= $6
            RETURNING r.subscription_id, r.tokens, r.api_key_id),
left_over AS (SELECT sub.id, GREATEST(sub.tokens_reserved - coalesce(
                (SELECT sum(e.tokens) FROM expired e WHERE e.subscription_id = sub.id), 0), 0)::bigint AS reserved
              FROM sub),
