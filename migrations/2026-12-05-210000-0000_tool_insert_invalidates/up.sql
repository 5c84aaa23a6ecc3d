-- Instances keep a snapshot of the whole catalogue (src/cache.rs): a new tool must reach it too, so an
-- insert notifies like an update.
CREATE FUNCTION hub_cache_tool_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('hub_cache', 'tool:' || NEW.id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER tools_cache_insert
    AFTER INSERT ON tools
    FOR EACH ROW EXECUTE FUNCTION hub_cache_tool_inserted();
