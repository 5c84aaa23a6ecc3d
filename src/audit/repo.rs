//! Queries on `audit_log`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::model::{AuditRow, Filter};
use crate::db::schema::audit_log;

pub async fn insert(conn: &mut AsyncPgConnection, row: &AuditRow) -> QueryResult<usize> {
    diesel::insert_into(audit_log::table)
        .values(row)
        .execute(conn)
        .await
}

/// Whether `user` signed in before at all, and whether from `client_ip`.
pub async fn earlier_logins(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    client_ip: &str,
) -> QueryResult<(bool, bool)> {
    let logins = audit_log::table
        .filter(audit_log::actor_id.eq(user))
        .filter(audit_log::action.eq("user.login"));
    let any: bool = diesel::select(diesel::dsl::exists(logins))
        .get_result(conn)
        .await?;
    let from_there: bool = diesel::select(diesel::dsl::exists(
        logins.filter(audit_log::client_ip.eq(client_ip)),
    ))
    .get_result(conn)
    .await?;
    Ok((any, from_there))
}

/// One page, newest first, after the `(created_at, id)` cursor.
pub async fn page(
    conn: &mut AsyncPgConnection,
    filter: &Filter,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> QueryResult<Vec<AuditRow>> {
    let mut query = audit_log::table.into_boxed();
    if let Some(action) = &filter.action {
        query = query.filter(audit_log::action.eq(action.clone()));
    }
    if let Some(actor) = filter.actor {
        query = query.filter(audit_log::actor_id.eq(actor));
    }
    if let Some(target) = &filter.target_id {
        query = query.filter(audit_log::target_id.eq(target.clone()));
    }
    if let Some((at, id)) = after {
        query = query.filter(
            audit_log::created_at
                .lt(at)
                .or(audit_log::created_at.eq(at).and(audit_log::id.lt(id))),
        );
    }
    query
        .order((audit_log::created_at.desc(), audit_log::id.desc()))
        .limit(limit)
        .select(AuditRow::as_select())
        .load(conn)
        .await
}
