DROP TABLE quota_reservations;
DROP TABLE subscription_events;
DROP TABLE subscriptions;
DROP TABLE plans;
