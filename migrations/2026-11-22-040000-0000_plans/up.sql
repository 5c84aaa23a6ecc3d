-- Plans, subscriptions, their event history, and quota reservations.

-- Plans are data: admins change them with `updatePlan`; nothing about prices or limits lives in code.
CREATE TABLE plans (
    tier text PRIMARY KEY CHECK (tier IN ('FREE', 'PRO', 'ENTERPRISE')),
    -- Orders tiers for upgrades and downgrades.
    rank integer NOT NULL CONSTRAINT plans_rank_key UNIQUE,
    name text NOT NULL,
    price_cents bigint NOT NULL CHECK (price_cents >= 0),
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- Tokens per billing period; NULL means unlimited.
    token_limit bigint CHECK (token_limit IS NULL OR token_limit >= 0),
    -- Requests per minute; NULL means unlimited.
    requests_per_minute integer CHECK (requests_per_minute IS NULL OR requests_per_minute > 0),
    features jsonb NOT NULL DEFAULT '[]',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
SELECT diesel_manage_updated_at('plans');

INSERT INTO plans (tier, rank, name, price_cents, currency, token_limit, requests_per_minute, features) VALUES
    ('FREE', 0, 'Free', 0, 'USD', 10000, 10,
     '["Free-tier tools", "10,000 tokens per month", "10 requests per minute", "Community support"]'),
    ('PRO', 1, 'Pro', 1900, 'USD', 1000000, 120,
     '["All Pro tools", "1,000,000 tokens per month", "120 requests per minute", "API keys for scripts", "Email support"]'),
    ('ENTERPRISE', 2, 'Enterprise', 19900, 'USD', NULL, 1200,
     '["Every tool", "Unlimited tokens", "1,200 requests per minute", "Priority support"]');

-- A user's subscription. Periods are calendar months counted from `billing_anchor`.
CREATE TABLE subscriptions (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tier text NOT NULL REFERENCES plans (tier),
    status text NOT NULL CHECK (status IN ('ACTIVE', 'CANCELLED', 'EXPIRED')),
    billing_anchor timestamptz NOT NULL,
    current_period_start timestamptz NOT NULL,
    current_period_end timestamptz NOT NULL,
    cancel_at_period_end boolean NOT NULL DEFAULT false,
    -- A downgrade waiting for the period end.
    scheduled_tier text REFERENCES plans (tier),
    tokens_used bigint NOT NULL DEFAULT 0 CHECK (tokens_used >= 0),
    tokens_reserved bigint NOT NULL DEFAULT 0 CHECK (tokens_reserved >= 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK (current_period_end > current_period_start)
);
SELECT diesel_manage_updated_at('subscriptions');
-- At most one current subscription per user.
CREATE UNIQUE INDEX subscriptions_one_current_per_user ON subscriptions (user_id) WHERE status <> 'EXPIRED';
CREATE INDEX subscriptions_user_id_idx ON subscriptions (user_id);
CREATE INDEX subscriptions_tier_idx ON subscriptions (tier);
CREATE INDEX subscriptions_scheduled_tier_idx ON subscriptions (scheduled_tier);
-- The sweeper looks for periods that ended.
CREATE INDEX subscriptions_due_idx ON subscriptions (current_period_end) WHERE status <> 'EXPIRED';

-- Every change of a subscription, for billing and (later) webhooks.
CREATE TABLE subscription_events (
    id uuid PRIMARY KEY,
    subscription_id uuid NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('CREATED', 'UPGRADED', 'DOWNGRADE_SCHEDULED', 'DOWNGRADE_CANCELLED',
                                       'CANCELLED', 'RESUMED', 'RENEWED', 'EXPIRED')),
    from_tier text,
    to_tier text,
    occurred_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subscription_events_subscription_id_idx ON subscription_events (subscription_id, occurred_at);
CREATE INDEX subscription_events_user_id_idx ON subscription_events (user_id);

-- Tokens set aside for calls in flight. A reservation is a lease: when it expires unsettled (a crash),
-- the sweeper gives its tokens back.
CREATE TABLE quota_reservations (
    id uuid PRIMARY KEY,
    subscription_id uuid NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    tokens bigint NOT NULL CHECK (tokens > 0),
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX quota_reservations_subscription_id_idx ON quota_reservations (subscription_id);
CREATE INDEX quota_reservations_expires_at_idx ON quota_reservations (expires_at);
