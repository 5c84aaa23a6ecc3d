-- Records the 80 % and 100 % crossings of one subscription's charge (`quota_events`, once per period
-- each). The meter's charge (`billing/settle_charge.sql`) calls it only for a subscription whose plan has
-- a limit and whose charge may have crossed one: an `INSERT` in the settlement statement itself costs
-- its executor's start-up on every settlement, even one that inserts no row, as on an unlimited plan.
CREATE FUNCTION quota_record_crossings(p_subscription uuid, p_user uuid, p_period_start timestamptz,
                                       p_used bigint, p_added bigint, p_limit bigint)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    recorded integer;
BEGIN
    INSERT INTO quota_events (subscription_id, user_id, period_start, percent, tokens_used, token_limit)
    SELECT p_subscription, p_user, p_period_start, t.percent, p_used, p_limit
    FROM (VALUES (80::smallint), (100::smallint)) AS t(percent)
    WHERE p_added > 0
      AND p_used::numeric * 100 >= p_limit::numeric * t.percent
      AND (p_used - p_added)::numeric * 100 < p_limit::numeric * t.percent
    ORDER BY t.percent
    ON CONFLICT (subscription_id, period_start, percent) DO NOTHING;
    GET DIAGNOSTICS recorded = ROW_COUNT;
    RETURN recorded;
END
$$;
