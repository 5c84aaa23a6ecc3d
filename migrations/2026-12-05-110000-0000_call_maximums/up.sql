-- A call that states its own maximum (`max_tokens`, `max_completion_tokens`) reserves that maximum plus
-- its input, capped per tool; one that does not reserves the tool's estimate.
ALTER TABLE tools ADD COLUMN max_tokens_per_call bigint NOT NULL DEFAULT 100000
    CHECK (max_tokens_per_call BETWEEN 1 AND 100000000);
-- Tokens an upstream reported beyond what the call reserved. Charged for a call that stated no maximum
-- (the bound on overspending is the sum of these for the calls in flight); not charged for one that did.
ALTER TABLE usage_events ADD COLUMN tokens_overrun bigint NOT NULL DEFAULT 0 CHECK (tokens_overrun >= 0);
