DROP TABLE user_preferences;
DROP TRIGGER outbox_from_quota_events ON quota_events;
DROP FUNCTION outbox_from_quota_events();
DROP TRIGGER outbox_from_subscription_events ON subscription_events;
DROP FUNCTION outbox_from_subscription_events();
DROP TABLE notification_channels;
DROP TABLE notifications;
DROP FUNCTION notifications_announce();
DROP TABLE outbox_events;
