-- A reservation's expired leases are found by subscription and expiry together, so the lookup never
-- visits the many rows of calls already settled (deleted, not yet vacuumed), whose leases still run.
CREATE INDEX quota_reservations_subscription_expiry_idx ON quota_reservations (subscription_id, expires_at);
DROP INDEX quota_reservations_subscription_id_idx;
