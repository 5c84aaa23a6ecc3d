-- No request of the batch was made by a key with limits of its own: the keys' columns are empty.
wanted AS (SELECT req.id, req.tokens, req.expires_at, req.ord, req.slice_tokens, req.slice_requests, sub.id AS sid, sub.tier, sub.token_limit,
             sub.tokens_used, l.reserved, sub.rpm, sub.tat, sub.now
           FROM req JOIN sub ON sub.user_id = req.user_id JOIN left_over l ON l.id = sub.id
           WHERE sub.rank >= (SELECT p.rank FROM plans p WHERE p.tier = req.min_tier)),
key_checked AS (SELECT w.*, NULL::uuid AS kid, NULL::integer AS krpm, NULL::bigint AS kbudget,
                       NULL::bigint AS kused, NULL::bigint AS kreserved, NULL::float8 AS kevery,
                       NULL::float8 AS ktolerance, NULL::float8 AS kbase, NULL::float8 AS kahead,
                       true AS kwithin, true AS kfits
                FROM wanted w),
