-- A request over a rate is answered from the TAT the batch leaves (base + admitted * every).
SELECT k.id, k.sid AS subscription_id, k.tier, g.id IS NOT NULL AS granted,
       k.rpm AS requests_per_minute, p.burst,
       CASE WHEN k.rpm IS NULL OR p.id IS NULL THEN NULL
            WHEN p.within THEN floor((p.tolerance - p.ahead + 0.001) / p.every)::integer
            ELSE 0 END AS burst_left,
       ceil(CASE WHEN p.within THEN p.ahead + p.every
                 ELSE p.base + coalesce(n.admitted, 0) * p.every END)::bigint AS full_in_ms,
       CASE WHEN NOT p.within
            THEN ceil(p.base + coalesce(n.admitted, 0) * p.every - p.tolerance)::bigint END AS retry_in_ms,
       k.krpm AS key_requests_per_minute,
       CASE WHEN k.krpm IS NULL THEN NULL
            WHEN k.kwithin THEN floor((k.ktolerance - k.kahead + 0.001) / k.kevery)::integer
            ELSE 0 END AS key_burst_left,
       ceil(CASE WHEN k.kwithin THEN k.kahead + k.kevery
                 ELSE k.kbase + coalesce(kn.admitted, 0) * k.kevery END)::bigint AS key_full_in_ms,
       CASE WHEN NOT k.kwithin
            THEN ceil(k.kbase + coalesce(kn.admitted, 0) * k.kevery - k.ktolerance)::bigint END
         AS key_retry_in_ms,
       k.kwithin AND NOT k.kfits AS key_over_budget,
       k.kbudget AS key_token_budget,
       GREATEST(k.kbudget - k.kused - k.kreserved, 0)::bigint AS key_tokens_left,
       CASE WHEN g.id IS NOT NULL AND p.nth = 1 THEN p.extra_tokens ELSE 0 END::bigint AS slice_tokens,
       CASE WHEN g.id IS NOT NULL AND p.nth = 1 THEN p.extra_requests ELSE 0 END::integer AS slice_requests
FROM key_checked k CROSS JOIN lease
LEFT JOIN paced p ON p.id = k.id
LEFT JOIN granted g ON g.id = k.id
LEFT JOIN sub_admitted n ON n.sid = k.sid
LEFT JOIN key_admitted kn ON kn.kid = k.kid
