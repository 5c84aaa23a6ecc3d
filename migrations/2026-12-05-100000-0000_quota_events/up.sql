-- A subscription's tokens crossing 80 % and 100 % of its plan's limit, once per period each, written in
-- the transaction that charged them (billing's settlement) or, for 100 %, that refused a call for want
-- of tokens. Notifications are made from these rows.
CREATE TABLE quota_events (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    subscription_id uuid NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    period_start timestamptz NOT NULL,
    percent smallint NOT NULL CHECK (percent IN (80, 100)),
    tokens_used bigint NOT NULL,
    token_limit bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (subscription_id, period_start, percent)
);
CREATE INDEX quota_events_user_idx ON quota_events (user_id, created_at DESC);
