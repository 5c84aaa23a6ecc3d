DROP TRIGGER tools_cache_insert ON tools;
DROP FUNCTION hub_cache_tool_inserted();
