ALTER TABLE quota_reservations DROP COLUMN api_key_id;
DROP TABLE api_key_spending;
ALTER TABLE api_keys DROP COLUMN token_budget, DROP COLUMN requests_per_minute;
