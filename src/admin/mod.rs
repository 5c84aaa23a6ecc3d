//! The admin console: guarded resolvers over the other domains' services. It owns no tables.
//!
//! Every field of [`graphql::AdminQuery`] and every admin mutation carries the `AdminOnly` guard:
//! anonymous callers get `UNAUTHENTICATED`, users `FORBIDDEN`. A test walks the schema to prove it.

pub mod graphql;
pub mod stats;
