//! The audit trail: every administrative change and every security-relevant account event, appended
//! (the table refuses updates and deletes) with actor, action, target, a before/after diff, the request id
//! and the time.

pub mod graphql;
pub mod model;
pub mod repo;
pub mod service;
