-- The usage log is partitioned by month of `created_at` (UTC): one partition per month, named
-- `usage_events_YYYY_MM`, and a default one for rows of a month that has none yet. Retention drops the
-- partitions of months wholly past it instead of deleting their rows. The sweeper makes sure the current
-- and the next month have theirs; `usage_events_ensure_month` makes one, moving the rows the default
-- partition holds for that month into it.
-- The primary key holds the partition key (PostgreSQL requires it): (id, created_at). Nothing can
-- reference a usage row by its id alone any more, so the idempotency record keeps the id without a
-- foreign key (its rows are swept long before retention reaches the usage row they name).
ALTER TABLE invocation_idempotency DROP CONSTRAINT invocation_idempotency_usage_event_id_fkey;

ALTER TABLE usage_events RENAME TO usage_events_unpartitioned;

CREATE TABLE usage_events (
    id uuid NOT NULL,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    api_key_id uuid REFERENCES api_keys (id) ON DELETE SET NULL,
    tool_id uuid NOT NULL REFERENCES tools (id),
    subscription_id uuid REFERENCES subscriptions (id) ON DELETE SET NULL,
    tokens_used bigint NOT NULL CHECK (tokens_used >= 0),
    -- True when the answer had no token count and the fallback estimate was charged.
    tokens_estimated boolean NOT NULL DEFAULT false,
    status text NOT NULL CHECK (status IN ('SUCCESS', 'ERROR')),
    error_code text,
    latency_ms integer NOT NULL CHECK (latency_ms >= 0),
    created_at timestamptz NOT NULL,
    tokens_overrun bigint NOT NULL DEFAULT 0 CHECK (tokens_overrun >= 0),
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
CREATE TABLE usage_events_default PARTITION OF usage_events DEFAULT;

-- Makes the partition of the month (UTC) holding `at`, unless it exists; true if it made it.
CREATE FUNCTION usage_events_ensure_month(at timestamptz) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    month_start timestamptz := date_trunc('month', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    month_end timestamptz := (date_trunc('month', at AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC';
    name text := 'usage_events_' || to_char(at AT TIME ZONE 'UTC', 'YYYY_MM');
BEGIN
    IF to_regclass(name) IS NOT NULL THEN
        RETURN false;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('usage_events partitions'));
    IF to_regclass(name) IS NOT NULL THEN
        RETURN false;
    END IF;
    CREATE TEMP TABLE usage_events_moving ON COMMIT DROP AS
        SELECT * FROM usage_events_default WHERE created_at >= month_start AND created_at < month_end;
    DELETE FROM usage_events_default WHERE created_at >= month_start AND created_at < month_end;
    EXECUTE format('CREATE TABLE %I PARTITION OF usage_events FOR VALUES FROM (%L) TO (%L)',
                   name, month_start, month_end);
    INSERT INTO usage_events SELECT * FROM usage_events_moving;
    DROP TABLE usage_events_moving;
    RETURN true;
END
$$;

-- Drops the partitions of months that end at or before `cutoff`; returns how many rows they held.
CREATE FUNCTION usage_events_drop_months_before(cutoff timestamptz) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    part record;
    held bigint;
    dropped bigint := 0;
BEGIN
    FOR part IN
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'usage_events'::regclass AND c.relname ~ '^usage_events_[0-9]{4}_[0-9]{2}$'
          AND (to_date(substr(c.relname, 14), 'YYYY_MM') + interval '1 month')::timestamp AT TIME ZONE 'UTC' <= cutoff
        ORDER BY c.relname
    LOOP
        EXECUTE format('SELECT count(*) FROM %I', part.relname) INTO held;
        EXECUTE format('DROP TABLE %I', part.relname);
        dropped := dropped + held;
    END LOOP;
    RETURN dropped;
END
$$;

SELECT usage_events_ensure_month(m)
FROM (SELECT DISTINCT date_trunc('month', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS m
      FROM usage_events_unpartitioned
      UNION SELECT now() UNION SELECT now() + interval '1 month') AS months;

INSERT INTO usage_events SELECT * FROM usage_events_unpartitioned;
DROP TABLE usage_events_unpartitioned;

CREATE INDEX usage_events_user_created_idx ON usage_events (user_id, created_at DESC, id DESC);
CREATE INDEX usage_events_user_tool_created_idx ON usage_events (user_id, tool_id, created_at DESC, id DESC);
CREATE INDEX usage_events_api_key_id_idx ON usage_events (api_key_id);
CREATE INDEX usage_events_subscription_id_idx ON usage_events (subscription_id);
-- Retention deletes the oldest rows first, within the month it reaches and the default partition.
CREATE INDEX usage_events_created_idx ON usage_events (created_at);
