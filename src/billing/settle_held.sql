-- Draws a batch's calls from the reservations they hold: the settlement's second part when some call
-- holds one (`settle_nothing_held.sql` otherwise). Follows `settle_lock.sql`.
-- $1 uuid[]   the reservations settled, each as often as calls drew on it
-- $2 bigint[] the tokens each call of $1 drew on its reservation: a reservation is a call's own, drawn
--             whole and deleted, or a slice (`billing::slices`) that many calls draw on, which keeps
--             what is not drawn yet; the tokens drawn leave the reserved counter (`settle_charge.sql`)
-- FOR UPDATE, not FOR NO KEY UPDATE: with the weaker lock a reservation could deadlock with other
-- transactions' foreign-key checks. A reservation whose lease expired is no longer here; its call still
-- charges its usage, and its reserved tokens were returned when it expired.
draws AS (SELECT id, sum(tokens)::bigint AS tokens FROM unnest($1::uuid[], $2::bigint[]) AS d(id, tokens)
          GROUP BY id),
-- The rows as they stand once locked (after the subscriptions): concurrent batches draw on one slice,
-- so what is left is decided on the latest version, not on the statement's snapshot.
held AS (SELECT r.id, r.tokens FROM quota_reservations r
         WHERE r.id = ANY($1::uuid[]) AND (SELECT count(*) FROM locked) >= 0
         ORDER BY r.id FOR UPDATE),
whole AS (DELETE FROM quota_reservations r USING held h, draws d
          WHERE r.id = h.id AND d.id = h.id AND h.tokens <= d.tokens
          RETURNING r.subscription_id, h.tokens, r.api_key_id),
part AS (UPDATE quota_reservations r SET tokens = h.tokens - d.tokens FROM held h, draws d
         WHERE r.id = h.id AND d.id = h.id AND h.tokens > d.tokens
         RETURNING r.subscription_id, d.tokens, r.api_key_id),
taken AS (SELECT * FROM whole UNION ALL SELECT * FROM part),
taken_by_sub AS (SELECT subscription_id, sum(tokens)::bigint AS tokens FROM taken GROUP BY 1)
