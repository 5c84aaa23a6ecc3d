-- Locks the subscriptions a batch of invocations charges: the first part of the meter's settlement
-- (`billing::settlement`), so everything that follows sees them as they stand once locked.
-- $1 uuid[]  the subscriptions charged, in id order: they are locked in that order, so concurrent
--            batches and reservations cannot deadlock on them
-- FOR UPDATE, not FOR NO KEY UPDATE: with the weaker lock a reservation could deadlock with other
-- transactions' foreign-key checks.
locked AS (SELECT id FROM subscriptions WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE)
