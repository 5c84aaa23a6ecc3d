-- Instances cache what a user sees as `me` (name and email too) beside what authentication needs: a
-- rename or a confirmed address change must reach every cache.
DROP TRIGGER users_cache_invalidation ON users;
CREATE TRIGGER users_cache_invalidation
    AFTER UPDATE OF role, status, session_version, deleted_at, email_verified_at, name, email OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION hub_cache_invalidate();
