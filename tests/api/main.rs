//! The integration tests: one binary, a file per area.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test helpers: a broken assumption must fail the test loudly"
)]

mod accounts;
mod admin;
mod admin_bootstrap;
mod anonymous_pace;
mod api_keys;
mod architecture;
mod big_counters;
mod billing;
mod cache;
mod catalogue_pages;
mod connection_limits;
mod dashboard;
mod database_servers;
mod gateway;
mod graphql_sse;
mod health;
mod helpers;
mod http_surface;
mod ide_pages;
mod ids_and_pages;
mod key_limits;
mod key_scopes;
mod lifecycle;
mod limits;
mod live_sessions;
mod lost_settlements;
mod mail_flows;
mod mail_outbox;
mod notifications;
mod payments;
mod persisted_queries;
mod platform_statistics;
mod query_cost;
mod request_rates;
mod schema;
mod security_events;
mod shutdown;
mod slices;
mod statements;
mod streaming;
mod throttles;
mod token_limits;
mod tools;
mod traces;
mod transport;
mod unlimited_calls;
mod upstream_destinations;
mod usage;
mod usage_rolls;
mod usage_summary_folds;
mod webhooks;
