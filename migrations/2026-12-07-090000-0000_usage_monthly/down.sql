DROP TABLE usage_day_totals;
DROP TABLE usage_monthly;
