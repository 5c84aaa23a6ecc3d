ALTER TABLE usage_daily RESET (fillfactor);
ALTER TABLE usage_daily
    DROP CONSTRAINT usage_daily_pkey,
    ADD CONSTRAINT usage_daily_pkey PRIMARY KEY (user_id, day, tool_id) INCLUDE (invocations, tokens);
