-- What the keys with limits of their own were granted and admitted.
key_granted AS (SELECT kid, sum(tokens)::bigint AS tokens FROM granted WHERE kid IS NOT NULL GROUP BY kid),
key_admitted AS (SELECT kid, count(*) AS admitted,
                        max(ktat) + make_interval(secs => count(*) * max(kevery) / 1000) AS tat
                 FROM key_paced WHERE kwithin AND krpm IS NOT NULL GROUP BY kid),
key_counted AS (UPDATE api_key_spending sp SET
                  period_start = kk.period_start,
                  tokens_used = kk.kused,
                  tokens_reserved = kl.kreserved + coalesce(g.tokens, 0),
                  request_rate_tat = coalesce(a.tat, sp.request_rate_tat)
                FROM keys kk JOIN key_left kl ON kl.kid = kk.kid
                  LEFT JOIN key_granted g ON g.kid = kk.kid LEFT JOIN key_admitted a ON a.kid = kk.kid
                WHERE sp.api_key_id = kk.kid RETURNING 1)
