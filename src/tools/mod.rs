//! The catalogue of AI tools: what each is, where its upstream lives, how to read its token count, and
//! which plan it needs. Secret header values (the AI provider's keys) are encrypted at rest.

pub mod catalogue;
pub mod crypto;
pub mod graphql;
pub mod input;
pub mod model;
pub mod rendered;
pub mod repo;
pub mod service;
