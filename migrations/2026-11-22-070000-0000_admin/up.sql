-- Administration: deleted accounts keep their id (usage stays for statistics, without the person),
-- platform-wide daily rollups for statistics, and the append-only audit trail.

ALTER TABLE users ADD COLUMN deleted_at timestamptz;

-- Platform totals per day, tool and plan tier, with a latency histogram (upper bounds in ms:
-- 50, 100, 200, 300, 500, 750, 1000, 2000, 5000, 10000, 30000, +inf), kept in the metering transaction.
CREATE TABLE platform_daily (
    day date NOT NULL,
    tool_id uuid NOT NULL REFERENCES tools (id),
    tier text NOT NULL,
    invocations bigint NOT NULL DEFAULT 0,
    errors bigint NOT NULL DEFAULT 0,
    tokens bigint NOT NULL DEFAULT 0,
    latency_hist bigint[] NOT NULL DEFAULT array_fill(0::bigint, ARRAY[12]),
    PRIMARY KEY (day, tool_id, tier)
);
CREATE INDEX platform_daily_tool_id_idx ON platform_daily (tool_id);
-- Who was active on a day.
CREATE INDEX usage_daily_day_idx ON usage_daily (day, user_id);

CREATE TABLE audit_log (
    id uuid PRIMARY KEY,
    -- The acting user; null for the system. (Users are anonymised, never removed.)
    actor_id uuid REFERENCES users (id),
    action text NOT NULL,
    target_type text NOT NULL,
    target_id text,
    before jsonb,
    after jsonb,
    request_id text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_created_idx ON audit_log (created_at DESC, id DESC);
CREATE INDEX audit_log_actor_id_idx ON audit_log (actor_id);
CREATE INDEX audit_log_target_idx ON audit_log (target_type, target_id);

-- Append-only: rows can be added, never changed or removed.
CREATE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
