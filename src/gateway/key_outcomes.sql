-- Stores the answers of completed idempotent calls and frees the keys of failed ones: a part of the
-- meter's statement (see `db::compose`), so a key is settled in its call's metering transaction.
-- $1 uuid[]  users of completed calls      $2 text[]  their idempotency keys
-- $3 uuid[]  their usage rows' ids          $4 jsonb[] their answers, kept for replays
-- $5 uuid[]  users of failed calls         $6 text[]  their keys, freed so a retry runs again
-- The meter leaves this part out of a batch that settles no key; of its two CTEs, one whose arrays are
-- empty is skipped whole (a condition on parameters alone is checked once, before the table is read).
completed AS (UPDATE invocation_idempotency i SET usage_event_id = v.e, output = v.o
              FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::jsonb[]) AS v(u, k, e, o)
              WHERE i.user_id = v.u AND i.key = v.k AND cardinality($1::uuid[]) > 0 RETURNING 1),
abandoned AS (DELETE FROM invocation_idempotency i USING unnest($5::uuid[], $6::text[]) AS v(u, k)
              WHERE i.user_id = v.u AND i.key = v.k AND i.usage_event_id IS NULL
                AND cardinality($5::uuid[]) > 0 RETURNING 1)
