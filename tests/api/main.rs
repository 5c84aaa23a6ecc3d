//! The integration tests: one binary, a file per area.

mod health;
mod helpers;
mod http_surface;
mod lifecycle;
mod limits;
mod schema;
mod transport;
