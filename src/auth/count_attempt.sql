-- Counts one attempt for a throttle key, atomically: the first attempt, or the first after the window
-- is over, starts a new window at one; any other adds one. Returns the key's row, this attempt counted.
-- $1 text         the throttle key (see `throttle`: an account, an address, or both)
-- $2 timestamptz  now
-- $3 interval     the window's length
INSERT INTO login_throttle (key, failures, window_started_at) VALUES ($1, 1, $2)
ON CONFLICT (key) DO UPDATE SET
  failures = CASE WHEN login_throttle.window_started_at <= $2 - $3 THEN 1
                  ELSE login_throttle.failures + 1 END,
  window_started_at = CASE WHEN login_throttle.window_started_at <= $2 - $3 THEN $2
                           ELSE login_throttle.window_started_at END
RETURNING key, failures, window_started_at
