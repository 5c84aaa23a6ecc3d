//! People who use the hub: their rows, the rules for names, emails and passwords, and the profile.

pub mod graphql;
pub mod model;
pub mod preferences;
pub mod repo;
pub mod service;
