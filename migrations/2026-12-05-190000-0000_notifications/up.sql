-- Events worth telling, written in the transaction of the change that causes them, and what they become:
-- in-app notifications, mails (through `mail_outbox`) and webhook deliveries. A dispatcher in any
-- instance claims undispatched events (FOR UPDATE SKIP LOCKED) and fans each out in one transaction.
CREATE TABLE outbox_events (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- The event's type, as webhooks name it: `subscription.started`, `quota.warning`, …
    kind text NOT NULL,
    -- Whom it concerns; NULL for a platform event, which goes to administrators.
    user_id uuid,
    payload jsonb NOT NULL DEFAULT '{}',
    -- Set for events that must happen once (a period's renewal notice).
    dedupe_key text UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    dispatched_at timestamptz
);
CREATE INDEX outbox_events_pending ON outbox_events (created_at) WHERE dispatched_at IS NULL;
CREATE INDEX outbox_events_user ON outbox_events (user_id);

CREATE TABLE notifications (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL,
    event_id uuid NOT NULL,
    kind text NOT NULL,
    title text NOT NULL,
    body text NOT NULL,
    payload jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    read_at timestamptz,
    UNIQUE (user_id, event_id)
);
CREATE INDEX notifications_page ON notifications (user_id, created_at DESC, id DESC);
CREATE INDEX notifications_unread ON notifications (user_id) WHERE read_at IS NULL;

-- A user's choice of channels for one type of event; types without a row use the defaults.
CREATE TABLE notification_channels (
    user_id uuid NOT NULL,
    kind text NOT NULL,
    in_app boolean NOT NULL,
    email boolean NOT NULL,
    webhook boolean NOT NULL,
    PRIMARY KEY (user_id, kind)
);

-- A new notification is announced to every instance once committed (the live `notificationEvents`).
CREATE FUNCTION notifications_announce() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('hub_notifications', row_to_json(NEW)::text);
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER notifications_announce AFTER INSERT ON notifications
    FOR EACH ROW EXECUTE FUNCTION notifications_announce();

-- Billing records every change of a subscription and every quota threshold crossed in the transaction
-- that makes it; these triggers turn those records into events in that same transaction.
CREATE FUNCTION outbox_from_subscription_events() RETURNS trigger AS $$
BEGIN
    INSERT INTO outbox_events (kind, user_id, payload)
    VALUES (CASE NEW.kind
                WHEN 'CREATED' THEN 'subscription.started'
                WHEN 'GRANTED' THEN 'subscription.started'
                WHEN 'RENEWED' THEN 'subscription.renewed'
                WHEN 'EXPIRED' THEN 'subscription.expired'
                WHEN 'PAYMENT_FAILED' THEN 'payment.failed'
                ELSE 'subscription.changed'
            END,
            NEW.user_id,
            jsonb_build_object('subscriptionId', NEW.subscription_id, 'change', NEW.kind,
                               'fromTier', NEW.from_tier, 'toTier', NEW.to_tier,
                               'occurredAt', NEW.occurred_at));
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER outbox_from_subscription_events AFTER INSERT ON subscription_events
    FOR EACH ROW EXECUTE FUNCTION outbox_from_subscription_events();

CREATE FUNCTION outbox_from_quota_events() RETURNS trigger AS $$
BEGIN
    INSERT INTO outbox_events (kind, user_id, payload)
    VALUES (CASE WHEN NEW.percent >= 100 THEN 'quota.exhausted' ELSE 'quota.warning' END,
            NEW.user_id,
            jsonb_build_object('subscriptionId', NEW.subscription_id, 'percent', NEW.percent,
                               'tokensUsed', NEW.tokens_used, 'tokenLimit', NEW.token_limit,
                               'periodStart', NEW.period_start));
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER outbox_from_quota_events AFTER INSERT ON quota_events
    FOR EACH ROW EXECUTE FUNCTION outbox_from_quota_events();

-- Theme, language and time zone (the notification channels are in `notification_channels`).
CREATE TABLE user_preferences (
    user_id uuid PRIMARY KEY,
    theme text NOT NULL DEFAULT 'SYSTEM' CHECK (theme IN ('LIGHT', 'DARK', 'SYSTEM')),
    language text NOT NULL DEFAULT 'en',
    time_zone text NOT NULL DEFAULT 'UTC',
    updated_at timestamptz NOT NULL
);
