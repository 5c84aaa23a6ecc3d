-- Mail goes out through this table: a message is written in the same transaction as the change that
-- causes it, and delivery workers in any instance claim due messages (FOR UPDATE SKIP LOCKED) and send
-- them, retrying with backoff. Once a message is sent or given up, its bodies are cleared (their links
-- carry single-use tokens); the row stays as the delivery log.
CREATE TABLE mail_outbox (
    id uuid PRIMARY KEY,
    user_id uuid,
    kind text NOT NULL,
    to_address text NOT NULL,
    subject text NOT NULL,
    text_body text,
    html_body text,
    status text NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'SENT', 'FAILED')),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    last_error text,
    created_at timestamptz NOT NULL,
    sent_at timestamptz
);
CREATE INDEX mail_outbox_due ON mail_outbox (next_attempt_at) WHERE status = 'PENDING';
CREATE INDEX mail_outbox_log ON mail_outbox (created_at DESC, id DESC);
CREATE INDEX mail_outbox_user ON mail_outbox (user_id);
