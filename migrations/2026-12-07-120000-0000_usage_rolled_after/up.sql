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

-- The usage rows the calling statement sees that are not in the rollups yet: from the roll's mark to the
-- first transaction id its snapshot has not given out (rows past it are invisible to it anyway); one
-- user's, or everyone's when `of_user` is null. STABLE, so it reads in the calling statement's snapshot:
-- a statement that reads the rollups and adds these counts each call once. In PL/pgSQL, so each session
-- keeps its plan, on the generic plan and without JIT: that plan prices the read at a default share of
-- every partition, and PostgreSQL would compile it on every call, far longer than the read takes. The
-- rows are found by the index on `xact` alone (`OFFSET 0` keeps the planner from reaching for the user's
-- index, which would read their whole history), then the user's kept.
CREATE FUNCTION usage_unrolled(of_user uuid)
RETURNS TABLE (user_id uuid, tool_id uuid, tier text, status text, tokens_used bigint, latency_ms integer,
               created_at timestamptz)
LANGUAGE plpgsql STABLE ROWS 500
SET plan_cache_mode = force_generic_plan SET jit = off
AS $$
BEGIN
    RETURN QUERY
    SELECT u.user_id, u.tool_id, u.tier, u.status, u.tokens_used, u.latency_ms, u.created_at
    FROM (SELECT e.user_id, e.tool_id, e.tier, e.status, e.tokens_used, e.latency_ms, e.created_at
          FROM usage_events e
          WHERE e.xact >= (SELECT r.rolled_before FROM usage_roll r)
            AND e.xact < pg_snapshot_xmax(pg_current_snapshot())::text::bigint
          OFFSET 0) AS u
    WHERE of_user IS NULL OR u.user_id = of_user;
END
$$;
