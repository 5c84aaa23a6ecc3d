DROP TABLE user_last_active;
