-- Platform rollups in shards: each metering writer adds to its own row of a (day, tool, tier), so two
-- writers never wait on each other's row lock (held until the commit is on disk). Readers sum the shards.
ALTER TABLE platform_daily ADD COLUMN shard smallint NOT NULL DEFAULT 0;
ALTER TABLE platform_daily DROP CONSTRAINT platform_daily_pkey;
ALTER TABLE platform_daily ADD PRIMARY KEY (day, tool_id, tier, shard);
