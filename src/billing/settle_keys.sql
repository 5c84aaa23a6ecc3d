-- What the API keys with limits of their own spent: the settlement's part after `settle_charge.sql`
-- when the batch holds calls made with such keys (it reads `taken` of `settle_held.sql` and `charged`).
-- $1 uuid[]   the keys that made calls, in id order
-- $2 bigint[] their tokens used
-- $3 uuid[]   their subscription
-- The spending this period of each key (its `api_key_spending` row) grows, and its reserved tokens are
-- returned.
taken_by_key AS (SELECT api_key_id, sum(tokens)::bigint AS tokens FROM taken
                 WHERE api_key_id IS NOT NULL GROUP BY 1),
key_spent AS (UPDATE api_key_spending sp SET
                tokens_used = CASE WHEN sp.period_start = c.current_period_start
                                   THEN sp.tokens_used + k.used ELSE k.used END,
                period_start = c.current_period_start,
                tokens_reserved = GREATEST(sp.tokens_reserved - coalesce(t.tokens, 0), 0)
              FROM unnest($1::uuid[], $2::bigint[], $3::uuid[]) AS k(id, used, sid)
                JOIN charged c ON c.id = k.sid LEFT JOIN taken_by_key t ON t.api_key_id = k.id
              WHERE sp.api_key_id = k.id
              RETURNING 1)
