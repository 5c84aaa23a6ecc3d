//! The invocation gateway: checks a caller may use a tool, reserves quota, calls the tool's upstream
//! through a circuit breaker with bounded retries, and meters the call exactly once.

pub mod alerts;
pub mod breaker;
pub mod budget;
pub mod bursts;
pub mod destination;
pub mod event_stream;
pub mod graphql;
pub mod meter;
pub mod repo;
pub mod service;
pub mod upstream;
