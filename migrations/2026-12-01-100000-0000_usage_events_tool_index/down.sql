CREATE INDEX usage_events_tool_id_idx ON usage_events (tool_id);
