-- Instances cache API keys with their limits (billing counts a key apart only while its row says it has
-- limits), so changing a key's limits tells every instance too.
DROP TRIGGER api_keys_cache_invalidation ON api_keys;
CREATE TRIGGER api_keys_cache_invalidation
    AFTER UPDATE OF user_id, key_hash, expires_at, revoked_at, requests_per_minute, token_budget OR DELETE
    ON api_keys
    FOR EACH ROW EXECUTE FUNCTION hub_cache_invalidate();
