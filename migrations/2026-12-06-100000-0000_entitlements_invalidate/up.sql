-- Instances cache each user's entitlement (src/cache.rs, billing::entitlement): whether their plan lets
-- calls skip the reservation. A change of a subscription that can matter to it (not its counters, which
-- every settlement moves) and any change of a plan reach every instance on the `hub_cache` channel.
CREATE FUNCTION hub_cache_subscription_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('hub_cache', 'user:' || OLD.user_id::text);
    ELSE
        PERFORM pg_notify('hub_cache', 'user:' || NEW.user_id::text);
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.user_id <> NEW.user_id THEN
        PERFORM pg_notify('hub_cache', 'user:' || OLD.user_id::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER subscriptions_cache_insert_delete
    AFTER INSERT OR DELETE ON subscriptions
    FOR EACH ROW EXECUTE FUNCTION hub_cache_subscription_changed();

CREATE TRIGGER subscriptions_cache_update
    AFTER UPDATE OF user_id, tier, status, current_period_end, grace_ends_at ON subscriptions
    FOR EACH ROW EXECUTE FUNCTION hub_cache_subscription_changed();

CREATE TRIGGER plans_cache_invalidation
    AFTER INSERT OR UPDATE OR DELETE ON plans
    FOR EACH STATEMENT EXECUTE FUNCTION hub_cache_invalidate();
