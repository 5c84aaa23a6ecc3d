DROP TRIGGER ended_sessions_cache_invalidation ON ended_sessions;
DROP FUNCTION hub_cache_session_ended();
DROP TABLE ended_sessions;
