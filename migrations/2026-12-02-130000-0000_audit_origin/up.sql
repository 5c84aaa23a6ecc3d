-- Where a request came from, kept with each entry: security events (logins, logouts, password and
-- email changes, keys) are read with the client address and user agent that did them.
ALTER TABLE audit_log ADD COLUMN client_ip text, ADD COLUMN user_agent text;
