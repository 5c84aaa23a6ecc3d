-- Paces a batch of requests by subject with GCRA, weighted by cost, in one statement.
-- $1 text[]    the subject of each request
-- $2 float8[]  milliseconds between two unit-cost requests at the subject's rate (60 000 / rate)
-- $3 float8[]  the burst's tolerance in milliseconds ((burst - 1) * the interval)
-- $4 integer[] each request's cost (1 for a plain request)
-- $5 integer[] points each request would like leased beyond its cost (an instance's slice, spent in
--              memory by its next requests; 0 for an exact reservation)
-- A request is admitted when the subject's TAT, moved on by the cost of the admitted requests before it
-- in the batch and its own cost less one, is within the tolerance of now; admitted requests move the TAT
-- on by their cost. Requests of a subject count in order, so the admitted ones are a prefix.
-- Existing rows are locked first (in subject order), so two batches anywhere read each other's
-- results. Two batches creating the same subject at once both decide from an empty row; the second's
-- upsert adds its consumption on top of the first's, so the TAT stays exact and only that instant can
-- admit more than the burst.
-- A slice is granted only to a subject's sole request in the batch, and at most a quarter of what the
-- subject has left after the cost, so near the limit slices shrink to exact reservations; granted
-- points move the TAT like spent ones.
-- Returns, per request in order: whether it was admitted, the points granted (cost and slice), and how
-- the subject stands after the batch.
WITH clock AS (SELECT statement_timestamp() AS now),
req AS (SELECT * FROM unnest($1::text[], $2::float8[], $3::float8[], $4::integer[], $5::integer[])
        WITH ORDINALITY AS r(subject, every, tolerance, cost, extra, ord)),
held AS (SELECT p.subject, p.tat FROM request_pacing p
         WHERE p.subject = ANY($1::text[]) ORDER BY p.subject FOR UPDATE),
paced AS (SELECT r.*, c.now,
                 extract(epoch FROM GREATEST(h.tat, c.now) - c.now)::float8 * 1000 AS base,
                 sum(r.cost) OVER (PARTITION BY r.subject ORDER BY r.ord) AS through,
                 count(*) OVER (PARTITION BY r.subject) AS requests
          FROM req r CROSS JOIN clock c LEFT JOIN held h ON h.subject = r.subject),
judged AS (SELECT p.*, p.base + (p.through - 1) * p.every <= p.tolerance + 0.001 AS admitted FROM paced p),
granted AS (SELECT j.*,
                   CASE WHEN NOT j.admitted THEN 0
                        WHEN j.requests > 1 THEN j.cost
                        ELSE j.cost + LEAST(j.extra, GREATEST(floor(
                               (j.tolerance - j.base - (j.cost - 1) * j.every + 0.001) / j.every / 4), 0))::int
                   END AS points
            FROM judged j),
spent AS (SELECT g.subject, max(g.every) AS every, max(g.base) AS base, sum(g.points) AS points
          FROM granted g GROUP BY g.subject),
stored AS (INSERT INTO request_pacing AS p (subject, tat)
           SELECT s.subject, c.now + make_interval(secs => s.points * s.every / 1000)
           FROM spent s CROSS JOIN clock c WHERE s.points > 0
           ORDER BY s.subject
           ON CONFLICT (subject) DO UPDATE
             SET tat = GREATEST(p.tat, statement_timestamp()) + (EXCLUDED.tat - statement_timestamp())
           RETURNING 1)
SELECT j.admitted, j.points::bigint AS granted,
       -- After the batch: how far ahead the TAT is, in ms, and the points that may be spent at once.
       ceil(s.base + s.points * s.every)::bigint AS ahead_ms,
       GREATEST(floor((j.tolerance + j.every - (s.base + s.points * s.every) + 0.001) / j.every), 0)::bigint
         AS points_left,
       CASE WHEN NOT j.admitted
            THEN ceil(s.base + s.points * s.every + (j.cost - 1) * j.every - j.tolerance)::bigint END
         AS retry_in_ms
FROM granted j JOIN spent s ON s.subject = j.subject
ORDER BY j.ord
