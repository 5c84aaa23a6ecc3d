DROP TRIGGER plans_cache_invalidation ON plans;
DROP TRIGGER subscriptions_cache_update ON subscriptions;
DROP TRIGGER subscriptions_cache_insert_delete ON subscriptions;
DROP FUNCTION hub_cache_subscription_changed();
