DROP TRIGGER api_keys_cache_invalidation ON api_keys;
CREATE TRIGGER api_keys_cache_invalidation
    AFTER UPDATE OF user_id, key_hash, expires_at, revoked_at OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION hub_cache_invalidate();
