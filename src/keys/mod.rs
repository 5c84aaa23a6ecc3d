//! API keys: long-lived credentials for scripts. Shown once, stored as a SHA-256 hash, listed by a
//! recognisable prefix, revocable at once.

pub mod graphql;
pub mod model;
pub mod repo;
pub mod service;
