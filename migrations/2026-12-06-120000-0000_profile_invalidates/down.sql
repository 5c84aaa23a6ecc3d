DROP TRIGGER users_cache_invalidation ON users;
CREATE TRIGGER users_cache_invalidation
    AFTER UPDATE OF role, status, session_version, deleted_at, email_verified_at OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION hub_cache_invalidate();
