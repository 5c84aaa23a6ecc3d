-- Charges the subscriptions of a batch of invocations: the settlement's last part, after
-- `settle_lock.sql` and the part that drew on reservations (its `taken_by_sub`). What keys with limits
-- spent is settled by `settle_keys.sql`, which follows this part when the batch holds calls made with
-- such keys.
-- $1 uuid[]   the subscriptions charged, in id order (as locked)
-- $2 bigint[] the tokens used, per subscription of $1
-- A subscription whose used tokens cross 80 % or 100 % of its plan's limit records the crossing once per
-- period (`quota_events`), through `quota_record_crossings`: the charge calls it, as it returns each
-- subscription charged, only when the plan has a limit and the charge may have crossed one, so a
-- settlement on an unlimited plan, or far from its limit, runs no `INSERT`. A data-modifying CTE runs to
-- completion, its `RETURNING` included, whether or not the statement reads it.
charged AS (UPDATE subscriptions s
            SET tokens_reserved = GREATEST(s.tokens_reserved - coalesce(t.tokens, 0), 0),
                tokens_used = s.tokens_used + u.used
            FROM unnest($1::uuid[], $2::bigint[]) AS u(id, used) JOIN locked l ON l.id = u.id
                 LEFT JOIN taken_by_sub t ON t.subscription_id = u.id, plans p
            WHERE s.id = u.id AND p.tier = s.tier
            RETURNING s.id, s.current_period_start,
                      CASE WHEN p.token_limit IS NOT NULL AND u.used > 0
                                AND s.tokens_used::numeric * 100 >= p.token_limit::numeric * 80
                                AND (s.tokens_used - u.used)::numeric * 100 < p.token_limit::numeric * 100
                           THEN quota_record_crossings(s.id, s.user_id, s.current_period_start,
                                                       s.tokens_used, u.used, p.token_limit)
                      END AS crossings)
