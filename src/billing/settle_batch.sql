-- Settles the reservations of a batch of invocations: a part of the meter's statement (see
-- `db::compose`), so it runs in the transaction that writes their usage rows.
-- $1 uuid[]   the subscriptions charged, in id order: they are locked in that order first, so
--             concurrent batches and reservations cannot deadlock on them
-- $2 uuid[]   the reservations settled, each as often as calls drew on it
-- $3 bigint[] the tokens used, per subscription of $1
-- $4 bigint[] the tokens each call of $2 drew on its reservation: a reservation is a call's own, drawn
--             whole and deleted, or a slice (`billing::slices`) that many calls draw on, which keeps
--             what is not drawn yet; the tokens drawn leave the reserved counter
-- A subscription whose used tokens cross 80 % or 100 % of its plan's limit records the crossing once per
-- period (`quota_events`). What keys with limits spent is settled by `settle_keys.sql`, a part that
-- follows this one when the batch holds calls made with such keys.
-- Calls that no limit constrains hold no reservation (and are not in $2): a batch of only such calls
-- skips the reservation CTEs whole (a condition on parameters alone is checked once, before the table
-- is read). FOR UPDATE, not FOR NO KEY UPDATE: with the weaker lock a reservation could deadlock with other
-- transactions' foreign-key checks. A reservation whose lease expired still charges its usage; its
-- reserved tokens were returned when it expired.
locked AS (SELECT id FROM subscriptions WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE),
draws AS (SELECT id, sum(tokens)::bigint AS tokens FROM unnest($2::uuid[], $4::bigint[]) AS d(id, tokens)
          GROUP BY id),
-- The rows as they stand once locked (after the subscriptions): concurrent batches draw on one slice,
-- so what is left is decided on the latest version, not on the statement's snapshot.
held AS (SELECT r.id, r.tokens FROM quota_reservations r
         WHERE r.id = ANY($2::uuid[]) AND cardinality($2::uuid[]) > 0
           AND (SELECT count(*) FROM locked) >= 0
         ORDER BY r.id FOR UPDATE),
whole AS (DELETE FROM quota_reservations r USING held h, draws d
          WHERE r.id = h.id AND d.id = h.id AND h.tokens <= d.tokens AND cardinality($2::uuid[]) > 0
          RETURNING r.subscription_id, h.tokens, r.api_key_id),
part AS (UPDATE quota_reservations r SET tokens = h.tokens - d.tokens FROM held h, draws d
         WHERE r.id = h.id AND d.id = h.id AND h.tokens > d.tokens AND cardinality($2::uuid[]) > 0
         RETURNING r.subscription_id, d.tokens, r.api_key_id),
taken AS (SELECT * FROM whole UNION ALL SELECT * FROM part),
taken_by_sub AS (SELECT subscription_id, sum(tokens)::bigint AS tokens FROM taken GROUP BY 1),
charged AS (UPDATE subscriptions s
            SET tokens_reserved = GREATEST(s.tokens_reserved - coalesce(t.tokens, 0), 0),
                tokens_used = s.tokens_used + u.used
            FROM unnest($1::uuid[], $3::bigint[]) AS u(id, used) JOIN locked l ON l.id = u.id
                 LEFT JOIN taken_by_sub t ON t.subscription_id = u.id
            WHERE s.id = u.id
            RETURNING s.id, s.user_id, s.tier, s.current_period_start, s.tokens_used, u.used AS added),
crossed AS (INSERT INTO quota_events (subscription_id, user_id, period_start, percent, tokens_used, token_limit)
            SELECT c.id, c.user_id, c.current_period_start, t.percent, c.tokens_used, p.token_limit
            FROM charged c JOIN plans p ON p.tier = c.tier
            CROSS JOIN (VALUES (80::smallint), (100::smallint)) AS t(percent)
            WHERE p.token_limit IS NOT NULL AND c.added > 0
              AND c.tokens_used::numeric * 100 >= p.token_limit::numeric * t.percent
              AND (c.tokens_used - c.added)::numeric * 100 < p.token_limit::numeric * t.percent
            ORDER BY c.id, t.percent
            ON CONFLICT (subscription_id, period_start, percent) DO NOTHING
            RETURNING 1)
