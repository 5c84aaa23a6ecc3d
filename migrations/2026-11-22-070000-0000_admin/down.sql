DROP TRIGGER audit_log_no_update ON audit_log;
DROP FUNCTION audit_log_append_only();
DROP TABLE audit_log;
DROP INDEX usage_daily_day_idx;
DROP TABLE platform_daily;
ALTER TABLE users DROP COLUMN deleted_at;
