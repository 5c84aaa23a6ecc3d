-- What each API key may do. A key is no longer the whole account: new keys get INVOKE and READ unless
-- their creator asks for more, and keys made before scopes existed get the same (the least that keeps
-- scripts invoking tools and reading usage working; managing the account takes a new key or a session).
ALTER TABLE api_keys
    ADD COLUMN scopes text[] NOT NULL DEFAULT '{INVOKE,READ}'
        CHECK (scopes <@ ARRAY['INVOKE', 'READ', 'MANAGE', 'ADMIN']::text[] AND cardinality(scopes) > 0);
