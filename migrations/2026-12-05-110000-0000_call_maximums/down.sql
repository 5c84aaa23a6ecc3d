ALTER TABLE usage_events DROP COLUMN tokens_overrun;
ALTER TABLE tools DROP COLUMN max_tokens_per_call;
