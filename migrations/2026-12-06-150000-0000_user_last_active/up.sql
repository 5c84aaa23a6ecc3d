-- Each user's last day of activity, kept in the metering statement (`usage/record_batch.sql`) when a
-- user's first call of a day adds its `user_activity` row. The users active in a range are those whose
-- last day is in it, plus those active after it who also were in it: for a range up to today the
-- second set is empty, so counting takes one index range instead of a probe per user.
CREATE TABLE user_last_active (
    user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    day date NOT NULL
);
CREATE INDEX user_last_active_day_idx ON user_last_active (day);

INSERT INTO user_last_active (user_id, day) SELECT user_id, max(day) FROM user_activity GROUP BY user_id;
