-- Sessions ended before their access tokens expire (logout, a stolen refresh token detected). Access
-- tokens name their session (`sid`); authentication refuses a token whose session is here. A row is
-- kept until every access token of its session has expired (`forget_after`), then swept.
CREATE TABLE ended_sessions (
    family_id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id),
    ended_at timestamptz NOT NULL,
    forget_after timestamptz NOT NULL
);
CREATE INDEX ended_sessions_user_idx ON ended_sessions (user_id);
CREATE INDEX ended_sessions_forget_after_idx ON ended_sessions (forget_after);

-- Every instance caches the ended sessions of a user with the rest of what authentication needs of
-- them; an ended session drops that user's entries everywhere.
CREATE FUNCTION hub_cache_session_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('hub_cache', 'user:' || NEW.user_id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER ended_sessions_cache_invalidation
    AFTER INSERT ON ended_sessions
    FOR EACH ROW EXECUTE FUNCTION hub_cache_session_ended();
