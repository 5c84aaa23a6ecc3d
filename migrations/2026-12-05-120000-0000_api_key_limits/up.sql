-- A key's own limits, set by its owner; they narrow the plan's (both apply).
ALTER TABLE api_keys ADD COLUMN requests_per_minute integer CHECK (requests_per_minute > 0),
                     ADD COLUMN token_budget bigint CHECK (token_budget > 0);

-- What each key spent in its owner's current billing period, and where its own request rate stands
-- (billing's; read and moved under the owner's subscription row lock, like the subscription's counters).
-- Only keys with limits have a row, from the moment they are set.
CREATE TABLE api_key_spending (
    api_key_id uuid PRIMARY KEY REFERENCES api_keys (id) ON DELETE CASCADE,
    period_start timestamptz NOT NULL,
    tokens_used bigint NOT NULL DEFAULT 0 CHECK (tokens_used >= 0),
    tokens_reserved bigint NOT NULL DEFAULT 0 CHECK (tokens_reserved >= 0),
    request_rate_tat timestamptz
);

-- The key whose budget a reservation counts against (null when the call's key had no limits).
ALTER TABLE quota_reservations ADD COLUMN api_key_id uuid;
