ALTER TABLE subscriptions DROP COLUMN request_rate_tat;
