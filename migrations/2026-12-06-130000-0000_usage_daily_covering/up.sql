-- A user's summary reads their daily rollups by user and day (`usage/summary_totals.sql`). Written a day
-- at a time, a heavy user's rows of a year lie on about as many pages as they are rows; the primary key
-- now carries what the summary reads, so it reads them from the index alone (vacuum keeps the
-- visibility map set). The price: updates of the counters are no longer HOT, so each writes an entry
-- in each of the table's indexes (docs/performance.md has both sides measured).
ALTER TABLE usage_daily
    DROP CONSTRAINT usage_daily_pkey,
    ADD CONSTRAINT usage_daily_pkey PRIMARY KEY (user_id, day, tool_id) INCLUDE (invocations, tokens);
