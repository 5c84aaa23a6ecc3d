DROP TABLE request_pacing;
