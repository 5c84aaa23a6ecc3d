ALTER TABLE audit_log DROP COLUMN client_ip, DROP COLUMN user_agent;
