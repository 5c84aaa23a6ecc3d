-- Writes a batch of usage rows: a part of the meter's statement (see `db::compose`), so usage commits
-- with the settlement of its quota. The rollups are added after the answer, by the roller
-- (`usage/roll.rs`); each row carries its transaction's id for it (the column's default).
-- $1-$11  usage_events columns: id, user_id, api_key_id, tool_id, subscription_id, tokens_used,
--         tokens_estimated, status, error_code, latency_ms, created_at
-- $12     tokens_overrun
-- $13     tier: the caller's plan tier at the time, as the platform rollups spell it
events AS (INSERT INTO usage_events (id, user_id, api_key_id, tool_id, subscription_id, tokens_used,
                                     tokens_estimated, status, error_code, latency_ms, created_at,
                                     tokens_overrun, tier)
           SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[], $6::bigint[],
                                $7::boolean[], $8::text[], $9::text[], $10::integer[], $11::timestamptz[],
                                $12::bigint[], $13::text[])
           RETURNING 1)
