-- Charges the subscriptions of a batch of invocations: the settlement's last part, after
-- `settle_lock.sql` and the part that drew on reservations (its `taken_by_sub`). What keys with limits
-- spent is settled by `settle_keys.sql`, which follows this part when the batch holds calls made with
-- such keys.
-- $1 uuid[]   the subscriptions charged, in id order (as locked)
-- $2 bigint[] the tokens used, per subscription of $1
-- A subscription whose used tokens cross 80 % or 100 % of its plan's limit records the crossing once per
-- period (`quota_events`).
charged AS (UPDATE subscriptions s
            SET tokens_reserved = GREATEST(s.tokens_reserved - coalesce(t.tokens, 0), 0),
                tokens_used = s.tokens_used + u.used
            FROM unnest($1::uuid[], $2::bigint[]) AS u(id, used) JOIN locked l ON l.id = u.id
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
