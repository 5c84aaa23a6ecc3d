-- Users' (and administrators') webhook endpoints, the deliveries queued for them in the transaction that
-- dispatches an event, and every attempt to deliver one. Signing secrets are encrypted at rest like
-- upstream credentials; a rotated secret keeps signing alongside the new one until `previous_until`.
CREATE TABLE webhook_endpoints (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL,
    url text NOT NULL,
    description text NOT NULL DEFAULT '',
    -- The event types it takes; NULL for all.
    events text[],
    secret_nonce text NOT NULL,
    secret_ciphertext text NOT NULL,
    previous_nonce text,
    previous_ciphertext text,
    previous_until timestamptz,
    enabled boolean NOT NULL DEFAULT true,
    disabled_reason text,
    -- When deliveries to it started failing without a success since.
    failing_since timestamptz,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX webhook_endpoints_user ON webhook_endpoints (user_id);

CREATE TABLE webhook_deliveries (
    id uuid PRIMARY KEY,
    -- The `webhook-id` sent: the same for every attempt and for a replay.
    message_id uuid NOT NULL,
    endpoint_id uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    user_id uuid NOT NULL,
    event_id uuid,
    kind text NOT NULL,
    -- The exact body sent.
    body text NOT NULL,
    status text NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'DELIVERED', 'FAILED')),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    last_status_code integer,
    last_error text,
    created_at timestamptz NOT NULL,
    delivered_at timestamptz
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'PENDING';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, created_at DESC, id DESC);

CREATE TABLE webhook_attempts (
    id uuid PRIMARY KEY,
    delivery_id uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempted_at timestamptz NOT NULL,
    -- NULL when no answer came (refused, timed out).
    status_code integer,
    latency_ms integer NOT NULL,
    -- The start of the answer, or why there was none.
    excerpt text NOT NULL
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, attempted_at);
