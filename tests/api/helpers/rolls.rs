//! Holding the roller back (`usage::roll`), so that calls stay out of the rollups while a test reads.

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};

use super::TestApp;

/// An open transaction that holds a transaction id: a roll adds only rows of transactions older than
/// every one still running, so the calls metered while it is open stay out of the rollups until it
/// ends, however often the roller runs.
pub struct HeldBack(AsyncPgConnection);

impl HeldBack {
    pub async fn start(app: &TestApp) -> Self {
        let mut conn = AsyncPgConnection::establish(&app.db.url)
            .await
            .expect("connect");
        conn.batch_execute("BEGIN; SELECT pg_current_xact_id()")
            .await
            .expect("a transaction id held");
        Self(conn)
    }

    pub async fn end(mut self) {
        self.0.batch_execute("COMMIT").await.expect("commit");
    }
}
