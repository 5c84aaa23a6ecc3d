//! Queries on `usage_events`.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::model::UsageEvent;
use crate::db::schema::usage_events;

pub async fn insert(conn: &mut AsyncPgConnection, event: &UsageEvent) -> QueryResult<usize> {
    diesel::insert_into(usage_events::table)
        .values(event)
        .execute(conn)
        .await
}
