DROP TABLE platform_monthly;
