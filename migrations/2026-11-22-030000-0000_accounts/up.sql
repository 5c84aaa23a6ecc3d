-- Accounts: users, their sessions (refresh tokens), single-use mail tokens, API keys, and the
-- login throttle shared by every server instance.

CREATE TABLE users (
    id uuid PRIMARY KEY,
    -- Stored normalised (trimmed, lower-case), so plain equality is case-insensitive.
    email text NOT NULL CONSTRAINT users_email_key UNIQUE,
    name text NOT NULL,
    password_hash text NOT NULL,
    role text NOT NULL DEFAULT 'USER' CHECK (role IN ('USER', 'ADMIN')),
    status text NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'SUSPENDED')),
    email_verified_at timestamptz,
    -- Carried in access tokens; a password change or reset increments it, ending every session.
    session_version integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
SELECT diesel_manage_updated_at('users');

-- Opaque refresh tokens, stored as SHA-256 hashes. Each rotation adds a row to the same family;
-- presenting a used token again revokes the whole family.
CREATE TABLE refresh_tokens (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id uuid NOT NULL,
    token_hash bytea NOT NULL CONSTRAINT refresh_tokens_token_hash_key UNIQUE,
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    revoked_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refresh_tokens_user_id_idx ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_family_id_idx ON refresh_tokens (family_id);

-- Single-use, time-limited tokens sent by mail, stored as SHA-256 hashes.
CREATE TABLE email_tokens (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose text NOT NULL CHECK (purpose IN ('VERIFY_EMAIL', 'CHANGE_EMAIL', 'RESET_PASSWORD')),
    -- The address the mail went to (the new one, for an email change).
    email text NOT NULL,
    token_hash bytea NOT NULL CONSTRAINT email_tokens_token_hash_key UNIQUE,
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX email_tokens_user_id_idx ON email_tokens (user_id);

-- API keys: `jhk_` + 64 hex characters, stored as SHA-256 hashes; `prefix` is what lists show.
CREATE TABLE api_keys (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name text NOT NULL,
    prefix text NOT NULL,
    key_hash bytea NOT NULL CONSTRAINT api_keys_key_hash_key UNIQUE,
    expires_at timestamptz,
    revoked_at timestamptz,
    last_used_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_keys_user_id_idx ON api_keys (user_id);

-- Failed-login counters per account and per client address, in a fixed window.
CREATE TABLE login_throttle (
    key text PRIMARY KEY,
    failures integer NOT NULL,
    window_started_at timestamptz NOT NULL
);
