DROP TABLE payment_events;
DROP TABLE payment_customers;
ALTER TABLE subscription_events DROP CONSTRAINT subscription_events_kind_check;
DELETE FROM subscription_events WHERE kind IN ('PAYMENT_FAILED', 'PAYMENT_RECOVERED', 'GRANTED');
ALTER TABLE subscription_events ADD CONSTRAINT subscription_events_kind_check
    CHECK (kind IN ('CREATED', 'UPGRADED', 'DOWNGRADE_SCHEDULED', 'DOWNGRADE_CANCELLED', 'CANCELLED',
                    'RESUMED', 'RENEWED', 'EXPIRED'));
ALTER TABLE subscriptions DROP CONSTRAINT subscriptions_past_due_has_grace;
ALTER TABLE subscriptions DROP CONSTRAINT subscriptions_status_check;
UPDATE subscriptions SET status = 'ACTIVE' WHERE status = 'PAST_DUE';
ALTER TABLE subscriptions ADD CONSTRAINT subscriptions_status_check
    CHECK (status IN ('ACTIVE', 'CANCELLED', 'EXPIRED'));
DROP INDEX subscriptions_grace_idx;
ALTER TABLE subscriptions DROP COLUMN provider_event_at, DROP COLUMN grace_ends_at,
    DROP COLUMN provider_subscription_id, DROP COLUMN paid_by;
