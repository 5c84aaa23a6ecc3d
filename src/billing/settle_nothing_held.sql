-- The settlement's second part when no call of the batch holds a reservation (calls that no limit
-- constrains, `billing::entitlement`): nothing is drawn, so no reserved token is returned. Composing
-- this instead of `settle_held.sql` keeps the reservations table out of the statement.
taken_by_sub AS (SELECT NULL::uuid AS subscription_id, NULL::bigint AS tokens WHERE false)
