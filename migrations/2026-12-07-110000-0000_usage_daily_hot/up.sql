-- The meter's counters in `usage_daily` are updated in place (HOT) again: no index carries them, and
-- pages keep room for the new versions. A summary reads few daily rows now that closed days are folded
-- into `usage_monthly` and `usage_day_totals`, so it no longer needs them in the key.
ALTER TABLE usage_daily
    DROP CONSTRAINT usage_daily_pkey,
    ADD CONSTRAINT usage_daily_pkey PRIMARY KEY (user_id, day, tool_id);
ALTER TABLE usage_daily SET (fillfactor = 80);
