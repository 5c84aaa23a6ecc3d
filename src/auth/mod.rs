//! Who is calling: login, sessions (access JWTs and rotating refresh tokens), mail tokens for
//! verification and password reset, brute-force protection, and resolving a request's credentials.

pub mod caller;
pub mod email_change;
pub mod graphql;
pub mod identity;
pub mod mail_links;
pub mod model;
pub mod password;
pub mod repo;
pub mod service;
pub mod sessions;
pub mod throttle;
pub mod tokens;
pub mod verified_tokens;
