//! The usage log: one row per invocation, written in the same transaction that settles its quota,
//! with rollups added after the answer and read together with the rows not added yet (so every read
//! is exact), and a live feed across server instances.

pub mod backlog;
pub mod fold;
pub mod graphql;
pub mod live;
pub mod model;
pub mod platform;
pub mod record;
pub mod repo;
pub mod roll;
pub mod roller;
pub mod service;
