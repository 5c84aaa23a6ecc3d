-- Paid plans through a payment provider.
-- paid_by: who pays for the subscription's plan: NONE (a free plan), MANUAL (the development provider),
-- PROVIDER (a subscription at the payment provider, provider_subscription_id), GRANT (an administrator).
ALTER TABLE subscriptions
    ADD COLUMN paid_by text NOT NULL DEFAULT 'NONE' CHECK (paid_by IN ('NONE', 'MANUAL', 'PROVIDER', 'GRANT')),
    ADD COLUMN provider_subscription_id text UNIQUE,
    -- When a PAST_DUE subscription expires unless a payment arrives first.
    ADD COLUMN grace_ends_at timestamptz,
    -- The time of the newest provider event applied: an older one never undoes it.
    ADD COLUMN provider_event_at timestamptz;
UPDATE subscriptions s SET paid_by = 'MANUAL' FROM plans p WHERE p.tier = s.tier AND p.price_cents > 0;

ALTER TABLE subscriptions DROP CONSTRAINT subscriptions_status_check;
ALTER TABLE subscriptions ADD CONSTRAINT subscriptions_status_check
    CHECK (status IN ('ACTIVE', 'PAST_DUE', 'CANCELLED', 'EXPIRED'));
ALTER TABLE subscriptions ADD CONSTRAINT subscriptions_past_due_has_grace
    CHECK (status <> 'PAST_DUE' OR grace_ends_at IS NOT NULL);
CREATE INDEX subscriptions_grace_idx ON subscriptions (grace_ends_at) WHERE status = 'PAST_DUE';

ALTER TABLE subscription_events DROP CONSTRAINT subscription_events_kind_check;
ALTER TABLE subscription_events ADD CONSTRAINT subscription_events_kind_check
    CHECK (kind IN ('CREATED', 'UPGRADED', 'DOWNGRADE_SCHEDULED', 'DOWNGRADE_CANCELLED', 'CANCELLED',
                    'RESUMED', 'RENEWED', 'EXPIRED', 'PAYMENT_FAILED', 'PAYMENT_RECOVERED', 'GRANTED'));

-- A user's customer record at the payment provider (created by the first checkout).
CREATE TABLE payment_customers (
    user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    customer_id text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Every provider event received, by the provider's id: an event is applied once, however often it is
-- delivered.
CREATE TABLE payment_events (
    id text PRIMARY KEY,
    kind text NOT NULL,
    occurred_at timestamptz NOT NULL,
    -- APPLIED, STALE (older than the state it would change), IGNORED (a type or object the hub does not use).
    outcome text NOT NULL CHECK (outcome IN ('APPLIED', 'STALE', 'IGNORED')),
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payment_events_received_at_idx ON payment_events (received_at);
