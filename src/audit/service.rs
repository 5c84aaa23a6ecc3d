//! Writing and reading the trail.

use std::net::IpAddr;

use chrono::Utc;
use diesel_async::AsyncPgConnection;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::model::{AuditRow, Filter};
use super::repo;
use crate::app::AppState;
use crate::error::AppResult;

/// Who did it, in which request, from where.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    /// `None` for the system itself (or a caller not signed in).
    pub user_id: Option<Uuid>,
    pub request_id: Option<String>,
    pub client_ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

impl Actor {
    /// The same request, acting as `user` (a sign-in, or a link from a mail, names its user).
    pub fn as_user(&self, user: Uuid) -> Self {
        Self {
            user_id: Some(user),
            ..self.clone()
        }
    }
}

/// What happened to what.
pub struct Event<'a> {
    pub action: &'a str,
    pub target_type: &'a str,
    pub target_id: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Keeps only the keys whose values differ, so an entry shows what changed.
pub fn diff(before: &Value, after: &Value) -> (Value, Value) {
    let (Some(before), Some(after)) = (before.as_object(), after.as_object()) else {
        return (before.clone(), after.clone());
    };
    let mut old = Map::new();
    let mut new = Map::new();
    for (key, value) in after {
        if before.get(key) != Some(value) {
            old.insert(key.clone(), before.get(key).cloned().unwrap_or(Value::Null));
            new.insert(key.clone(), value.clone());
        }
    }
    (Value::Object(old), Value::Object(new))
}

/// Appends an entry inside the caller's transaction.
pub async fn record_in(
    conn: &mut AsyncPgConnection,
    actor: &Actor,
    event: Event<'_>,
) -> diesel::QueryResult<()> {
    repo::insert(
        conn,
        &AuditRow {
            id: Uuid::now_v7(),
            actor_id: actor.user_id,
            action: event.action.to_owned(),
            target_type: event.target_type.to_owned(),
            target_id: event.target_id,
            before: event.before,
            after: event.after,
            request_id: actor.request_id.clone(),
            created_at: Utc::now(),
            client_ip: actor.client_ip.map(|ip| ip.to_string()),
            user_agent: actor.user_agent.clone(),
        },
    )
    .await?;
    tracing::info!(
        action = event.action,
        target = event.target_type,
        "audit entry recorded"
    );
    Ok(())
}

/// Records a security event of an account (a login, a logout, a password or email change…) inside the
/// caller's transaction, with the request it came from (`origin`: its id, client address and user
/// agent).
pub async fn record_account_event_in(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    action: &str,
    origin: &Actor,
) -> diesel::QueryResult<()> {
    let actor = origin.as_user(user);
    let event = Event {
        action,
        target_type: "user",
        target_id: Some(user.to_string()),
        before: None,
        after: None,
    };
    record_in(conn, &actor, event).await
}

/// Whether this sign-in of `user` comes from an address they never signed in from (their first
/// sign-in does not count: every address is new then).
pub async fn is_new_login_address_in(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    origin: &Actor,
) -> diesel::QueryResult<bool> {
    let Some(ip) = origin.client_ip else {
        return Ok(false);
    };
    let (signed_in_before, from_there) = repo::earlier_logins(conn, user, &ip.to_string()).await?;
    Ok(signed_in_before && !from_there)
}

pub async fn page(
    app: &AppState,
    filter: &Filter,
    after: Option<(chrono::DateTime<Utc>, Uuid)>,
    first: i64,
) -> AppResult<(Vec<AuditRow>, bool)> {
    let mut conn = app.pool.get().await?;
    let rows = repo::page(&mut conn, filter, after, first + 1).await?;
    Ok(crate::db::one_page(rows, first))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_diff_shows_only_what_changed() {
        let (before, after) = diff(
            &json!({ "role": "USER", "name": "Ada", "status": "ACTIVE" }),
            &json!({ "role": "ADMIN", "name": "Ada", "status": "ACTIVE" }),
        );
        assert_eq!(before, json!({ "role": "USER" }));
        assert_eq!(after, json!({ "role": "ADMIN" }));
    }
}
