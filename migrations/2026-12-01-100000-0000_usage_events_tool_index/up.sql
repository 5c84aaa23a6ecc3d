-- Every invocation inserts a usage row, and every index on usage_events is written with it. Nothing reads
-- usage rows by tool alone (a user's log filtered by tool uses usage_events_user_tool_created_idx; statistics
-- come from the rollups), and tools are only ever soft-deleted, so the tool index was pure write cost.
DROP INDEX usage_events_tool_id_idx;
