-- A plan's requests per minute are paced per subscription with GCRA (see billing's reserve statement):
-- the "theoretical arrival time" of the subscription's next request; null until its first.
ALTER TABLE subscriptions ADD COLUMN request_rate_tat timestamptz;
