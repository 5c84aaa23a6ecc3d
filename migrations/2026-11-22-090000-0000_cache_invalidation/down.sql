DROP TRIGGER tools_cache_invalidation ON tools;
DROP TRIGGER users_cache_invalidation ON users;
DROP TRIGGER api_keys_cache_invalidation ON api_keys;
DROP FUNCTION hub_cache_invalidate();
