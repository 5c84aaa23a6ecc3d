-- Server instances cache API keys, what authentication needs of users, and tools (see src/cache.rs).
-- Whatever changes one of those rows, through the application or not, tells every instance on the
-- `hub_cache` channel when its transaction commits. Writes that cannot matter to a cache (an API key's
-- `last_used_at`) stay silent.
CREATE FUNCTION hub_cache_invalidate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'api_keys' THEN
        PERFORM pg_notify('hub_cache', 'api_key:' || encode(OLD.key_hash, 'hex'));
    ELSIF TG_TABLE_NAME = 'users' THEN
        PERFORM pg_notify('hub_cache', 'user:' || OLD.id::text);
    ELSIF TG_TABLE_NAME = 'tools' THEN
        PERFORM pg_notify('hub_cache', 'tool:' || OLD.id::text);
    ELSE
        PERFORM pg_notify('hub_cache', 'all:' || TG_TABLE_NAME);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER api_keys_cache_invalidation
    AFTER UPDATE OF user_id, key_hash, expires_at, revoked_at OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION hub_cache_invalidate();

CREATE TRIGGER users_cache_invalidation
    AFTER UPDATE OF role, status, session_version, deleted_at OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION hub_cache_invalidate();

CREATE TRIGGER tools_cache_invalidation
    AFTER UPDATE OR DELETE ON tools
    FOR EACH ROW EXECUTE FUNCTION hub_cache_invalidate();
