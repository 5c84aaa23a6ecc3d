//! Signed webhooks, the Standard Webhooks way: endpoints that users (and administrators, for platform
//! events) register, deliveries queued in the transaction that dispatches an event, a worker in every
//! instance that sends them with retries, and the log of every attempt.

pub mod delivery;
pub mod graphql;
pub mod model;
pub mod repo;
pub mod service;
pub mod signing;
