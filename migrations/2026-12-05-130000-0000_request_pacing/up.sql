-- Request pacing for callers that have no subscription row to hold it (anonymous addresses), shared by
-- every instance: the GCRA "theoretical arrival time" per subject. A row whose time has passed is the
-- same as no row; the sweep deletes those.
CREATE TABLE request_pacing (
    subject text PRIMARY KEY,
    tat timestamptz NOT NULL
);
CREATE INDEX request_pacing_tat_idx ON request_pacing (tat);
