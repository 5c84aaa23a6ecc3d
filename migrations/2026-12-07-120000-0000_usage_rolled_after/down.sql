DROP FUNCTION usage_unrolled(uuid);
DROP TABLE usage_roll;
DROP INDEX usage_events_xact_idx;
ALTER TABLE usage_events DROP COLUMN tier, DROP COLUMN xact;
