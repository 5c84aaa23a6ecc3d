//! Facts about the running server that clients may ask for.

pub mod graphql;
