-- The tool catalogue, the usage log, and idempotency records for invocations.

CREATE TABLE tools (
    id uuid PRIMARY KEY,
    slug text NOT NULL CONSTRAINT tools_slug_key UNIQUE,
    name text NOT NULL,
    description text NOT NULL DEFAULT '',
    usage_notes text NOT NULL DEFAULT '',
    category text NOT NULL DEFAULT 'general',
    endpoint text NOT NULL CHECK (endpoint ~ '^https?://'),
    method text NOT NULL DEFAULT 'POST' CHECK (method IN ('GET', 'POST', 'PUT', 'PATCH')),
    -- [{"name": …, "value": …}] or, for secrets, [{"name": …, "nonce": hex, "ciphertext": hex}] (AES-256-GCM).
    headers jsonb NOT NULL DEFAULT '[]',
    timeout_ms integer NOT NULL DEFAULT 30000 CHECK (timeout_ms BETWEEN 100 AND 300000),
    -- Where the token count is in the upstream's JSON answer (dot path).
    tokens_path text NOT NULL DEFAULT 'usage.total_tokens',
    -- Reserved before each call; also the count used when the answer has none.
    estimated_tokens bigint NOT NULL DEFAULT 1000 CHECK (estimated_tokens > 0),
    min_tier text NOT NULL DEFAULT 'FREE' REFERENCES plans (tier),
    enabled boolean NOT NULL DEFAULT true,
    -- Deleted tools stay for the usage history.
    deleted_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
SELECT diesel_manage_updated_at('tools');
CREATE INDEX tools_min_tier_idx ON tools (min_tier);
CREATE INDEX tools_listing_idx ON tools (name, id) WHERE deleted_at IS NULL;

-- One row per invocation, success or failure, written with the quota settlement.
CREATE TABLE usage_events (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    api_key_id uuid REFERENCES api_keys (id) ON DELETE SET NULL,
    tool_id uuid NOT NULL REFERENCES tools (id),
    subscription_id uuid REFERENCES subscriptions (id) ON DELETE SET NULL,
    tokens_used bigint NOT NULL CHECK (tokens_used >= 0),
    -- True when the answer had no token count and the fallback estimate was charged.
    tokens_estimated boolean NOT NULL DEFAULT false,
    status text NOT NULL CHECK (status IN ('SUCCESS', 'ERROR')),
    error_code text,
    latency_ms integer NOT NULL CHECK (latency_ms >= 0),
    created_at timestamptz NOT NULL
);
CREATE INDEX usage_events_user_created_idx ON usage_events (user_id, created_at DESC, id DESC);
CREATE INDEX usage_events_tool_id_idx ON usage_events (tool_id);
CREATE INDEX usage_events_api_key_id_idx ON usage_events (api_key_id);
CREATE INDEX usage_events_subscription_id_idx ON usage_events (subscription_id);

-- The first result of an invocation sent with an idempotency key, replayed for repeats.
CREATE TABLE invocation_idempotency (
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key text NOT NULL,
    tool_id uuid NOT NULL REFERENCES tools (id),
    -- Null while the first call is in flight.
    usage_event_id uuid REFERENCES usage_events (id) ON DELETE CASCADE,
    output jsonb,
    -- A claim left by a crash can be taken over after this.
    claim_expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);
CREATE INDEX invocation_idempotency_tool_id_idx ON invocation_idempotency (tool_id);
CREATE INDEX invocation_idempotency_usage_event_id_idx ON invocation_idempotency (usage_event_id);
