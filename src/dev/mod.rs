//! Development and benchmark helpers, kept apart from the domains they exercise: the demo tools and
//! their echo upstream (`HUB_DEMO_SEED`), and the synthetic usage generator (`generate-usage`).
//! Nothing here runs in production unless asked for.

pub mod demo;
pub mod generate;
