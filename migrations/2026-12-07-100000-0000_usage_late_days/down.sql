DROP FUNCTION usage_add_late_days(uuid[], uuid[], date[], bigint[], bigint[], date[], uuid[], text[], bigint[],
                                  bigint[], bigint[], text[], smallint);
