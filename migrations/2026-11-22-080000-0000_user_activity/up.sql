-- Which users were active on which day: small enough that "active users in a range" stays fast at any
-- log size (usage_daily has a row per tool as well).
CREATE TABLE user_activity (
    day date NOT NULL,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (day, user_id)
);
-- "Was this user active in the range?" is one index probe per user.
CREATE INDEX user_activity_user_id_idx ON user_activity (user_id, day);
INSERT INTO user_activity (day, user_id) SELECT DISTINCT day, user_id FROM usage_daily;
