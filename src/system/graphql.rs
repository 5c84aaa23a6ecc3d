use async_graphql::{Object, SimpleObject};
use chrono::{DateTime, Utc};

/// Query fields about the server itself.
#[derive(Default)]
pub struct SystemQuery;

/// The server's identity and clock.
#[derive(SimpleObject)]
pub struct ServerInfo {
    /// The server's version (semantic versioning).
    pub version: String,
    /// The server's current time. Compare it with `accessTokenExpiresAt` to allow for clock skew.
    pub time: DateTime<Utc>,
}

#[Object]
impl SystemQuery {
    /// Which version of the hub answers, and its clock. Needs no credentials.
    async fn server_info(&self) -> ServerInfo {
        ServerInfo {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            time: Utc::now(),
        }
    }
}
