DROP TABLE invocation_idempotency;
DROP TABLE usage_events;
DROP TABLE tools;
