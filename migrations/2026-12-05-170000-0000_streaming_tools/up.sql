-- Whether a tool's upstream streams its answers (Server-Sent Events); the hub then asks it to, with the
-- token usage in its last chunk, and collects the stream for `invokeTool`.
ALTER TABLE tools ADD COLUMN streams boolean NOT NULL DEFAULT false;
