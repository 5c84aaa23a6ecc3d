//! Live usage across server processes: every usage row is announced by a PostgreSQL notification once
//! its transaction has committed (see `gateway::meter`) and reaches subscribers through a `db::feed`.

use super::model::UsageEvent;
use crate::db::feed::Feed;

/// The channel live usage notifications travel on.
pub const CHANNEL: &str = "hub_usage";

/// The in-process side of the live usage feed.
pub type LiveUsage = Feed<UsageEvent>;

/// A feed on [`CHANNEL`].
pub fn feed() -> LiveUsage {
    Feed::new(CHANNEL)
}
