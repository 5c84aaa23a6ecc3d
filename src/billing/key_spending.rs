//! What API keys spend, for their own limits (`api_keys.requests_per_minute`, `token_budget`): counted
//! by billing in `api_key_spending`, per the owner's billing period, by the reservation and settlement
//! statements, for the keys that have limits (a row is opened when a key gets them, counting what the
//! key spent in the period so far). Other keys' spending is read from the usage log when asked, so their
//! calls cost no extra write.

use std::collections::HashMap;

use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use super::repo;
use crate::app::AppState;
use crate::error::AppResult;
use crate::users::model::UserId;

/// Starts counting `key`'s spending (it just got limits), in the caller's transaction.
pub async fn open_in(conn: &mut AsyncPgConnection, key: Uuid, user: UserId) -> AppResult<()> {
    repo::open_key_spending(conn, key, user.0).await?;
    Ok(())
}

/// Tokens each of `user`'s keys was charged in the current period.
pub async fn this_period(app: &AppState, user: UserId) -> AppResult<HashMap<Uuid, i64>> {
    let mut conn = app.pool.get().await?;
    Ok(repo::key_tokens_this_period(&mut conn, user.0)
        .await?
        .into_iter()
        .map(|spent| (spent.api_key_id, spent.tokens_used))
        .collect())
}
