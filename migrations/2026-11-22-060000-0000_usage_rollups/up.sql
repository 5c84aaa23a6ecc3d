-- Daily usage per user and tool, kept exact by the transaction that writes each usage row, so
-- summaries and statistics never scan the raw log.
CREATE TABLE usage_daily (
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tool_id uuid NOT NULL REFERENCES tools (id),
    day date NOT NULL,
    invocations bigint NOT NULL DEFAULT 0,
    tokens bigint NOT NULL DEFAULT 0,
    errors bigint NOT NULL DEFAULT 0,
    latency_ms_sum bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, day, tool_id)
);
CREATE INDEX usage_daily_tool_id_idx ON usage_daily (tool_id);

-- The caller's history filtered by tool, newest first.
CREATE INDEX usage_events_user_tool_created_idx ON usage_events (user_id, tool_id, created_at DESC, id DESC);
-- Retention deletes the oldest rows first.
CREATE INDEX usage_events_created_idx ON usage_events (created_at);
