DROP TABLE quota_events;
