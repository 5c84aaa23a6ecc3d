-- The administrators' user list: which accounts it shows, as the FROM and WHERE of its page and count
-- queries (`repo::list`, `repo::count_listed`, which add the keyset, order and limit of each sort).
-- Deleted accounts never show; each filter applies only when its parameter is not null.
-- $1 text  a LIKE pattern matched against email and name, case-insensitively (escaped by the caller)
-- $2 text  the role (USER, ADMIN)
-- $3 text  the account status (ACTIVE, SUSPENDED)
-- $4 text  the tier of the current subscription (FREE, PRO, ENTERPRISE)
-- `s` is the user's current subscription, if any, for the tier filter and the tokens-used sort.
FROM users u
LEFT JOIN subscriptions s ON s.user_id = u.id AND s.status <> 'EXPIRED'
WHERE u.deleted_at IS NULL
  AND ($1::text IS NULL OR u.email ILIKE $1 OR u.name ILIKE $1)
  AND ($2::text IS NULL OR u.role = $2)
  AND ($3::text IS NULL OR u.status = $3)
  AND ($4::text IS NULL OR s.tier = $4)
