DROP FUNCTION quota_record_crossings(uuid, uuid, timestamptz, bigint, bigint, bigint);
