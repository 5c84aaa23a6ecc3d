DROP INDEX usage_events_created_idx;
DROP INDEX usage_events_user_tool_created_idx;
DROP TABLE usage_daily;
