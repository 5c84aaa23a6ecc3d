//! The usage log: one row per invocation, written in the same transaction that settles its quota.

pub mod model;
pub mod repo;
