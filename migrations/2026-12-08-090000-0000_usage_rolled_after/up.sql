-- The rollups are written after the answer. A metering statement writes only the usage row, which
-- carries its transaction's 64-bit id (`xact`, as a `bigint`) and the caller's plan tier at the time
-- (`tier`, as `platform_daily` spells it). A roller adds the rows whose transactions have all ended
-- to the rollups and moves `usage_roll.rolled_before` past them, in one transaction (`usage/roll.rs`):
-- every row with a smaller `xact`, or none (the rows written before this migration, already in the
-- rollups), is in the rollups, and every other row is not. A reader of the rollups adds the rows at
-- or past the mark it sees, so each call counts once.
ALTER TABLE usage_events ADD COLUMN xact bigint, ADD COLUMN tier text;
ALTER TABLE usage_events ALTER COLUMN xact SET DEFAULT pg_current_xact_id()::text::bigint;
-- Finds the rows not rolled up yet, a second's worth under load, for the roller and for every read
-- of the rollups. A B-tree rather than a BRIN index: a BRIN index leaves the newest block ranges
-- unsummarized until autovacuum gets to them (a minute or more), and every read would scan them.
CREATE INDEX usage_events_xact_idx ON usage_events (xact) WHERE xact IS NOT NULL;

CREATE TABLE usage_roll (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    rolled_before bigint NOT NULL
);
INSERT INTO usage_roll (rolled_before) VALUES (pg_current_xact_id()::text::bigint);
