//! The usage log: one row per invocation, written in the same transaction that settles its quota,
//! with daily rollups kept exact in that transaction and a live feed across server instances.

pub mod fold;
pub mod graphql;
pub mod live;
pub mod model;
pub mod platform;
pub mod record;
pub mod repo;
pub mod service;
